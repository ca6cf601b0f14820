"""The synchronous side: Django code announces revision changes, token revocations and
archived tenants, environments and agents here, after commit. Redis pub/sub reaches every
fast-path process; a fast path running in this very process (the embedded default) is also
told directly."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable

from django.conf import settings

log = logging.getLogger(__name__)
CHANNEL = "cp:fastpath"

_local_lock = threading.Lock()
_local_subscribers: list[Callable[[dict[str, object]], None]] = []
_redis_client = None


def subscribe_local(callback: Callable[[dict[str, object]], None]) -> None:
    with _local_lock:
        _local_subscribers.append(callback)


def unsubscribe_local(callback: Callable[[dict[str, object]], None]) -> None:
    with _local_lock:
        if callback in _local_subscribers:
            _local_subscribers.remove(callback)


def _redis():  # type: ignore[no-untyped-def]
    global _redis_client
    if _redis_client is None and settings.REDIS_URL:
        import redis  # local: only needed when Redis is configured
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        # Runs after commit inside a request: a down or hung Redis may cost it a bounded
        # moment, never the whole hang (no retries here: the beat re-publishes).
        _redis_client = redis.Redis.from_url(
            settings.REDIS_URL,
            socket_connect_timeout=settings.REDIS_SOCKET_CONNECT_TIMEOUT_S,
            socket_timeout=settings.REDIS_SOCKET_TIMEOUT_S,
            retry=Retry(NoBackoff(), 0),
        )
    return _redis_client


def _publish(message: dict[str, object]) -> None:
    """Tell every subscriber; each is isolated, so one failing never keeps the others (or the
    committed change that called this) from going through."""
    with _local_lock:
        subscribers = list(_local_subscribers)
    for callback in subscribers:
        try:
            callback(message)
        except Exception:
            log.warning("fastpath.local_publish_failed", exc_info=True)
    try:
        client = _redis()
        if client is not None:
            client.publish(CHANNEL, json.dumps(message))
    except Exception:  # a missed publish is caught up by the revision poll and the beat
        log.warning("fastpath.publish_failed", exc_info=True)


def publish_revision(environment_id: int, revision: int) -> None:
    _publish({"t": "rev", "e": environment_id, "r": revision})


def publish_token_revoked(token_hash: str) -> None:
    _publish({"t": "tok", "h": token_hash})


def publish_scope_archived(kind: str, object_id: int) -> None:
    """A tenant, environment or agent was archived: every fast path drops its tokens."""
    _publish({"t": "arch", "k": kind, "i": object_id})
