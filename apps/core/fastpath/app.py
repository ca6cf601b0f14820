"""The ASGI application: registered runtime routes here, everything else to Django.

It imports no app: routes, topics and the token lookup are registered by the apps that own
them (see ``registry``); changes arrive as events (``apps.core.events``) from this process
or, through Redis pub/sub, from any other."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import contextvars
import gc
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, quote

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.signals import setting_changed

from apps.core import events
from apps.core.errors import (
    DATABASE_RETRY_AFTER_S,
    DATABASE_UNAVAILABLE,
    DATABASE_UNAVAILABLE_DETAIL,
)
from apps.core.tokens import MAX_TOKEN_LENGTH, hash_token, runtime_token_candidate

from . import subscriber
from .conditional import parse_if_none_match
from .encoding import (
    GZIP,
    KEEP_ALIVE,
    KEEP_ALIVE_GZIP,
    NOT_MODIFIED,
    NOT_MODIFIED_GZIP,
    choose_coding,
    coded_tag,
    gzip_member,
    sse_event,
)
from .memo import Answer, AnswerMemo, MemoKey, Message
from .registry import (
    NO_PARAMETERS,
    ActionRoute,
    Route,
    StreamRoute,
    TokenScope,
    WaitRoute,
    registry,
)
from .state import Board, Rendered, Snapshot, SnapshotCache, StreamEvents, TokenCache, _db_call

log = logging.getLogger(__name__)

POLL_INTERVAL_S = 0.5  # catch-up poll of topics' versions when there is no Redis
POLL_INTERVAL_WITH_REDIS_S = 5.0  # safety net for a missed pub/sub message


def _poll_interval() -> float:
    configured = getattr(settings, "FASTPATH_POLL_INTERVAL_S", None)
    if configured:
        return float(configured)
    return POLL_INTERVAL_WITH_REDIS_S if settings.REDIS_URL else POLL_INTERVAL_S


Scope = dict[str, Any]
# where ``_remembered`` leaves the request's memo key in its scope for ``_remember``
_MEMO_KEY = "controlplane.memo_key"
# the longest Authorization value worth a memo key: a token and a scheme ("Bearer ") with
# some white space; a longer one is answered by the full path (refused, unless it is a token
# padded with more white space) and never remembered
_MAX_AUTHORIZATION = MAX_TOKEN_LENGTH + 32
# the request headers that choose a remembered answer, besides a route's ``Vary``
_MEMO_HEADERS = (b"authorization", b"if-none-match", b"accept-encoding")

# ``time.monotonic``, bound once for the answer memo's hot path (``_remembered``)
_monotonic = time.monotonic


def _latin1_or_none(value: str | None) -> bytes | None:
    return None if value is None else value.encode("latin-1")


def _repeats_a_choosing_line(
    lines: list[tuple[bytes, bytes]], vary_names: tuple[bytes, ...]
) -> bool:
    """Whether a header that chooses a remembered answer (``_MEMO_HEADERS``, the route's
    ``Vary``) has more than one line in ``lines`` (the full path joins them)."""
    names = [name for name, _ in lines]
    return any(names.count(name) > 1 for name in (*_MEMO_HEADERS, *vary_names))


def _lookup_token(raw: str) -> tuple[TokenScope, float | None] | None:
    """The registered token lookup (``registry.provide_token_lookup``); none registered
    grants nothing."""
    lookup = registry.token_lookup
    return lookup(raw) if lookup is not None else None


def _current_version(topic: str, key: str) -> int:
    """A topic's version now, from its registered ``Topic`` (0 when none is registered: the
    fast path then knows only what events tell it)."""
    registered = registry.topics.get(topic)
    return registered.current(key) if registered is not None else 0


def _all_versions() -> list[tuple[str, str, int]]:
    """(topic, key, version) of every registered topic that can be polled."""
    return [
        (topic.name, key, version)
        for topic in list(registry.topics.values())
        if topic.poll_all is not None
        for key, version in topic.poll_all().items()
    ]


# Sent with every fast-path answer: JSON and event streams for machines, never a page to
# render, sniff, frame or leak a referrer from (OWASP secure headers for APIs).
SECURITY_HEADERS: list[tuple[bytes, bytes]] = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'"),
    (b"cross-origin-resource-policy", b"same-origin"),
]


def _security_headers(scope: Scope) -> list[tuple[bytes, bytes]]:
    headers = list(SECURITY_HEADERS)
    seconds = getattr(settings, "SECURE_HSTS_SECONDS", 0)
    # Like Django's SecurityMiddleware: HSTS only on an https request (as the TLS-terminating
    # proxy reports it through X-Forwarded-Proto, see docs/runtime-api.md).
    if seconds and scope.get("scheme") == "https":
        value = f"max-age={seconds}"
        if getattr(settings, "SECURE_HSTS_INCLUDE_SUBDOMAINS", False):
            value += "; includeSubDomains"
        if getattr(settings, "SECURE_HSTS_PRELOAD", False):
            value += "; preload"
        headers.append((b"strict-transport-security", value.encode()))
    return headers


def _json(
    status: int, body: dict[str, Any], extra: list[tuple[bytes, bytes]] | None = None
) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """An error (or other JSON) answer in the API's one error shape: never stored by a cache."""
    body = {"detail": body["detail"], "errors": body.get("errors", {})}
    headers = [(b"content-type", b"application/json"), (b"cache-control", b"no-store")]
    return status, [*headers, *(extra or [])], json.dumps(body).encode()


UNAUTHORISED = {"detail": "A valid runtime token is required in the Authorization header."}
_SQLITE = settings.DATABASES["default"]["ENGINE"].endswith("sqlite3")
HOLD_RETRY_AFTER_S = 5


def _too_many_held(limit: int) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    return _json(
        429,
        {
            "detail": f"This token already holds {limit} open long-polls and streams on this "
            "server (FASTPATH_MAX_OPEN_PER_TOKEN): close one or retry later."
        },
        [(b"retry-after", str(HOLD_RETRY_AFTER_S).encode())],
    )


class _Gone(Exception):
    """The client of a waiting request went away: nobody is left to answer."""


async def _until_disconnect(receive: Any) -> None:
    """Returns when the client's ``http.disconnect`` arrives: a request's one watcher while
    it waits (a long-poll, a wait-read), so a runtime that left frees its task and its place
    among the token's held connections at once, not when its ``wait`` runs out (and a stopping
    server does not wait for it). Once the response is complete the server answers
    ``receive()`` with ``http.disconnect`` at once, so the watcher ends by itself."""
    while (await receive())["type"] != "http.disconnect":
        pass


class _Revoked(Exception):
    """The token of a waiting request was revoked, or its scope archived, meanwhile."""


def _end(waiting: asyncio.Event | asyncio.Future[bool], why: type[Exception] = _Revoked) -> None:
    """Stop a request in flight: set a stream's or a wait-read's event, or fail a long-poll's
    waiter with ``why`` (``_Revoked``, ``_Gone``)."""
    if isinstance(waiting, asyncio.Event):
        waiting.set()
    elif not waiting.done():
        waiting.set_exception(why())


Preparer = Callable[[int], Awaitable[None]]
# (route kind, topic key, environment id, agent id, variant, view key): one answer
PreparationKey = tuple[str, str, int, int | None, str, str]
# how long a change's long-polls wait for their answers to be built before being woken anyway
# (a build takes ~20 ms; see FastPath._advance)
PREPARE_BUDGET_S = 0.25


@dataclass(slots=True)
class Preparation:
    """How to build one answer long-polls wait for, and how many wait for it."""

    prepare: Preparer
    waiting: int = 1


def _settle(build: asyncio.Future[None]) -> None:
    # a failed preparation is the waiters' to meet when they build themselves: not reported
    # here (nor as "exception never retrieved")
    if not build.cancelled():
        build.exception()


class FastPath:
    def __init__(self, django_app: Any, *, memo: AnswerMemo | None = None) -> None:
        """``django_app`` answers every request no registered route takes; ``memo`` is the
        answer memo to use (default: ``AnswerMemo()``, its default bounds)."""
        self.django_app = django_app
        self._board = Board()
        self.snapshots = SnapshotCache()
        self.stream_events = StreamEvents()
        self._tokens = TokenCache(_lookup_token)
        self._memo = AnswerMemo() if memo is None else memo
        # the look-ups of the memo's hot path, bound once (see ``_remembered``): hence the
        # memo, the board and the token cache are read-only attributes, never replaced
        self._answer_of = self._memo.lookup
        self._token_entry = self._tokens.entry_of
        self._version_at = self._board.version_at
        # plain paths' routes: the registry's own dict (never replaced), looked up directly
        self._plain_route = registry.routes.get
        # answers hold settings-dependent headers (HSTS): a changed setting (tests) empties it.
        # Weakly: the signal must not keep every discarded fast path (a test's) alive.
        setting_changed.connect(self._settings_changed)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: list[asyncio.Task[None]] = []
        # long-polls and streams in flight: ``_end`` one to stop it at once (revocation)
        self._waiting: dict[asyncio.Event | asyncio.Future[bool], tuple[str, TokenScope]] = {}
        self._topics: set[str] = set()  # subscribed to (everywhere), see _ensure_started
        # open long-polls and streams per token hash in this process: one token (a leaked
        # one, a buggy SDK loop) must not hold every connection and task the server has
        self._held: collections.Counter[str] = collections.Counter()
        # What the long-polls waiting on each slot will be sent once it moves: one preparation
        # per distinct answer (route, scope, variant, view), with how many wait for it
        # (``_advance`` builds them before waking anyone).
        self._preparations: dict[tuple[str, str], dict[PreparationKey, Preparation]] = {}
        self._preparing: set[asyncio.Future[None]] = set()

    @property
    def memo(self) -> AnswerMemo:
        """The answer memo (read-only: ``_remembered`` holds its look-up)."""
        return self._memo

    @property
    def board(self) -> Board:
        """The versions of the slots and their waiters (read-only, as ``memo``)."""
        return self._board

    @property
    def tokens(self) -> TokenCache:
        """The runtime tokens' cached scopes (read-only, as ``memo``)."""
        return self._tokens

    def _settings_changed(self, **kwargs: Any) -> None:
        self._memo.clear()

    # ------------------------------------------------------------------ background work

    def _on_event(self, event: events.Event) -> None:
        """Subscriber (everywhere) of the topics routes wait on, of the two that end tokens
        and of the one that lifts their refusal (a restore); called from any thread (a commit
        in this process) or the loop (Redis)."""
        loop = self._loop
        if loop is None:
            return
        if event.topic == events.RUNTIME_TOKEN_REVOKED:
            loop.call_soon_threadsafe(self._drop_token, event.key)
        elif event.topic == events.SCOPE_ARCHIVED:
            kind, object_id = str(event.payload["kind"]), int(event.payload["id"])
            loop.call_soon_threadsafe(self._drop_scope, kind, object_id)
        elif event.topic == events.SCOPE_RESTORED:
            loop.call_soon_threadsafe(self._tokens.forget_refused)
        else:
            topic = registry.topics.get(event.topic)
            if topic is not None and topic.wake_only:
                loop.call_soon_threadsafe(self._board.wake, event.topic, event.key)
                return
            version = topic.version_of(event.payload) if topic is not None else None
            if version is None and "revision" in event.payload:
                version = int(event.payload["revision"])
            # in a context of its own: the committing thread's (a Django view's, inside
            # asgiref's thread-sensitive executor) would make the preparation's database call
            # refuse to run ("would deadlock") and the waiters be woken unprepared
            loop.call_soon_threadsafe(
                self._advance, event.topic, event.key, version, context=contextvars.Context()
            )

    def _advance(self, topic: str, key: str, version: int | None) -> None:
        """``(topic, key)`` moved to ``version`` (None: one more than known). When long-polls
        wait on it, the answers they will be sent are built first and only then is the move
        recorded (``Board.bump``), which wakes them: each waiter then resumes once, finds its
        body built and writes it. Waking them first had ten thousand tasks resume, all wait
        for the one build, and resume again, while the build's worker thread fought them for
        the interpreter (benchmarks.propagation: ~0.5 s of 1.2 s at 10,000 runtimes).

        The most-waited answers are built first, and the waiters are woken once every answer
        is built or after ``PREPARE_BUDGET_S``, whichever comes first: a slow or failing build
        costs the others that much at most, and its own waiters then await it (or fail) as
        they always did. Meanwhile a new request gets the answer already built, the new one
        as soon as its build lands."""
        preparations = self._preparations.get((topic, key))
        known = self._board.known(topic, key)
        if version is None or not preparations or (known is not None and version <= known):
            self._board.bump(topic, key, version)
            return
        ordered = sorted(preparations.values(), key=lambda p: p.waiting, reverse=True)
        task = asyncio.ensure_future(
            self._prepare_then_bump(topic, key, version, [p.prepare for p in ordered])
        )
        self._preparing.add(task)
        task.add_done_callback(self._preparing.discard)

    async def _prepare_then_bump(
        self, topic: str, key: str, version: int, preparations: list[Preparer]
    ) -> None:
        # started in order: their builds queue on the one database thread in that order
        builds = [asyncio.ensure_future(prepare(version)) for prepare in preparations]
        for build in builds:
            build.add_done_callback(_settle)
        try:
            await asyncio.wait(builds, timeout=PREPARE_BUDGET_S)
        finally:
            self._board.bump(topic, key, version)

    def _expect(self, slot: tuple[str, str], key: PreparationKey, prepare: Preparer) -> None:
        """One more long-poll waits on ``slot`` for the answer ``key`` (``prepare`` builds it
        at a given version); ``_unexpect`` when it stops waiting."""
        waiting = self._preparations.setdefault(slot, {})
        found = waiting.get(key)
        if found is None:
            waiting[key] = Preparation(prepare)
        else:
            found.waiting += 1

    def _unexpect(self, slot: tuple[str, str], key: PreparationKey) -> None:
        waiting = self._preparations.get(slot)
        found = waiting.get(key) if waiting is not None else None
        if waiting is None or found is None:
            return
        found.waiting -= 1
        if found.waiting <= 0:
            del waiting[key]
            if not waiting:
                del self._preparations[slot]

    def _drop_token(self, token_hash: str) -> None:
        self._tokens.forget(token_hash)
        self._memo.forget_token(token_hash)  # its answers' keys hold its header
        for waiting, (waiting_hash, _) in list(self._waiting.items()):
            if waiting_hash == token_hash:
                _end(waiting)

    def _drop_scope(self, kind: str, object_id: int) -> None:
        if kind not in ("tenant", "environment", "agent"):
            return
        self._tokens.forget_scope(kind=kind, object_id=object_id)
        self._memo.retain_tokens(self._tokens.holding())
        for waiting, (_, scope) in list(self._waiting.items()):
            if getattr(scope, f"{kind}_id") == object_id:
                _end(waiting)

    def _ensure_started(self) -> None:
        if self._loop is not None:
            return
        self._loop = asyncio.get_running_loop()
        for topic in {
            *registry.topics_waited_on(),
            events.RUNTIME_TOKEN_REVOKED,
            events.SCOPE_ARCHIVED,
            events.SCOPE_RESTORED,
        }:
            self._watch(topic)
        self._tasks.append(asyncio.create_task(self._poll_versions()))
        self._tasks.append(asyncio.create_task(self._forget_unheld_tokens()))
        if settings.REDIS_URL:
            self._tasks.append(asyncio.create_task(self._listen_redis()))

    def _watch(self, topic: str) -> None:
        """Hear ``topic``'s events from now on (a route registered after start declares one
        the start did not know)."""
        if topic not in self._topics:
            self._topics.add(topic)
            events.subscribe(topic, self._on_event, everywhere=True)

    async def _forget_unheld_tokens(self) -> None:
        """Every poll interval, drop the answers of tokens no longer cached (their entry
        expired ``TOKEN_TTL_S`` after its look-up, or was evicted): their keys hold the
        tokens' headers, kept no longer than the tokens' entries. On a timer of its own, not
        behind the poll's database call (a stalled database must not keep them)."""
        interval = _poll_interval()
        while True:
            try:
                self._memo.retain_tokens(self._tokens.holding())
            except Exception:
                log.warning("fastpath.memo_sweep_failed", exc_info=True)
            await asyncio.sleep(interval)

    async def _poll_versions(self) -> None:
        interval = _poll_interval()
        while True:
            try:
                for topic, key, version in await sync_to_async(_db_call)(_all_versions):
                    self._advance(topic, key, version)
            except Exception:
                log.warning("fastpath.poll_failed", exc_info=True)
            await asyncio.sleep(interval)

    async def _listen_redis(self) -> None:
        await subscriber.listen(
            settings.REDIS_URL,
            events.channel(settings.REDIS_URL),
            events.receive,
            health_s=settings.FASTPATH_REDIS_HEALTH_S,
            connect_timeout_s=settings.REDIS_SOCKET_CONNECT_TIMEOUT_S,
        )

    async def _stop(self) -> None:
        for topic in self._topics:
            events.unsubscribe(topic, self._on_event, everywhere=True)
        self._topics = set()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        for preparing in list(self._preparing):
            preparing.cancel()  # shutting down: nobody is left to wake
        self._loop = None

    # ------------------------------------------------------------------ ASGI entry

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            # a plain path is one dict look-up (the fleet's documents); a template, a match
            route = self._plain_route(scope["path"])
            if route is not None:
                params = NO_PARAMETERS
            else:
                matched = registry.match(scope["path"])
                if matched is None:
                    await self.django_app(scope, receive, send)
                    return
                route, params = matched
            if self._loop is None:
                self._ensure_started()
            if type(route) is Route:
                remembered = self._remembered(route, scope)
                if remembered is not None:
                    # the fleet's hot path: four dict look-ups and a clock read, then two
                    # sends of messages built when the answer was remembered
                    await send(remembered[0])
                    await send(remembered[1])
                    return
            await self._guarded(scope, receive, send, route, params)
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        else:
            await self.django_app(scope, receive, send)

    def _remembered(self, route: Route, scope: Scope) -> tuple[Message, Message] | None:
        """The two ASGI messages (start, body) of the remembered answer to this request, or
        None: the request takes the full path (see ``memo``), which finds the request's
        ``MemoKey`` in ``scope[_MEMO_KEY]`` (None: nothing may be remembered for it: no
        ``Authorization``, one longer than any token's spelling, or a repeated line of a
        header that chooses the answer). One function, without calls of its own on a hit:
        this runs for every request a runtime makes."""
        # The header lines into a dict in one C-level pass (names lower-cased by the server,
        # as ASGI's HTTP scope has them). A repeated line keeps only its last value there, so
        # when the dict is shorter than the lines, a repeat of a line that matters gives up
        # (the full path joins them).
        lines = scope["headers"]
        found = dict(lines)
        vary_names = route.vary_names
        authorization = found.get(b"authorization")
        if (
            authorization is None
            or len(authorization) > _MAX_AUTHORIZATION
            or (len(found) != len(lines) and _repeats_a_choosing_line(lines, vary_names))
        ):
            scope[_MEMO_KEY] = None
            return None
        # the Vary values: none for most routes, one for Unleash's (without building a map
        # and a tuple from it), any number otherwise
        if not vary_names:
            varied: tuple[bytes | None, ...] = ()
        elif len(vary_names) == 1:
            varied = (found.get(vary_names[0]),)
        else:
            varied = tuple(map(found.get, vary_names))
        key: MemoKey = (
            route.kind,
            scope["path"],
            scope.get("query_string", b""),
            scope["method"],
            scope.get("scheme", "http"),
            # The header as sent: the same bytes are the same token, however it is spelled
            # (``Bearer``, white space), found without parsing or hashing it here (a digest
            # cost ~3% of the 304 path's requests per second; decision 0039). The token's own
            # hash is the answer's (``Answer.token_hash``); the memo drops a token's answers
            # when it stops being valid, so they hold its header no longer than that.
            authorization,
            varied,
            found.get(b"accept-encoding", b""),
        )
        answer = self._answer_of(key)
        if answer is not None:
            # dict look-ups bound at start: the token still cached, unexpired, with the
            # scope the answer was built for; the slot still at the answer's version
            token = self._token_entry(answer.token_hash)
            if (
                token is not None
                and token[0] is answer.scope
                and token[1] > _monotonic()
                and self._version_at(answer.slot) == answer.version
            ):
                condition = found.get(b"if-none-match")
                if not condition:
                    return answer.ok
                if condition in answer.tags:
                    return answer.not_modified
                # a list, a weak or an old tag: the full rules
        scope[_MEMO_KEY] = key  # a miss remembers under it: worked out once per request
        return None

    def _remember(
        self, route: Route, scope: Scope, answer: Answer, headers: dict[str, str]
    ) -> None:
        """Remember ``answer``, worked out for the request ``headers`` (as the full path read
        them), under the request's memo key (``_remembered`` left it in ``scope``). Only when
        the key holds those very values (not so if a server passed header names in another
        case, whose lines the full path joins): what ties the key to ``answer.token_hash``
        and to the coding and ``Vary`` values the answer is for. And only while the token is
        still cached for the scope the answer was built for: a revocation or an archiving
        handled during the build has dropped the token's answers already, and must not find
        one remembered after it (the hit's check would refuse it, but the memo would hold
        the revoked token's header)."""
        key = scope.get(_MEMO_KEY)
        if key is None:
            return
        sent = [
            headers.get("authorization", "").encode("latin-1"),
            headers.get("accept-encoding", "").encode("latin-1"),
            *(_latin1_or_none(headers.get(name.decode("latin-1"))) for name in route.vary_names),
        ]
        if sent != [key[5], key[7], *key[6]]:
            return
        entry = self._token_entry(answer.token_hash)
        if entry is not None and entry[0] is answer.scope:
            self._memo.put(key, answer)

    async def _guarded(
        self,
        scope: Scope,
        receive: Any,
        send: Any,
        route: Route | StreamRoute | ActionRoute | WaitRoute,
        params: dict[str, str],
    ) -> None:
        """HTTPS, method and failure handling shared by every fast-path route: whatever goes
        wrong, the client gets the API's JSON error shape, never a bare text page."""
        started = False

        async def tracked(message: dict[str, Any]) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                # Not on a 304: it carries only what updates the client's stored 200 (ETag,
                # Cache-Control, Vary: RFC 9110 15.4.5), which already has these; and the
                # 304 is the fleet's hot path, where each header costs uvicorn a validation.
                if message["status"] != 304:
                    message = {
                        **message,
                        "headers": [*message["headers"], *_security_headers(scope)],
                    }
            await send(message)

        if route.topic not in self._topics:  # the hot path: a set look-up, no call
            self._watch(route.topic)
        try:
            if getattr(settings, "SECURE_SSL_REDIRECT", False) and scope.get("scheme") != "https":
                await self._redirect_to_https(scope, tracked)
            elif scope["method"] in route.methods and isinstance(route, ActionRoute):
                await self._act(route, params, scope, receive, tracked)
            elif scope["method"] in route.methods and isinstance(route, WaitRoute):
                await self._wait_read(route, params, scope, receive, tracked)
            elif scope["method"] in route.methods and isinstance(route, StreamRoute):
                await self._stream(route, params, scope, receive, tracked)
            elif scope["method"] in route.methods and isinstance(route, Route):
                await self._serve(route, params, scope, receive, tracked)
            else:
                allow = ", ".join(route.methods)
                await _send(
                    tracked,
                    *_json(
                        405,
                        {"detail": f"Method {scope['method']} not allowed; allowed: {allow}."},
                        [(b"allow", allow.encode())],
                    ),
                )
        except DATABASE_UNAVAILABLE as error:
            # Lost twice in a row (see state._db_call) or not answering: a transient outage the
            # client should wait out, not a fault of this request (as Django's side answers).
            log.warning("fastpath.database_unavailable path=%s: %s", scope["path"], error)
            if not started:
                retry = [(b"retry-after", str(DATABASE_RETRY_AFTER_S).encode())]
                await _send(tracked, *_json(503, {"detail": DATABASE_UNAVAILABLE_DETAIL}, retry))
        except Exception:
            log.exception("fastpath.request_failed", extra={"path": scope["path"]})
            if not started:
                await _send(tracked, *_json(500, {"detail": "Internal server error."}))

    async def _act(
        self, route: ActionRoute, params: dict[str, str], scope: Scope, receive: Any, send: Any
    ) -> None:
        """An action route: token, body (at most ``max_body_bytes``), the owning app's handler
        in the database thread, its JSON answer."""
        _, token = await self._authorise(_headers(scope))
        if token is None:
            await _send(send, *_json(401, UNAUTHORISED))
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > route.max_body_bytes:
                limit = route.max_body_bytes
                await _send(
                    send,
                    *_json(413, {"detail": f"The request body is over {limit:,} bytes."}),
                )
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        # A thread of the default executor, not the one thread-sensitive thread the reads
        # share: actions of many runtimes overlap their database round trips (each thread
        # has its own connection); the database serialises what must be. SQLite (the
        # embedded default) serialises every writer anyway, and its shared-cache test
        # databases refuse a second one instead of waiting: one thread there.
        call = sync_to_async(_db_call, thread_sensitive=_SQLITE)
        status, answer = await call(route.handle, token, b"".join(chunks), params)
        await _send_answer(send, status, answer)

    async def _wait_read(
        self, route: WaitRoute, params: dict[str, str], scope: Scope, receive: Any, send: Any
    ) -> None:
        """A long-pollable read: answer when it settles, or at ``?wait=`` seconds."""
        token_hash, token = await self._authorise(_headers(scope))
        if token is None:
            await _send(send, *_json(401, UNAUTHORISED))
            return
        query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
        try:
            wait = float(query.get("wait", "0") or 0)
        except ValueError:
            wait = -1
        if not 0 <= wait <= route.max_wait_s:  # also refuses nan and inf
            errors = {"wait": [f"Seconds to wait, between 0 and {route.max_wait_s:g}."]}
            await _send(send, *_json(400, {"detail": "Invalid input.", "errors": errors}))
            return
        slot = (route.topic, route.topic_key(token, params))
        read = sync_to_async(_db_call)
        if wait <= 0:
            status, answer, _ = await read(route.read, token, params)
            await _send_answer(send, status, answer)
            return
        if not self._hold(token_hash):
            await _send(send, *_too_many_held(settings.FASTPATH_MAX_OPEN_PER_TOKEN))
            return
        deadline = time.monotonic() + wait
        recheck = route.recheck_s or float(getattr(settings, "FASTPATH_WAIT_RECHECK_S", 5.0))
        revoked = asyncio.Event()
        self._waiting[revoked] = (token_hash, token)
        watcher = asyncio.ensure_future(_until_disconnect(receive))
        try:
            while True:
                woken = self._board.arm(*slot)  # before the read: a change after it wakes us
                try:
                    status, answer, settled = await read(route.read, token, params)
                    remaining = deadline - time.monotonic()
                    if status != 200 or settled or remaining <= 0:
                        break
                    change = asyncio.create_task(woken.wait())
                    ended = asyncio.create_task(revoked.wait())
                    try:
                        await asyncio.wait(
                            {change, ended, watcher},
                            timeout=min(remaining, recheck),
                            return_when=asyncio.FIRST_COMPLETED,
                        )
                    finally:  # also when this request's task is cancelled meanwhile
                        change.cancel()
                        ended.cancel()
                finally:
                    self._board.disarm(*slot)
                if revoked.is_set():
                    await _send(send, *_json(401, UNAUTHORISED))
                    return
                if watcher.done():
                    return  # the client left: nobody is left to answer
        finally:
            self._waiting.pop(revoked, None)
            self._release(token_hash)
            watcher.cancel()
        await _send_answer(send, status, answer)

    async def _redirect_to_https(self, scope: Scope, send: Any) -> None:
        # As Django's SECURE_SSL_REDIRECT does for every other path: the token has already
        # crossed in clear, but the client learns where to go (see docs/runtime-api.md, TLS).
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        host = getattr(settings, "SECURE_SSL_HOST", None) or headers.get("host", "")
        query = scope.get("query_string", b"").decode("latin-1")
        location = f"https://{host}{quote(scope['path'])}" + (f"?{query}" if query else "")
        await _send(
            send,
            *_json(
                301,
                {"detail": "HTTPS required: use the https:// address."},
                [(b"location", location.encode("latin-1", "replace"))],
            ),
        )

    async def _lifespan(self, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self._ensure_started()
                # Everything loaded so far (Django, the apps, their modules) lives as long as
                # the process: out of the collector's generations, so the collections the
                # request path's allocations trigger do not walk it each time.
                gc.freeze()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self._stop()
                gc.unfreeze()  # a server stopped within a process (tests): collectable again
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _authorise(self, headers: dict[str, str]) -> tuple[str, TokenScope | None]:
        """(token hash, scope) of the request's runtime token; scope None when it grants
        nothing. Only well-formed tokens reach the cache (and, on a miss, the database)."""
        raw = runtime_token_candidate(headers.get("authorization", ""))
        if not raw:
            return "", None
        token_hash = hash_token(raw)
        return token_hash, await self._tokens.resolve(token_hash, raw)

    async def _current_version(self, topic: str, key: str) -> int:
        known = self._board.known(topic, key)
        if known is None:
            known = await sync_to_async(_db_call)(_current_version, topic, key)
            self._board.bump(topic, key, known)
        return known

    def _hold(self, token_hash: str) -> bool:
        """Count one more open long-poll or stream of ``token_hash``; False (nothing counted)
        when the token already holds ``FASTPATH_MAX_OPEN_PER_TOKEN`` of them here."""
        if self._held[token_hash] >= settings.FASTPATH_MAX_OPEN_PER_TOKEN:
            return False
        self._held[token_hash] += 1
        return True

    def _release(self, token_hash: str) -> None:
        self._held[token_hash] -= 1
        if self._held[token_hash] <= 0:
            del self._held[token_hash]  # the counter holds only tokens with something open

    async def _wait_change(
        self,
        token_hash: str,
        token: TokenScope,
        slot: tuple[str, str],
        version: int,
        timeout: float,
        watcher: asyncio.Future[None],
    ) -> bool:
        """True when ``slot`` (topic, key) moved beyond ``version`` within ``timeout``, False
        at timeout; raises ``_Revoked`` the moment the token is revoked or its scope archived,
        ``_Gone`` when ``watcher`` (``_until_disconnect``) sees the client leave. One future
        per waiting request (``Board.waiter``): revocation and departure fail it, a change
        resolves it True, its timer False."""
        if watcher.done():
            raise _Gone
        waiter = self._board.waiter(*slot, version, timeout)
        self._waiting[waiter] = (token_hash, token)

        def gone(_: asyncio.Future[None]) -> None:
            _end(waiter, _Gone)

        watcher.add_done_callback(gone)
        try:
            return await waiter
        finally:
            watcher.remove_done_callback(gone)
            self._waiting.pop(waiter, None)
            waiter.cancel()  # a no-op once resolved

    async def _serve(
        self, route: Route, params: dict[str, str], scope: Scope, receive: Any, send: Any
    ) -> None:
        headers = _headers(scope)
        pairs = parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
        query = dict(pairs)
        token_hash, token = await self._authorise(headers)
        if token is None:
            await _send(send, *_json(401, UNAUTHORISED))
            return
        try:
            wait = float(query.get("wait", "0") or 0)
        except ValueError:
            wait = -1
        if not 0 <= wait <= route.max_wait_s:  # also refuses nan and inf
            await _send(
                send,
                *_json(
                    400,
                    {
                        "detail": "Invalid input.",
                        "errors": {
                            "wait": [f"Seconds to wait, between 0 and {route.max_wait_s:g}."]
                        },
                    },
                ),
            )
            return
        variant = route.variant(headers, query)
        view_key = route.view_key(params, pairs)
        condition = parse_if_none_match(headers.get("if-none-match"))
        slot = (route.topic, route.topic_key(token, params))

        async def current() -> tuple[int, Any]:
            revision = await self._current_version(*slot)
            snapshot = await self.snapshots.get(
                route.kind, route.build, token, variant, revision, route.etag_of, slot[1]
            )
            return snapshot.revision, snapshot.render(view_key, route.view, route.etag_of)

        revision, rendered = await current()
        first_tag = rendered.etag

        def held(rendered: Rendered) -> bool:
            # The client already holds this content, in either coding: the plain form's tag
            # or the gzip form's (each strong, RFC 9110 8.8.3). ``*`` holds for the one
            # current when the request arrived: a long-poll with ``*`` waits for the next one.
            if condition.any:
                return rendered.etag == first_tag
            return condition.matches(rendered.etag) or (
                rendered.gzip is not None and condition.matches(rendered.gzip_etag)
            )

        # Long-poll: a client that already holds what it would be sent waits until that
        # changes. The wait is on the route's (topic, key), e.g. the environment's revision; a
        # new version that leaves this view as it was (another flag changed) keeps it waiting.
        deadline = time.monotonic() + wait
        waits = wait > 0 and rendered.body is not None and held(rendered)
        if waits and not self._hold(token_hash):
            await _send(send, *_too_many_held(settings.FASTPATH_MAX_OPEN_PER_TOKEN))
            return
        watcher = asyncio.ensure_future(_until_disconnect(receive)) if waits else None
        expected = (route.kind, slot[1], token.environment_id, token.agent_id, variant, view_key)
        if waits:

            async def prepare(version: int) -> None:
                snapshot = await self.snapshots.get(
                    route.kind, route.build, token, variant, version, route.etag_of, slot[1]
                )
                snapshot.render(view_key, route.view, route.etag_of)

            self._expect(slot, expected, prepare)
        try:
            while (
                watcher is not None
                and rendered.body is not None
                and held(rendered)
                and (remaining := deadline - time.monotonic()) > 0
                and await self._wait_change(token_hash, token, slot, revision, remaining, watcher)
            ):
                revision, rendered = await current()
        except _Revoked:
            await _send(send, *_json(401, UNAUTHORISED))
            return
        except _Gone:
            return  # nobody is left to answer
        finally:
            if waits:
                self._release(token_hash)
                self._unexpect(slot, expected)
            if watcher is not None:
                watcher.cancel()
        if rendered.body is None:
            await _send(send, *_json(404, {"detail": route.not_found(params)}))
            return
        # The gzip form when the client accepts it (RFC 9110 12.5.3), built with the plain
        # one for this revision: nothing is compressed here. A 304 carries the tag a 200
        # would (RFC 9110 15.4.5): the chosen coding's.
        coded = choose_coding(
            headers.get("accept-encoding"), gzip_available=rendered.gzip is not None
        )
        gzipped = coded == GZIP and rendered.gzip is not None
        common = [
            (b"etag", (rendered.gzip_etag if gzipped else rendered.etag).encode()),
            (b"cache-control", b"no-cache"),
            (b"vary", _vary((*route.vary, "Accept-Encoding"))),
            (b"x-revision", str(revision).encode()),
        ]
        content = rendered.gzip if gzipped and rendered.gzip is not None else rendered.body
        body = b"" if scope["method"] == "HEAD" else content
        coding = [(b"content-encoding", b"gzip")] if gzipped else []
        ok_headers = [
            (b"content-type", b"application/json"),
            *coding,
            *common,
            (b"content-length", str(len(content)).encode()),
        ]
        # no Content-Length on a 304: it would have to be the 200's (RFC 9110 8.6), and the
        # client has no use for it
        not_modified_headers = common
        if wait <= 0:  # a long-poll's next request waits again: nothing to remember for it
            tags = [rendered.etag, *([rendered.gzip_etag] if rendered.gzip is not None else [])]
            self._remember(
                route,
                scope,
                Answer.of(
                    scope=token,
                    token_hash=token_hash,
                    slot=slot,
                    version=revision,
                    tags=tuple(tag.encode() for tag in tags),
                    # as ``tracked`` sends them: the security headers on everything but a 304
                    ok_headers=[*ok_headers, *_security_headers(scope)],
                    body=body,
                    not_modified_headers=not_modified_headers,
                ),
                headers,
            )
        if held(rendered):
            await _send_whole(send, 304, not_modified_headers, b"")
            return
        await _send_whole(send, 200, ok_headers, body)

    async def _stream(
        self, route: StreamRoute, params: dict[str, str], scope: Scope, receive: Any, send: Any
    ) -> None:
        headers = _headers(scope)
        query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
        token_hash, token = await self._authorise(headers)
        if token is None:
            await _send(send, *_json(401, UNAUTHORISED))
            return
        if not self._hold(token_hash):
            await _send(send, *_too_many_held(settings.FASTPATH_MAX_OPEN_PER_TOKEN))
            return
        try:
            await self._stream_held(
                route, params, scope, receive, send, headers, query, token_hash, token
            )
        finally:
            self._release(token_hash)

    async def _stream_held(
        self,
        route: StreamRoute,
        params: dict[str, str],
        scope: Scope,
        receive: Any,
        send: Any,
        headers: dict[str, str],
        query: dict[str, str],
        token_hash: str,
        token: TokenScope,
    ) -> None:
        variant = route.variant(headers, query)
        slot = (route.topic, route.topic_key(token, params))
        revision = await self._current_version(*slot)

        async def snapshot_at(revision: int) -> Snapshot:
            return await self.snapshots.get(
                route.kind,
                route.build,
                token,
                variant,
                revision,
                None,
                slot[1],
                compress=False,
                hydration=route.connected_event,
            )

        snapshot = await snapshot_at(revision)
        # Gzip when the client accepts it (RFC 9110 12.5.3, as the documents): the stream is
        # then a sequence of complete gzip members, one per event or comment (RFC 1952 2.2),
        # each built once and shared (docs/decisions/0027-precompressed-bodies.md). A client
        # decodes each event whole as soon as its member arrives; nothing is compressed per
        # connection and no compressor is held for one.
        gzipped = choose_coding(headers.get("accept-encoding"), gzip_available=True) == GZIP
        coding = [(b"content-encoding", b"gzip")] if gzipped else []
        tag = coded_tag(snapshot.etag, GZIP) if gzipped else snapshot.etag
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"text/event-stream"),
                    *coding,
                    (b"cache-control", b"no-cache"),
                    (b"x-accel-buffering", b"no"),
                    (b"etag", tag.encode()),
                    (b"vary", _vary((*route.vary, "Accept-Encoding"))),
                ],
            }
        )

        async def emit(chunk: bytes) -> None:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})

        disconnected = asyncio.Event()

        async def watch_disconnect() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            disconnected.set()

        watcher = asyncio.create_task(watch_disconnect())
        revoked = asyncio.Event()
        self._waiting[revoked] = (token_hash, token)
        try:
            condition = parse_if_none_match(headers.get("if-none-match"))
            if condition.matches(snapshot.etag) or condition.matches(
                coded_tag(snapshot.etag, GZIP)
            ):
                # The client holds this very state (its tag, of either coding, matches): no
                # hydration again, only what changes from here on.
                await emit(NOT_MODIFIED_GZIP if gzipped else NOT_MODIFIED)
            elif gzipped and snapshot.hydration_gzip is not None:
                await emit(snapshot.hydration_gzip)  # built with the snapshot, shared
            else:
                hydration = sse_event(route.connected_event, snapshot.revision, snapshot.body)
                # (a gzip stream whose snapshot lacks the member — never for a stream route's
                # own kind — still gets gzip: the stream must stay what it said it is)
                await emit(gzip_member(hydration, what="hydration") if gzipped else hydration)
            while not disconnected.is_set() and not revoked.is_set():
                # Wait for the next revision, a heartbeat, the client leaving or the token
                # being revoked, whichever comes first: a gone client must not hold its task
                # until the next heartbeat, a revoked token must not get the next change.
                change = asyncio.create_task(
                    self._board.wait_beyond(*slot, snapshot.revision, route.heartbeat_s)
                )
                gone = asyncio.create_task(disconnected.wait())
                ended = asyncio.create_task(revoked.wait())
                await asyncio.wait({change, gone, ended}, return_when=asyncio.FIRST_COMPLETED)
                gone.cancel()
                ended.cancel()
                if disconnected.is_set() or revoked.is_set():
                    change.cancel()
                    break
                changed = change.result()
                if not changed:
                    await emit(KEEP_ALIVE_GZIP if gzipped else KEEP_ALIVE)
                    continue
                _, still_valid = await self._authorise(headers)
                if still_valid is None:
                    break  # a revoked token's stream ends at the next change at the latest
                revision = await self._current_version(*slot)
                newer = await snapshot_at(revision)
                # Computed (and compressed) once per pair of bodies, for every connection
                # making the same move.
                update = self.stream_events.get(
                    route.kind,
                    snapshot,
                    newer,
                    lambda old=snapshot, new=newer: _update_event(route, old, new),  # type: ignore[misc]
                )
                snapshot = newer
                chunk = update.coded(gzipped)
                if chunk is not None:
                    await emit(chunk)
        finally:
            self._waiting.pop(revoked, None)
            watcher.cancel()
            with contextlib.suppress(Exception):
                await send({"type": "http.response.body", "body": b"", "more_body": False})


def _update_event(route: StreamRoute, old: Snapshot, new: Snapshot) -> bytes | None:
    """The plain update event from ``old``'s body to ``new``'s, None when nothing changed for
    the stream."""
    data = route.delta(old.body, new.body)
    return None if data is None else sse_event(route.updated_event, new.revision, data.encode())


def _headers(scope: Scope) -> dict[str, str]:
    # Repeated header lines are one comma-separated list (RFC 9110 5.3), e.g. If-None-Match.
    headers: dict[str, str] = {}
    for raw_name, raw_value in scope["headers"]:
        name, value = raw_name.decode("latin-1").lower(), raw_value.decode("latin-1")
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return headers


def _vary(extra: tuple[str, ...]) -> bytes:
    return ", ".join(("Authorization", *extra)).encode()


async def _send(
    send: Any,
    status: int,
    headers: list[tuple[bytes, bytes]],
    body: bytes,
    length: int | None = None,
) -> None:
    """One whole answer; ``length`` is the Content-Length when it differs from the bytes sent
    (a HEAD request announces the length of the body it does not get)."""
    size = len(body) if length is None else length
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*headers, (b"content-length", str(size).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _send_whole(
    send: Any, status: int, headers: list[tuple[bytes, bytes]], body: bytes
) -> None:
    """One whole answer whose headers already carry its Content-Length."""
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _send_answer(send: Any, status: int, answer: Any) -> None:
    """An owner's JSON answer: errors in the API's one error shape, never stored by a cache.
    An error's ``retry_after_s`` (whole seconds: a 429, a 503) is its ``Retry-After`` header,
    which clients and proxies read (the one error shape has no place for it)."""
    if status >= 400:
        retry = answer.get("retry_after_s")
        extra: list[tuple[bytes, bytes]] = []
        if isinstance(retry, int) and not isinstance(retry, bool) and retry >= 0:
            extra.append((b"retry-after", str(retry).encode()))
        await _send(send, *_json(status, dict(answer), extra))
        return
    headers = [(b"content-type", b"application/json"), (b"cache-control", b"no-store")]
    await _send(send, status, headers, json.dumps(answer).encode())
