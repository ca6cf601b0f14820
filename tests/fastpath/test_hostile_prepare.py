"""Hostile checks of prepare-before-wake (``FastPath._advance``/``_expect``): many views at
once, clients that leave, revoked tokens, two changes in a row, HEAD, timeouts; nothing left in
``_preparations`` or ``_held`` once every waiter is gone, and every answer the one a fresh
request gets."""

from __future__ import annotations

import asyncio
from typing import Any

from asgiref.sync import sync_to_async

from apps.accounts.models import RuntimeToken
from apps.accounts.runtime_tokens import runtime_token_revoke
from apps.core.fastpath.app import FastPath
from apps.core.fastpath.memo import ANSWERS_PER_TOKEN
from apps.core.tokens import hash_token
from apps.flags.models import Flag
from apps.flags.services import flag_create, flag_toggle
from apps.tenancy.models import Environment

from .test_answer_memo import ACTOR, Answer, _call, _etag, _in_process, environment, flag, token
from .test_prepare_before_wake import _wait_for

__all__ = ["environment", "flag", "token"]

FEATURES = "/api/client/features"


def _waiting(app: FastPath) -> int:
    return sum(p.waiting for w in app._preparations.values() for p in w.values())


def _auth(token: str, tag: bytes | None = None) -> list[tuple[bytes, bytes]]:
    headers = [(b"authorization", token.encode())]
    return [*headers, (b"if-none-match", tag)] if tag is not None else headers


async def _features_long_polls(
    app: FastPath, token: str, n: int
) -> tuple[Answer, list[asyncio.Task[Answer]]]:
    """The features as first fetched, and ``n`` long-polls holding their tag, all waiting."""
    first = await _call(app, FEATURES, _auth(token))
    polls = [
        asyncio.ensure_future(_call(app, f"{FEATURES}?wait=20", _auth(token, _etag(first))))
        for _ in range(n)
    ]
    await _wait_for(lambda: _waiting(app) == n, "the polls to wait")
    return first, polls


async def _toggle(flag: Flag, enabled: bool) -> None:
    await sync_to_async(flag_toggle)(
        actor=ACTOR, flag=await Flag.objects.aget(pk=flag.pk), enabled=enabled, reason="x"
    )


def test_many_views__each_woken_with_its_own_fresh_answer__nothing_kept(
    transactional_db: None, token: str, flag: Flag, environment: Environment
) -> None:
    for i in range(12):
        flag_create(actor=ACTOR, environment=environment, name=f"a{i}.x", enabled=True)

    async def test(app: FastPath) -> None:
        paths = [f"{FEATURES}?namePrefix=a{i}" for i in range(12)] + [
            FEATURES,
            "/api/client/features/app.checkout",
            "/api/runtime/v1/config",
        ]
        firsts = [await _call(app, p, _auth(token)) for p in paths]
        polls = [
            asyncio.ensure_future(
                _call(app, f"{p}{'&' if '?' in p else '?'}wait=20", _auth(token, _etag(f)))
            )
            for p, f in zip(paths, firsts, strict=True)
            for _ in range(3)
        ]
        await _wait_for(lambda: _waiting(app) == len(polls), "every poll to wait")
        await _toggle(flag, False)
        # the revision is part of every view's tag: each wakes, with what a fresh request gets
        answers = await asyncio.wait_for(asyncio.gather(*polls), 5)
        for i, p in enumerate(paths):
            fresh = await _call(app, p, _auth(token))
            for status, headers, body in answers[i * 3 : i * 3 + 3]:
                assert (status, body) == (200, fresh[2]), p
                assert dict(headers)[b"etag"] == _etag(fresh), p
        assert app._preparations == {} and not app._held

    _in_process(test)


def test_clients_leave__then_change__nothing_kept_and_board_moves(
    transactional_db: None, token: str, flag: Flag
) -> None:
    async def test(app: FastPath) -> None:
        first, polls = await _features_long_polls(app, token, 5)
        for task in polls:
            task.cancel()
        await asyncio.gather(*polls, return_exceptions=True)
        assert app._preparations == {} and not app._held
        await _toggle(flag, False)
        fresh = await _call(app, FEATURES, _auth(token))
        assert fresh[0] == 200 and fresh[2] != first[2]
        assert not app._preparing

    _in_process(test)


def test_revoked_while_waiting__401__nothing_kept(
    transactional_db: None, token: str, flag: Flag
) -> None:
    async def test(app: FastPath) -> None:
        _, polls = await _features_long_polls(app, token, 3)
        row = await RuntimeToken.objects.aget()
        await sync_to_async(runtime_token_revoke)(actor=ACTOR, token=row, reason="leaked")
        answers = await asyncio.wait_for(asyncio.gather(*polls), 5)
        assert {a[0] for a in answers} == {401}
        assert app._preparations == {} and not app._held
        await _toggle(flag, False)  # a change nobody waits for
        assert (await _call(app, FEATURES, _auth(token)))[0] == 401

    _in_process(test)


def test_two_changes_in_a_row__waiters_and_fresh_requests_see_the_last(
    transactional_db: None, token: str, flag: Flag, environment: Environment
) -> None:
    other = flag_create(actor=ACTOR, environment=environment, name="b.other", enabled=True)

    async def test(app: FastPath) -> None:
        _, polls = await _features_long_polls(app, token, 10)
        await _toggle(flag, False)
        await sync_to_async(flag_toggle)(actor=ACTOR, flag=other, enabled=False, reason="y")
        answers = await asyncio.wait_for(asyncio.gather(*polls), 5)
        assert {a[0] for a in answers} == {200}
        await _wait_for(lambda: not app._preparing, "the preparations to end")
        fresh = await _call(app, FEATURES, _auth(token))
        assert b'"enabled":true' not in fresh[2]  # both changes shown
        # a long-poll with the newest tag waits (nothing newer), then 304 without a length
        last = await _call(app, f"{FEATURES}?wait=0.3", _auth(token, _etag(fresh)))
        assert last[0] == 304 and b"content-length" not in dict(last[1])
        assert app._preparations == {}

    _in_process(test)


def test_head_long_poll__woken_with_headers_only(
    transactional_db: None, token: str, flag: Flag
) -> None:
    async def test(app: FastPath) -> None:
        first = await _call(app, FEATURES, _auth(token))
        polls = [
            asyncio.ensure_future(
                _call(app, f"{FEATURES}?wait=20", _auth(token, _etag(first)), method="HEAD")
            )
            for _ in range(3)
        ]
        await _wait_for(lambda: _waiting(app) == 3, "the polls to wait")
        await _toggle(flag, False)
        answers: list[Any] = await asyncio.wait_for(asyncio.gather(*polls), 5)
        fresh = await _call(app, FEATURES, _auth(token))
        for status, headers, body in answers:
            assert status == 200 and body == b""
            assert dict(headers)[b"content-length"] == str(len(fresh[2])).encode()
            assert dict(headers)[b"etag"] == _etag(fresh)
        assert app._preparations == {}

    _in_process(test)


def test_change_while_the_database_is_down__503_then_fresh__nothing_kept(
    transactional_db: None, token: str, flag: Flag, monkeypatch: Any
) -> None:
    from django.db import OperationalError

    from apps.core.fastpath import state

    async def test(app: FastPath) -> None:
        first, polls = await _features_long_polls(app, token, 4)
        real = state._build_with_gzip

        def down(*args: Any, **kwargs: Any) -> Any:
            raise OperationalError("server closed the connection unexpectedly")

        monkeypatch.setattr(state, "_build_with_gzip", down)
        await _toggle(flag, False)
        answers = await asyncio.wait_for(asyncio.gather(*polls), 5)
        assert {a[0] for a in answers} == {503}
        assert app._preparations == {} and not app._held
        monkeypatch.setattr(state, "_build_with_gzip", real)
        fresh = await _call(app, FEATURES, _auth(token))
        assert fresh[0] == 200 and fresh[2] != first[2]

    _in_process(test)


def test_live_server__304_without_length__same_connection_answers_next_request(
    asgi_server: str, token: str, flag: Flag
) -> None:
    import requests

    with requests.Session() as session:
        session.headers["Authorization"] = token
        first = session.get(asgi_server + FEATURES, timeout=5)
        tag = first.headers["ETag"]
        for _ in range(3):
            again = session.get(
                asgi_server + FEATURES + "?wait=0.2", headers={"If-None-Match": tag}, timeout=5
            )
            assert again.status_code == 304 and again.content == b""
            assert "Transfer-Encoding" not in again.headers
            again = session.get(asgi_server + FEATURES, headers={"If-None-Match": tag}, timeout=5)
            assert again.status_code == 304 and again.content == b""
            assert session.get(asgi_server + FEATURES, timeout=5).content == first.content


def test_memo__one_token_spelled_many_ways__one_token_bound(
    transactional_db: None, token: str
) -> None:
    # The Authorization value's surrounding white space is dropped when it is parsed (as
    # Python's str.strip does: also \x0b, \x0c, \x1c-\x1f, which uvicorn's h11 lets through),
    # so every such spelling is the one token: the memo must count them as that token
    # (ANSWERS_PER_TOKEN), not as a new token each, or one token fills the whole memo.
    async def test(app: FastPath) -> None:
        for k in range(ANSWERS_PER_TOKEN + 8):
            spelled = f"{token}{' ' * k}\x1f".encode()
            status, _, _ = await _call(app, FEATURES, [(b"authorization", spelled)])
            assert status == 200
        assert len(app.memo) <= ANSWERS_PER_TOKEN
        assert {answer.token_hash for answer in app.memo._answers.values()} == {hash_token(token)}

    _in_process(test)


def test_one_feature_deleted_while_waiting__404__star_waiter_answered(
    transactional_db: None, token: str, flag: Flag
) -> None:
    from apps.flags.services import flag_delete

    async def test(app: FastPath) -> None:
        one = "/api/client/features/app.checkout"
        first = await _call(app, one, _auth(token))
        polls = [
            asyncio.ensure_future(_call(app, f"{one}?wait=20", _auth(token, _etag(first)))),
            asyncio.ensure_future(_call(app, f"{one}?wait=20", _auth(token, b"*"))),
            asyncio.ensure_future(_call(app, f"{FEATURES}?wait=20", _auth(token, b"*"))),
        ]
        await _wait_for(lambda: _waiting(app) == 3, "the polls to wait")
        await sync_to_async(flag_delete)(
            actor=ACTOR, flag=await Flag.objects.aget(pk=flag.pk), reason="gone"
        )
        answers = await asyncio.wait_for(asyncio.gather(*polls), 5)
        assert [a[0] for a in answers] == [404, 404, 200]
        assert app._preparations == {} and not app._held

    _in_process(test)
