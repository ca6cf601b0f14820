"""A change reaching long-polls: the answer they wait for is built first, then they are woken
(``FastPath._advance``), so each waiter resumes once and finds its body built; a failed
preparation still wakes them, and they build as they always did."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from asgiref.sync import sync_to_async

from apps.core.fastpath import app as fastpath_app
from apps.core.fastpath.app import FastPath
from apps.flags.models import Flag
from apps.flags.services import flag_toggle

from .test_answer_memo import ACTOR, _call, _etag, _in_process, environment, flag, token

__all__ = ["environment", "flag", "token"]  # the fixtures, shared with the memo's tests

ROUTE = "/api/runtime/v1/config"
WAITERS = 40


async def _wait_for(condition: Any, what: str) -> None:
    for _ in range(500):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


def _long_polls(app: FastPath, token: str, tag: bytes) -> list[asyncio.Task[Any]]:
    headers = [(b"authorization", token.encode()), (b"if-none-match", tag)]
    return [asyncio.ensure_future(_call(app, f"{ROUTE}?wait=20", headers)) for _ in range(WAITERS)]


def test_change__answer_built_once_before_any_long_poll_wakes(
    transactional_db: None, token: str, flag: Flag, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the order is what is tested, not the budget (the next test's): on a loaded machine the
    # build may take longer than the 250 ms after which waiters are woken regardless
    monkeypatch.setattr(fastpath_app, "PREPARE_BUDGET_S", 30.0)

    async def test(app: FastPath) -> None:
        first = await _call(app, ROUTE, [(b"authorization", token.encode())])
        polls = _long_polls(app, token, _etag(first))
        await _wait_for(
            lambda: (
                sum(p.waiting for w in app._preparations.values() for p in w.values()) == WAITERS
            ),
            "every long-poll to wait",
        )
        assert len(app._preparations) == 1  # one slot, one answer for all of them
        builds_before = app.snapshots.builds
        built_at_wake: list[bool] = []
        bump = app.board.bump

        def recording_bump(topic: str, key: str, version: int | None = None) -> None:
            known = app.board.known(topic, key) or 0
            if version is not None and version > known:  # a move: it wakes the long-polls
                entries = app.snapshots._entries.values()
                built_at_wake.append(any(e.revision >= version for e in entries))
            bump(topic, key, version)

        app.board.bump = recording_bump  # type: ignore[method-assign]

        await sync_to_async(flag_toggle)(
            actor=ACTOR, flag=await Flag.objects.aget(pk=flag.pk), enabled=False, reason="x"
        )
        answers = await asyncio.wait_for(asyncio.gather(*polls), 15)

        assert {status for status, _, _ in answers} == {200}
        assert len({body for _, _, body in answers}) == 1 and answers[0][2] != first[2]
        assert app.snapshots.builds == builds_before + 1  # prepared once, found by all
        assert built_at_wake == [True]
        assert app._preparations == {}  # nobody waits: nothing kept

    _in_process(test)


@pytest.mark.parametrize("how", ["fails", "never finishes"])
def test_change__preparation_fails_or_hangs__long_polls_still_woken_and_answered(
    transactional_db: None, token: str, flag: Flag, how: str
) -> None:
    # a failed preparation wakes them at once; a hung one after PREPARE_BUDGET_S: either way
    # each waiter then builds its own answer, as before preparations existed
    async def test(app: FastPath) -> None:
        first = await _call(app, ROUTE, [(b"authorization", token.encode())])
        polls = _long_polls(app, token, _etag(first))
        await _wait_for(lambda: bool(app._preparations), "the long-polls to wait")
        get = app.snapshots.get
        met: list[str] = []

        async def misbehaving_once(*args: Any, **kwargs: Any) -> Any:
            if not met:  # the preparation's call
                met.append(how)
                if how == "fails":
                    raise ConnectionError("the database went away for a moment")
                await asyncio.Event().wait()  # never set: a build stuck behind a lock
            return await get(*args, **kwargs)

        app.snapshots.get = misbehaving_once  # type: ignore[method-assign]

        await sync_to_async(flag_toggle)(
            actor=ACTOR, flag=await Flag.objects.aget(pk=flag.pk), enabled=False, reason="x"
        )
        answers = await asyncio.wait_for(asyncio.gather(*polls), 15)

        assert met == [how]
        assert {status for status, _, _ in answers} == {200}
        assert answers[0][2] != first[2]

    _in_process(test)
