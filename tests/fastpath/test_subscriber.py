"""The fast path's Redis subscriber survives Redis down, hung and restarted, skips unreadable
messages, and a long-poll answers normally while Redis is down (issue 9, item 4).

Redis "down" is a closed port; "hung" is a local TCP server that accepts and never answers;
"restarted" is our own subscriber connection killed on the real Redis (``CLIENT KILL ID``,
never anyone else's). Each test uses a channel of its own: channels are shared by every
Redis database."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis
import requests

from apps.core.fastpath.subscriber import RECONNECT_CAP_S, listen, reconnect_delay

from ..fake_servers import closed_port_url, hung_server
from .test_fastpath import route, token  # noqa: F401  (fixtures)


@pytest.fixture
def hung() -> Iterator[tuple[str, list[socket.socket]]]:
    """A server that accepts connections and never answers; yields (url, accepted)."""
    with hung_server() as server:
        yield server


@pytest.fixture
def redis_url() -> str:
    url = os.environ.get("TEST_REDIS_URL")
    if not url:
        pytest.skip("Redis is not available (TEST_REDIS_URL unset); .ci/run requires it")
    return url


async def _run_until(listener: Any, done: asyncio.Event, limit_s: float = 20) -> None:
    task = asyncio.create_task(listener)
    try:
        await asyncio.wait_for(done.wait(), timeout=limit_s)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


@pytest.mark.parametrize("failures", [1, 2, 3, 6, 10, 40, 10_000])
def test_reconnect_delay__grows_to_the_cap_with_jitter_and_a_floor(failures: int) -> None:
    delays = [reconnect_delay(failures) for _ in range(200)]
    ceiling = min(RECONNECT_CAP_S, 0.5 * 2 ** min(failures - 1, 32))
    assert all(0.25 <= d <= ceiling for d in delays)
    if failures >= 3:
        assert len({round(d, 6) for d in delays}) > 1  # jittered: a fleet does not sync up


@pytest.mark.parametrize("outage", ["down", "hung"])
def test_listen__redis_down_or_hung__keeps_reconnecting_with_growing_backoff(
    outage: str, hung: tuple[str, list[socket.socket]]
) -> None:
    url = closed_port_url() if outage == "down" else hung[0]
    delays: list[float] = []

    async def main() -> None:
        done = asyncio.Event()

        async def sleep(seconds: float) -> None:
            delays.append(seconds)
            if len(delays) >= 4:
                done.set()
            await asyncio.sleep(0)

        await _run_until(
            listen(url, "unused", lambda m: None, health_s=0.2, connect_timeout_s=0.2, sleep=sleep),
            done,
        )

    asyncio.run(main())

    assert len(delays) >= 4
    for attempt, delay in enumerate(delays, start=1):
        assert delay <= min(RECONNECT_CAP_S, 0.5 * 2 ** (attempt - 1))
    if outage == "hung":
        assert len(hung[1]) >= 4  # a new connection each time, not stuck on the first


def test_listen__connection_killed_or_garbage_published__resubscribes_and_delivers(
    redis_url: str,
) -> None:
    channel = f"cp:test:{uuid.uuid4().hex}"
    name = f"fp-test-{uuid.uuid4().hex[:8]}"
    admin = redis.Redis.from_url(redis_url)
    received: list[dict[str, Any]] = []
    subscriptions = 0

    def kill_ours() -> None:
        clients: Any = admin.client_list()  # sync client: a list
        for client in clients:
            if client.get("name") == name:
                admin.client_kill_filter(_id=client["id"])

    async def main() -> None:
        nonlocal subscriptions
        subscribed = asyncio.Event()
        done = asyncio.Event()

        def on_subscribed() -> None:
            nonlocal subscriptions
            subscriptions += 1
            subscribed.set()

        def on_message(message: dict[str, Any]) -> None:
            received.append(message)
            if message.get("n") == 2:
                done.set()

        async def no_wait(seconds: float) -> None:
            await asyncio.sleep(0)

        async def drive() -> None:
            await subscribed.wait()
            subscribed.clear()
            # A restart as the subscriber sees it: its connection is closed under it
            await asyncio.to_thread(kill_ours)
            await subscribed.wait()
            for data in ("not json", "[1, 2]", json.dumps({"n": 1}), "{", json.dumps({"n": 2})):
                await asyncio.to_thread(admin.publish, channel, data)

        driver = asyncio.create_task(drive())
        await _run_until(
            listen(
                f"{redis_url}?client_name={name}",
                channel,
                on_message,
                health_s=1.0,
                connect_timeout_s=0.5,
                sleep=no_wait,
                on_subscribed=on_subscribed,
            ),
            done,
        )
        await driver

    asyncio.run(main())

    assert subscriptions >= 2
    assert received == [{"n": 1}, {"n": 2}]


def test_fastpath_long_poll__redis_down__304_at_timeout(
    asgi_server: str,
    settings: Any,
    route: str,  # noqa: F811
    token: str,  # noqa: F811
) -> None:
    # Before the first request, which starts the fast path's subscriber
    settings.REDIS_URL = closed_port_url()
    server = asgi_server
    first = requests.get(server + route, headers={"Authorization": token}, timeout=5)
    assert first.status_code == 200, first.content

    waited = requests.get(
        server + route + "?wait=0.5",
        headers={"Authorization": token, "If-None-Match": first.headers["ETag"]},
        timeout=5,
    )

    assert waited.status_code == 304
