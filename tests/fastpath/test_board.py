"""The fast path's waits and builds under many waiters: a change resolves every long-poll of
its slot in one pass, without a task per waiter, and one build serves every request that
needed it, even when the request that started it leaves."""

from __future__ import annotations

import asyncio
import threading

from apps.core.fastpath.registry import TokenScope
from apps.core.fastpath.state import Board, SnapshotCache

SCOPE = TokenScope(1, 1, 1, None)


def test_waiters__one_bump__resolves_every_waiter_behind_it_and_no_other() -> None:
    async def scenario() -> None:
        board = Board()
        board.bump("t", "k", 5)
        behind = [board.waiter("t", "k", 5, 30) for _ in range(2000)]
        ahead = board.waiter("t", "k", 7, 30)  # holds a newer version than the bump brings
        elsewhere = board.waiter("t", "other", 0, 30)
        tasks_before = len(asyncio.all_tasks())
        board.bump("t", "k", 6)
        assert all(w.done() and w.result() is True for w in behind)
        assert not ahead.done() and not elsewhere.done()
        assert len(asyncio.all_tasks()) == tasks_before  # nothing scheduled per waiter
        board.bump("t", "k", 8)
        assert ahead.result() is True
        elsewhere.cancel()
        await asyncio.sleep(0)
        assert board._waiters == {}  # resolved and cancelled waiters leave nothing behind

    asyncio.run(scenario())


def test_waiter__already_beyond__resolved_at_once__timeout__false() -> None:
    async def scenario() -> None:
        board = Board()
        board.bump("t", "k", 3)
        assert (await board.waiter("t", "k", 2, 30)) is True
        assert (await board.waiter("t", "k", 3, 0.01)) is False
        assert (await board.wait_beyond("t", "k", 3, 0.01)) is False

    asyncio.run(scenario())


def test_snapshot_cache__many_at_once__one_build__a_leaving_request_does_not_cancel_it() -> None:
    release = threading.Event()
    builds: list[str] = []

    def build(scope: TokenScope, variant: str, key: str) -> tuple[int, bytes]:
        builds.append(key)
        release.wait(10)
        return 4, b'{"revision": 4, "features": []}' * 40

    async def scenario() -> None:
        cache = SnapshotCache()
        first = asyncio.ensure_future(cache.get("k", build, SCOPE, "", 4))
        await asyncio.sleep(0.05)  # the first request's build is under way
        others = [asyncio.ensure_future(cache.get("k", build, SCOPE, "", 4)) for _ in range(500)]
        await asyncio.sleep(0.01)
        first.cancel()  # its client left
        release.set()
        snapshots = await asyncio.gather(*others)
        assert {s.revision for s in snapshots} == {4}
        assert len({id(s) for s in snapshots}) == 1
        assert cache.builds == 1 and len(builds) == 1
        assert snapshots[0].gzip is not None  # built with its gzip form, once

    asyncio.run(scenario())


def test_snapshot_cache__failed_build__every_waiter_told__next_request_builds_again() -> None:
    calls: list[int] = []

    def build(scope: TokenScope, variant: str, key: str) -> tuple[int, bytes]:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("database unavailable")
        return 2, b"{}"

    async def scenario() -> None:
        cache = SnapshotCache()
        results = await asyncio.gather(
            *(cache.get("k", build, SCOPE, "", 2) for _ in range(3)), return_exceptions=True
        )
        assert all(isinstance(r, RuntimeError) for r in results)
        assert (await cache.get("k", build, SCOPE, "", 2)).revision == 2
        assert len(calls) == 2

    asyncio.run(scenario())
