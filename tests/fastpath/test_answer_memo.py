"""The answer memo (``apps/core/fastpath/memo.py``): a repeated request is answered from the
remembered answer — byte for byte what the full path sends — and never once that answer could
differ: a new revision, a revoked token, another coding or ``Vary`` value, a long-poll to hold,
a list or weak tag, repeated header lines, a changed setting."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest
import requests
from asgiref.sync import sync_to_async

from apps.accounts.models import RuntimeToken, hash_runtime_token
from apps.accounts.runtime_tokens import runtime_token_create, runtime_token_revoke
from apps.audit.services import SystemActor
from apps.core.fastpath.app import _MEMO_KEY, FastPath
from apps.core.fastpath.memo import ANSWERS_PER_TOKEN, AnswerMemo
from apps.core.fastpath.memo import Answer as Remembered
from apps.core.fastpath.registry import TokenScope, registry
from apps.core.tokens import hash_token
from apps.flags.models import Flag
from apps.flags.services import flag_create, flag_toggle
from apps.tenancy.models import Environment, Tenant
from apps.tenancy.services import environment_archive
from controlplane.asgi import django_application

ACTOR = SystemActor("test")
ROUTES = ["/api/client/features", "/api/client/features/app.checkout", "/api/runtime/v1/config"]


@pytest.fixture
def environment(tenant: Tenant) -> Environment:
    return tenant.environments.get(slug="development")


@pytest.fixture
def flag(environment: Environment) -> Flag:
    constraint = {"contextName": "userId", "operator": "IN", "values": [f"u{i}" for i in range(40)]}
    return flag_create(
        actor=ACTOR,
        environment=environment,
        name="app.checkout",
        enabled=True,
        strategies=[{"name": "default", "constraints": [constraint]}],
    )


@pytest.fixture
def token(environment: Environment, flag: Flag) -> str:
    _, raw = runtime_token_create(
        actor=ACTOR, tenant=environment.tenant, environment=environment, name="memo"
    )
    return raw


Answer = tuple[int, list[tuple[bytes, bytes]], bytes]


async def _call(
    app: FastPath,
    path: str,
    headers: list[tuple[bytes, bytes]],
    *,
    scheme: str = "http",
    method: str = "GET",
) -> Answer:
    route, _, query = path.partition("?")
    scope = {
        "type": "http",
        "method": method,
        "path": route,
        "query_string": query.encode(),
        "headers": headers,
        "scheme": scheme,
        "http_version": "1.1",
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return sent[0]["status"], list(sent[0]["headers"]), body


def _in_process(test: Any, *, memo: AnswerMemo | None = None) -> None:
    """Run ``test(app)`` on one event loop with a fast path of its own (and ``memo``)."""
    app = FastPath(django_application, memo=memo)

    async def main() -> None:
        try:
            await test(app)
        finally:
            await app._stop()

    asyncio.run(main())


def _etag(answer: Answer) -> bytes:
    return dict(answer[1])[b"etag"]


def _refuse_full_path(app: FastPath, why: str = "the full path was taken") -> None:
    """From now on ``app`` fails (``why``) a request it would answer by its full path: what
    follows must be answered from the memo."""

    async def no_full_path(*args: Any) -> None:
        raise AssertionError(why)

    app._serve = no_full_path  # type: ignore[method-assign,assignment]


def _count_full_path(app: FastPath) -> list[str]:
    """The paths of the requests ``app`` answers by its full path from now on (a list that
    grows with each)."""
    taken: list[str] = []
    full = app._serve

    async def counted(*args: Any) -> None:
        taken.append(args[2]["path"])
        await full(*args)

    app._serve = counted  # type: ignore[method-assign,assignment]
    return taken


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("method", ["GET", "HEAD"])
@pytest.mark.parametrize("accept", [b"gzip", b"identity"])
def test_repeat__answered_from_the_memo__byte_identical_to_the_full_path(
    transactional_db: None, token: str, route: str, method: str, accept: bytes
) -> None:
    base = [(b"authorization", token.encode()), (b"accept-encoding", accept)]

    async def test(app: FastPath) -> None:
        full_200 = await _call(app, route, base, method=method)
        conditional = [*base, (b"if-none-match", _etag(full_200))]
        full_304 = await _call(app, route, conditional, method=method)
        assert (full_200[0], full_304[0]) == (200, 304)
        # a 304 has no body and no Content-Length (it would have to be the 200's: RFC 9110
        # 8.6); it carries the tag, Vary and Cache-Control a 200 would (15.4.5)
        assert full_304[2] == b"" and b"content-length" not in dict(full_304[1])
        assert {b"etag", b"vary", b"cache-control"} <= set(dict(full_304[1]))
        assert len(app.memo) == 1

        _refuse_full_path(app)
        assert await _call(app, route, base, method=method) == full_200
        assert await _call(app, route, conditional, method=method) == full_304

    _in_process(test)


def test_memo__what_it_must_not_answer__takes_the_full_path(
    transactional_db: None, token: str
) -> None:
    base = [(b"authorization", token.encode())]
    route = "/api/client/features"

    async def test(app: FastPath) -> None:
        first = await _call(app, route, base)
        tag = _etag(first)
        taken = _count_full_path(app)
        cases: list[tuple[str, list[tuple[bytes, bytes]], int]] = [
            ("weak tag", [*base, (b"if-none-match", b"W/" + tag)], 304),
            ("a list", [*base, (b"if-none-match", b'"old", ' + tag)], 304),
            ("star", [*base, (b"if-none-match", b"*")], 304),
            ("an old tag", [*base, (b"if-none-match", b'"old"')], 200),
            ("two lines", [*base, (b"if-none-match", b'"old"'), (b"if-none-match", tag)], 304),
            ("another spec", [*base, (b"unleash-client-spec", b"3.0.0")], 200),
        ]
        for name, headers, status in cases:
            before = len(taken)
            assert (await _call(app, route, headers))[0] == status, name
            assert len(taken) == before + 1, name

    _in_process(test)


def test_memo__repeated_lines__only_those_that_choose_the_answer_take_the_full_path(
    transactional_db: None, token: str
) -> None:
    # the key reads the header lines as a dict (a repeat keeps its last value): a repeat of
    # a line the answer depends on must not be answered as if sent once
    base = [(b"authorization", token.encode()), (b"unleash-client-spec", b"5.0.0")]
    route = "/api/client/features"

    async def test(app: FastPath) -> None:
        first = await _call(app, route, base)
        taken = _count_full_path(app)
        forwarded = (b"x-forwarded-for", b"10.0.0.1")
        for name, headers, status, memo in [
            ("once", base, 200, True),
            ("a line that does not matter, twice", [forwarded, *base, forwarded], 200, True),
            ("cookies", [(b"cookie", b"a=1"), *base, (b"cookie", b"b=2")], 200, True),
            ("the token twice", [*base, base[0]], 401, False),
            ("Vary's header twice", [*base, (b"unleash-client-spec", b"5.0.0")], 200, False),
            (
                "codings twice",
                [*base, (b"accept-encoding", b"gzip"), (b"accept-encoding", b"br")],
                200,
                False,
            ),
        ]:
            before = len(taken)
            answer = await _call(app, route, headers)
            assert answer[0] == status, name
            assert len(taken) == before + (0 if memo else 1), name
            if memo:
                assert answer == first, name

    _in_process(test)


def test_memo__setting_changed__answers_follow_it(
    transactional_db: None, token: str, settings: Any
) -> None:
    base = [(b"authorization", token.encode())]

    async def test(app: FastPath) -> None:
        before = await _call(app, "/api/client/features", base, scheme="https")
        assert b"strict-transport-security" not in dict(before[1])
        settings.SECURE_HSTS_SECONDS = 3600
        after = await _call(app, "/api/client/features", base, scheme="https")
        assert dict(after[1])[b"strict-transport-security"] == b"max-age=3600"

    settings.SECURE_HSTS_SECONDS = 0
    _in_process(test)


# ----------------------------------------------------------------- over the wire


def _get(base: str, route: str, token: str, **headers: str) -> requests.Response:
    return requests.get(base + route, headers={"Authorization": token, **headers}, timeout=30)


@pytest.mark.parametrize("route", ROUTES)
def test_new_revision__remembered_tag_no_longer_answers_304(
    asgi_server: str, token: str, flag: Flag, route: str
) -> None:
    tag = _get(asgi_server, route, token).headers["ETag"]
    assert _get(asgi_server, route, token, **{"If-None-Match": tag}).status_code == 304

    flag_toggle(actor=ACTOR, flag=Flag.objects.get(pk=flag.pk), enabled=False, reason="memo")

    deadline = time.monotonic() + 10
    while (answer := _get(asgi_server, route, token, **{"If-None-Match": tag})).status_code == 304:
        assert time.monotonic() < deadline, "still 304 after the change"
        time.sleep(0.05)
    assert answer.status_code == 200 and answer.headers["ETag"] != tag


@pytest.mark.parametrize("spelling", ["{}", "Bearer {}", "bearer   {}"])
def test_revoked_token__remembered_304_refused(asgi_server: str, token: str, spelling: str) -> None:
    # every spelling has a memo key of its own; each answer is checked against the token
    route, sent = "/api/client/features", spelling.format(token)
    tag = _get(asgi_server, route, sent).headers["ETag"]
    assert _get(asgi_server, route, sent, **{"If-None-Match": tag}).status_code == 304

    runtime_token_revoke(
        actor=ACTOR,
        token=RuntimeToken.objects.get(token_hash=hash_runtime_token(token)),
        reason="compromised",
    )

    assert _get(asgi_server, route, sent, **{"If-None-Match": tag}).status_code == 401
    assert _get(asgi_server, route, sent).status_code == 401


def test_long_poll_holding_the_current_tag__still_waits_for_the_change(
    asgi_server: str, token: str, flag: Flag
) -> None:
    route = "/api/client/features?wait=20"
    tag = _get(asgi_server, route, token).headers["ETag"]  # a long-poll: never remembered
    answers: list[requests.Response] = []
    poll = threading.Thread(
        target=lambda: answers.append(_get(asgi_server, route, token, **{"If-None-Match": tag}))
    )
    poll.start()
    time.sleep(0.5)  # the poll is waiting (a memo answer would have been a 304 by now)

    flag_toggle(actor=ACTOR, flag=Flag.objects.get(pk=flag.pk), enabled=False, reason="memo")
    poll.join(timeout=25)

    assert answers and answers[0].status_code == 200
    assert answers[0].headers["ETag"] != tag


def test_memo__a_token_varying_the_view__holds_no_more_body_bytes_than_its_bound(
    transactional_db: None, token: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each ``project`` filter is a view of its own (``Snapshot.render`` keeps at most
    ``VIEWS_PER_SNAPSHOT`` of them); the memo must not keep every one it ever answered alive
    beside them: what one token may vary is bounded in bytes, not only in answers."""
    from apps.core.fastpath import memo

    monkeypatch.setattr(memo, "ANSWER_MEMO_BYTES", 32_000, raising=False)
    base = [(b"authorization", token.encode()), (b"accept-encoding", b"identity")]

    async def test(app: FastPath) -> None:
        sizes = set()
        for n in range(120):
            answer = await _call(app, f"/api/client/features?project=default&project=x{n}", base)
            assert answer[0] == 200
            sizes.add(len(answer[2]))
        bodies = {id(a.body): len(a.body) for a in app.memo._answers.values()}
        assert min(sizes) * 120 > 32_000  # the views alone would be over the bound
        assert sum(bodies.values()) <= 32_000
        assert len(app.memo) > 0  # still remembering

    _in_process(test)


def _answer(scope: TokenScope, body: bytes, token_hash: str) -> Remembered:
    return Remembered.of(
        scope=scope,
        token_hash=token_hash,
        slot=("t", "1"),
        version=1,
        tags=(),
        ok_headers=[],
        body=body,
        not_modified_headers=[],
    )


def test_memo__a_fleet_sharing_one_body__counted_once() -> None:
    """Answers of many tokens that share one body (a fleet on one environment) count its bytes
    once: the byte bound does not empty the memo for a large fleet."""
    scope = TokenScope(token_id=1, tenant_id=1, environment_id=1, agent_id=None)
    body = b"x" * 1_000
    remembered = AnswerMemo(size=100, max_bytes=5_000)
    for n in range(50):
        key = ("k", "/p", b"", "GET", "http", f"hash{n}".encode(), (), b"")
        remembered.put(key, _answer(scope, body, f"hash{n}"))
    assert len(remembered) == 50
    # the body once, and each key's path and Authorization header
    assert remembered.held_bytes == 1_000 + sum(len(f"/phash{n}") for n in range(50))
    other = b"y" * 4_500  # over the bound with the first: emptied, then holds the new one
    remembered.put(("k", "/q", b"", "GET", "http", b"h", (), b""), _answer(scope, other, "h"))
    assert (len(remembered), remembered.held_bytes) == (1, 4_500 + len("/qh"))


def test_fast_path_dropped__not_kept_alive_by_its_settings_receiver() -> None:
    """The receiver that empties the memo on a changed setting holds the fast path weakly: a
    test's fast path (or any discarded one) is freed with its caches, not kept by the signal."""
    import gc
    import weakref

    app = FastPath(django_application)
    dropped = weakref.ref(app)
    del app
    gc.collect()
    assert dropped() is None


def test_memo__long_made_up_queries__their_bytes_count_too() -> None:
    """A key holds the request's query string and header values, which the client makes up
    (a few kilobytes each): they count toward the byte bound, or one token could fill the
    memo's answers with hundreds of megabytes of keys around one shared body."""
    scope = TokenScope(token_id=1, tenant_id=1, environment_id=1, agent_id=None)
    body = b"x" * 100
    remembered = AnswerMemo(size=10_000, max_bytes=50_000)
    for n in range(200):
        query = b"junk=" + str(n).encode() + b"a" * 4_000
        key = ("k", "/p", query, "GET", "http", b"hash", (b"b" * 1_000,), b"gzip")
        remembered.put(key, _answer(scope, body, "hash"))
    assert remembered.held_bytes <= 50_000
    assert 0 < len(remembered) < 200


def test_memo__one_token_varying_its_query__bounded_and_others_answers_kept(
    transactional_db: None, token: str, environment: Environment
) -> None:
    """The query is part of the key: a token holder varying it (``?project=`` lists that all
    match, each a view of the whole body) must not make the memo hold more than
    ``ANSWERS_PER_TOKEN`` of its answers — view bodies the snapshot keeps a bounded number of
    — nor empty another token's remembered answers."""
    _, other = runtime_token_create(
        actor=ACTOR, tenant=environment.tenant, environment=environment, name="neighbour"
    )
    theirs = [(b"authorization", other.encode())]
    mine = [(b"authorization", token.encode()), (b"accept-encoding", b"identity")]

    async def test(app: FastPath) -> None:
        remembered = await _call(app, "/api/client/features", theirs)
        for i in range(ANSWERS_PER_TOKEN * 8):
            query = f"?project=default&project=p{i}"
            assert (await _call(app, "/api/client/features" + query, mine))[0] == 200

        assert len(app.memo) == ANSWERS_PER_TOKEN + 1

        _refuse_full_path(app, "the neighbour's remembered answer was dropped")
        assert await _call(app, "/api/client/features", theirs) == remembered

    _in_process(test, memo=AnswerMemo(size=ANSWERS_PER_TOKEN * 4))


def _memo_key_of(authorization: bytes) -> Any:
    matched = registry.match("/api/client/features")
    assert matched is not None
    scope: dict[str, Any] = {
        "type": "http",
        "method": "GET",
        "path": "/api/client/features",
        "query_string": b"",
        "headers": [(b"authorization", authorization)],
        "scheme": "http",
    }
    app = FastPath(django_application)
    assert app._remembered(matched[0], scope) is None  # type: ignore[arg-type]
    return scope[_MEMO_KEY]


@pytest.mark.parametrize(
    "spelling",
    ["{token}", "Bearer {token}", "bearer   {token}", "{token} ", " {token}\x1f"],
)
def test_memo__token_in_any_form__remembered_as_that_token_and_answered_from_it(
    transactional_db: None, token: str, spelling: str
) -> None:
    # The memo key hashes the Authorization header as sent, without parsing it; the answer
    # holds the token's stored hash, which the check (a revoked token) and the per-token
    # bound use: every spelling is the one token.
    headers = [(b"authorization", spelling.format(token=token).encode())]

    async def test(app: FastPath) -> None:
        first = await _call(app, "/api/client/features", headers)
        assert first[0] == 200
        assert [a.token_hash for a in app.memo._answers.values()] == [hash_token(token)]

        _refuse_full_path(app)
        assert await _call(app, "/api/client/features", headers) == first

    _in_process(test)


@pytest.mark.parametrize(
    "authorization",
    [b"cprt_" + b"x" * 300, b"Basic dXNlcjpwYXNz", b"", b"Bearer ", b"cprt_abc\xe9"],
)
def test_memo__no_runtime_token__refused_every_time_nothing_remembered(
    transactional_db: None, authorization: bytes
) -> None:
    async def test(app: FastPath) -> None:
        for _ in range(2):
            status, _, _ = await _call(
                app, "/api/client/features", [(b"authorization", authorization)]
            )
            assert status == 401
        assert len(app.memo) == 0

    _in_process(test)
    # one far longer than any token's spelling has no key: nothing is remembered for it
    assert _memo_key_of(b"cprt_" + b"x" * 300) is None


async def _until(done: Any, why: str, timeout_s: float = 5.0) -> None:
    """Wait (on the loop, so the fast path's callbacks run) until ``done()`` is true."""
    deadline = time.monotonic() + timeout_s
    while not done():
        assert time.monotonic() < deadline, why
        await asyncio.sleep(0.02)


def _headers_held(app: FastPath) -> list[bytes]:
    """The ``Authorization`` headers the memo's keys hold."""
    return sorted(key[5] for key in app.memo._answers)


def test_memo__revoked_token__its_answers_and_their_header_dropped_others_kept(
    transactional_db: None, token: str, environment: Environment, settings: Any
) -> None:
    # The keys hold the header as sent (decision 0039): a revoked token's must not stay in
    # the process's memory, in any spelling, while another token's answers stay remembered.
    _, other = runtime_token_create(
        actor=ACTOR, tenant=environment.tenant, environment=environment, name="other"
    )
    spellings = [token, f"Bearer {token}", f"bearer  {token}"]
    settings.FASTPATH_POLL_INTERVAL_S = 3600  # the revocation drops them, not the poll

    async def test(app: FastPath) -> None:
        for sent in [*spellings, other]:
            answer = await _call(app, "/api/client/features", [(b"authorization", sent.encode())])
            assert answer[0] == 200
        assert _headers_held(app) == sorted(s.encode() for s in [*spellings, other])

        await sync_to_async(runtime_token_revoke)(
            actor=ACTOR,
            token=await RuntimeToken.objects.aget(token_hash=hash_runtime_token(token)),
            reason="leaked",
        )
        await _until(lambda: _headers_held(app) == [other.encode()], "the revoked token held")

        _refuse_full_path(app, "the other token's answer was dropped")
        other_line = [(b"authorization", other.encode())]
        assert (await _call(app, "/api/client/features", other_line))[0] == 200

    _in_process(test)


def test_memo__archived_environment__its_tokens_answers_dropped(
    transactional_db: None, token: str, environment: Environment, settings: Any
) -> None:
    settings.FASTPATH_POLL_INTERVAL_S = 3600  # the archiving drops them, not the poll

    async def test(app: FastPath) -> None:
        assert (await _call(app, "/api/client/features", [(b"authorization", token.encode())]))[
            0
        ] == 200
        assert len(app.memo) == 1

        await sync_to_async(environment_archive)(
            actor=ACTOR, environment=environment, reason="retired"
        )
        await _until(lambda: len(app.memo) == 0, "the archived environment's answers held")
        refused = await _call(app, "/api/client/features", [(b"authorization", token.encode())])
        assert refused[0] == 401 and len(app.memo) == 0

    _in_process(test)


def test_memo__token_not_used_for_its_cache_ttl__its_answers_dropped_then_remembered_again(
    transactional_db: None,
    token: str,
    settings: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An unused token's cache entry expires (``TOKEN_TTL_S``); the memo then drops its
    answers at the next poll, so its header is held no longer than the entry."""
    from apps.core.fastpath import state

    monkeypatch.setattr(state, "TOKEN_TTL_S", 0.3)
    settings.FASTPATH_POLL_INTERVAL_S = 0.05
    line = [(b"authorization", token.encode())]

    async def test(app: FastPath) -> None:
        first = await _call(app, "/api/client/features", line)
        assert first[0] == 200 and _headers_held(app) == [token.encode()]

        await _until(lambda: len(app.memo) == 0, "an expired token's answers held")

        assert await _call(app, "/api/client/features", line) == first  # the full path again
        assert _headers_held(app) == [token.encode()]

    _in_process(test)


def test_memo__remembered_messages__refuse_every_edit(transactional_db: None, token: str) -> None:
    """The messages of a remembered answer are sent on every hit: an edit (a middleware adding
    a header) would change the answer for everyone after, so each one fails loudly."""
    line = [(b"authorization", token.encode())]

    async def test(app: FastPath) -> None:
        first = await _call(app, "/api/client/features", line)
        (answer,) = app.memo._answers.values()
        for message in (*answer.ok, *answer.not_modified):
            assert isinstance(message, dict)  # what a server reads fastest
            edits = [
                lambda m: m.__setitem__("status", 500),
                lambda m: m.__delitem__("type"),
                lambda m: m.update(status=500),
                lambda m: m.setdefault("trailers", True),
                lambda m: m.pop("type"),
                lambda m: m.popitem(),
                lambda m: m.clear(),
                lambda m: m.__ior__({"status": 500}),
                lambda m: m.__init__(status=500),
            ]
            for edit in edits:
                with pytest.raises(TypeError, match="shared"):
                    edit(message)
            assert "headers" not in message or isinstance(message["headers"], tuple)

        _refuse_full_path(app)
        assert await _call(app, "/api/client/features", line) == first

    _in_process(test)


def test_memo__token_revoked_while_its_answer_is_built__not_remembered(
    transactional_db: None, token: str, settings: Any
) -> None:
    # The revocation's event handled between the token check and the answer being built:
    # the answer (authorised before it) is sent, but never remembered, so the memo does not
    # hold the revoked token's header.
    settings.FASTPATH_POLL_INTERVAL_S = 3600
    line = [(b"authorization", token.encode())]

    async def test(app: FastPath) -> None:
        authorise = app._authorise

        async def then_revoked(headers: dict[str, str]) -> Any:
            found = await authorise(headers)
            app._drop_token(found[0])  # what the revocation's event does, meanwhile
            return found

        app._authorise = then_revoked  # type: ignore[method-assign]
        assert (await _call(app, "/api/client/features", line))[0] == 200
        assert len(app.memo) == 0

    _in_process(test)


@pytest.mark.parametrize(
    "line", [(b"Accept-Encoding", b"gzip"), (b"UNLEASH-CLIENT-SPEC", b"5.1.9")]
)
def test_memo__a_choosing_header_named_in_another_case__not_remembered(
    transactional_db: None, token: str, line: tuple[bytes, bytes]
) -> None:
    # ASGI servers lower-case header names; one that did not would have the full path read
    # the line (it lower-cases them) while the key missed it: the answer, worked out for the
    # line, is not remembered under a key without it.
    auth = (b"authorization", token.encode())

    async def test(app: FastPath) -> None:
        assert (await _call(app, "/api/client/features", [auth, line]))[0] == 200
        assert len(app.memo) == 0
        plain = await _call(app, "/api/client/features", [auth])
        assert plain[0] == 200 and b"content-encoding" not in dict(plain[1])
        assert len(app.memo) == 1

    _in_process(test)


def test_memo__forgetting_tokens__releases_their_keys_bytes_and_shared_body() -> None:
    scope = TokenScope(token_id=1, tenant_id=1, environment_id=1, agent_id=None)
    body = b"x" * 1_000
    remembered = AnswerMemo(size=100, max_bytes=100_000)
    for n in range(3):
        for path in ("/a", "/b"):
            key = ("k", path, b"", "GET", "http", f"t{n}".encode(), (), b"")
            remembered.put(key, _answer(scope, body, f"h{n}"))
    per_key = len("/a") + len("t0")
    assert (len(remembered), remembered.held_bytes) == (6, 1_000 + 6 * per_key)

    remembered.forget_token("h0")
    assert (len(remembered), remembered.held_bytes) == (4, 1_000 + 4 * per_key)
    assert remembered.retain_tokens(lambda token_hash: token_hash == "h2") == 1
    assert (len(remembered), remembered.held_bytes) == (2, 1_000 + 2 * per_key)
    assert {key[5] for key in remembered._answers} == {b"t2"}

    remembered.forget_token("h2")
    remembered.forget_token("never held")
    assert (len(remembered), remembered.held_bytes) == (0, 0)
    assert remembered._bodies == {} and remembered._keys == {}
