"""The fast path's Redis pub/sub subscriber: how revisions, revocations and archived scopes
committed by other processes reach this one.

It must survive Redis restarting, going down for a while, or hanging (a half-open
connection after a network failure or a host that stopped answering): the first two end the
connection and are retried with capped, jittered exponential backoff (a fleet of fast paths
does not reconnect in lock-step every second); the third is found by a PING sent whenever
the channel has been quiet for ``health_s`` seconds and answered within another ``health_s``.
A message the fast path cannot read (another publisher on the shared channel) is logged and
skipped, never a reason to drop the connection. What is missed while disconnected is caught
up by the revision poll and the beat's re-publication (docs/decisions/0010, 0013)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger(__name__)

RECONNECT_BASE_S = 0.5
RECONNECT_CAP_S = 30.0


def reconnect_delay(
    failures: int, *, base: float = RECONNECT_BASE_S, cap: float = RECONNECT_CAP_S
) -> float:
    """Seconds to wait before reconnect attempt number ``failures`` (1, 2, …): uniformly
    random in ``[base/2, min(cap, base·2^(failures-1))]`` ("full jitter" with a floor, so a
    down Redis is not hammered)."""
    ceiling = min(cap, base * 2 ** min(max(failures - 1, 0), 32))
    return random.uniform(min(base / 2, ceiling), ceiling)


async def listen(
    url: str,
    channel: str,
    on_message: Callable[[dict[str, Any]], None],
    *,
    health_s: float,
    connect_timeout_s: float,
    sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    on_subscribed: Callable[[], None] | None = None,
) -> None:
    """Subscribe to ``channel`` at ``url`` and call ``on_message`` with each decoded JSON
    object, forever (until cancelled). ``sleep`` waits between reconnects (injectable so a
    test sees the delays); ``on_subscribed`` is called after each successful subscription."""
    import redis.asyncio as aioredis  # local: only with Redis configured

    failures = 0
    while True:
        client = aioredis.Redis.from_url(url, socket_connect_timeout=connect_timeout_s)
        try:
            async with client.pubsub() as pubsub:
                await asyncio.wait_for(pubsub.subscribe(channel), timeout=health_s)
                failures = 0
                if on_subscribed is not None:
                    on_subscribed()
                await _receive(pubsub, on_message, health_s=health_s)
        except asyncio.CancelledError:
            raise
        except Exception:
            failures += 1
            log.warning("fastpath.redis_listen_failed", extra={"failures": failures}, exc_info=True)
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.aclose(), timeout=health_s)
        await sleep(reconnect_delay(failures))


async def _receive(
    pubsub: Any, on_message: Callable[[dict[str, Any]], None], *, health_s: float
) -> None:
    loop = asyncio.get_running_loop()
    heard = loop.time()
    pinged = False
    while True:
        item = await pubsub.get_message(timeout=health_s)
        now = loop.time()
        if item is not None:
            heard, pinged = now, False
            if item.get("type") == "message":
                _deliver(item["data"], on_message)
            continue
        if now - heard < health_s:
            continue
        if pinged:
            raise ConnectionError(f"Redis did not answer a PING within {health_s:g}s")
        await asyncio.wait_for(pubsub.ping(), timeout=health_s)
        pinged = True


def _deliver(data: Any, on_message: Callable[[dict[str, Any]], None]) -> None:
    try:
        message = json.loads(data)
        if not isinstance(message, dict):
            raise ValueError("not a JSON object")
        on_message(message)
    except Exception:  # one unreadable message must not cost the subscription
        log.warning("fastpath.redis_message_skipped", exc_info=True)
