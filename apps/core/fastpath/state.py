"""The fast path's in-memory state: versions per (topic, key), tokens by hash, built bodies."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import structlog
from asgiref.sync import sync_to_async
from django.db import InterfaceError, OperationalError, close_old_connections, connection

from .encoding import GZIP, coded_tag, gzip_form, gzip_member, sse_event
from .registry import Builder, EtagOf, TokenLookup, TokenScope, ViewOf

log = structlog.get_logger(__name__)

TOKEN_TTL_S = 10.0  # a safety net; revocations and archivings are pushed and drop entries
NEGATIVE_TOKEN_TTL_S = 2.0
TOKEN_CACHE_SIZE = 10_000  # valid tokens remembered (least recently used dropped first)
NEGATIVE_TOKEN_CACHE_SIZE = 2_000  # refused tokens remembered, in a pool of their own
VIEWS_PER_SNAPSHOT = 256  # e.g. distinct ``namePrefix`` values served from one revision
# (from, to) revision pairs whose update event is remembered: a fleet on one environment and
# variant shares one pair per change; a few hundred cover many environments changing at once
STREAM_EVENTS_KEPT = 256


def _db_call(fn, *args):  # type: ignore[no-untyped-def]
    """Run a read-only ORM call ``fn(*args)`` in the fast path's worker thread, on a
    connection checked first (``CONN_HEALTH_CHECKS``) and released or kept after as
    ``CONN_MAX_AGE`` says. A connection the database drops during the call (a restart, a
    terminated backend) is replaced and the call retried once: the calls read, or write only
    what a second run writes the same (a token's coarse last use), so running them again is
    safe. Anything else, or a second failure, is raised (the request answers 503)."""
    close_old_connections()
    try:
        try:
            return fn(*args)
        except (OperationalError, InterfaceError):
            if connection.in_atomic_block or connection.is_usable():
                raise  # not a lost connection (or not ours to replace): no retry
            log.warning("fastpath.db_reconnect", exc_info=True)
            connection.close()
            return fn(*args)
    finally:
        close_old_connections()


class Board:
    """The latest known version per ``(topic, key)`` (e.g. ``("environment.revision",
    "42")`` -> 17), and a way to wait for the next one. Versions only grow."""

    def __init__(self) -> None:
        self._versions: dict[tuple[str, str], int] = {}
        self._events: dict[tuple[str, str], asyncio.Event] = {}
        # waiters armed per slot (``arm``): a wake-only slot's event is dropped with its last
        self._armed: dict[tuple[str, str], int] = {}
        # futures waiting for a slot to move beyond the version each holds (``waiter``)
        self._waiters: dict[tuple[str, str], dict[asyncio.Future[bool], int]] = {}

    def known(self, topic: str, key: str) -> int | None:
        return self._versions.get((topic, key))

    @property
    def version_at(self) -> Callable[[tuple[str, str]], int | None]:
        """``known`` taking the ``(topic, key)`` slot as one tuple: the dict's own bound
        method, for the answer memo's hot path to keep (the dict is never replaced)."""
        return self._versions.get

    def bump(self, topic: str, key: str, version: int | None = None) -> None:
        """Record ``version`` (ignored unless newer) or, when None, one more than known; wake
        whoever waits on ``(topic, key)`` and no one else."""
        slot = (topic, key)
        known = self._versions.get(slot, 0)
        if version is None:
            version = known + 1
        if version <= known:
            return
        self._versions[slot] = version
        self._resolve_waiters(slot, version)
        event = self._events.pop(slot, None)
        if event is not None:
            event.set()

    def wake(self, topic: str, key: str) -> None:
        """Wake whoever waits on ``(topic, key)`` now, recording no version (wake-only topics:
        one key per approval would otherwise be remembered forever)."""
        event = self._events.pop((topic, key), None)
        if event is not None:
            event.set()

    def arm(self, topic: str, key: str) -> asyncio.Event:
        """An event set by the next ``bump`` or ``wake`` of ``(topic, key)``. Arm *before*
        reading what the wait is about, so a change committed after the read is not missed;
        ``disarm`` when done."""
        slot = (topic, key)
        self._armed[slot] = self._armed.get(slot, 0) + 1
        return self._events.setdefault(slot, asyncio.Event())

    def disarm(self, topic: str, key: str) -> None:
        slot = (topic, key)
        left = self._armed.get(slot, 0) - 1
        if left > 0:
            self._armed[slot] = left
            return
        self._armed.pop(slot, None)
        event = self._events.get(slot)
        if event is not None and not event.is_set():
            del self._events[slot]  # nobody waits: nothing kept for a key that may never recur

    def waiter(self, topic: str, key: str, version: int, timeout: float) -> asyncio.Future[bool]:
        """A future that becomes True as soon as ``(topic, key)`` is beyond ``version``, or
        False after ``timeout`` seconds; cancel it to stop waiting.

        One future and one timer per waiter, and a ``bump`` resolves all of a slot's waiters
        in one pass: no task per waiter, so waking ten thousand long-polls costs ten thousand
        ``set_result`` calls, not ten thousand task switches (benchmarks.propagation)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[bool] = loop.create_future()
        slot = (topic, key)
        if self._versions.get(slot, 0) > version:
            future.set_result(True)
            return future
        waiting = self._waiters.setdefault(slot, {})
        waiting[future] = version
        timer = loop.call_later(timeout, _resolve, future, False)

        def forget(done: asyncio.Future[bool]) -> None:
            timer.cancel()
            left = self._waiters.get(slot)
            if left is not None:
                left.pop(done, None)
                if not left:
                    del self._waiters[slot]

        future.add_done_callback(forget)
        return future

    async def wait_beyond(self, topic: str, key: str, version: int, timeout: float) -> bool:
        """True as soon as ``(topic, key)`` is beyond ``version``; False at timeout."""
        future = self.waiter(topic, key, version, timeout)
        try:
            return await future
        finally:
            future.cancel()  # a no-op once resolved; stops the wait when our task is cancelled

    def _resolve_waiters(self, slot: tuple[str, str], version: int) -> None:
        waiting = self._waiters.get(slot)
        if not waiting:
            return
        for future, held in list(waiting.items()):
            if held < version:
                _resolve(future, True)


def _resolve(future: asyncio.Future[bool], value: bool) -> None:
    if not future.done():
        future.set_result(value)


def digest_tag(revision: int, body: bytes) -> str:
    """The fast path's own strong entity tag for a body: revision and content digest."""
    return f'"{revision}-{hashlib.sha256(body).hexdigest()[:20]}"'


@dataclass(frozen=True)
class Rendered:
    """What one request is answered with: the bytes and their entity tag, and their gzip
    form (None when it would not be smaller) with its own tag; ``body`` None when the request
    named something the revision does not hold (404)."""

    body: bytes | None
    etag: str
    gzip: bytes | None = None
    gzip_etag: str = ""

    @classmethod
    def of(cls, body: bytes, etag: str, gzip: bytes | None) -> Rendered:
        return cls(body, etag, gzip, coded_tag(etag, GZIP) if gzip is not None else "")


NOT_FOUND = Rendered(None, "")


# Memory (docs/decisions/0027-precompressed-bodies.md): each cached revision of a document
# holds its plain bytes and, beside them, their gzip form. Measured on the benchmark's 50 flags
# and two agents (benchmarks/serving.py): the features body 26,922 B plain + 1,197 B gzip
# (4.4%); the signed config snapshot 33,116 B + 3,622 B (10.9%: digests and the signature do
# not compress). So per revision and document: plain + about 0.05-0.11 x plain, the same again
# for each view asked for (one feature, a filtered list: at most VIEWS_PER_SNAPSHOT per
# document). An event stream's snapshot keeps, beside its plain body, the gzip member of its
# whole hydration event (about the body's gzip size); its update events live in
# ``StreamEvents`` (bounded). Only the newest revision of each (route kind, topic key,
# environment, agent, variant) is kept.
@dataclass(frozen=True)
class Snapshot:
    revision: int
    body: bytes
    etag: str
    # the gzip form of ``body`` (built with it, once), None when not smaller
    gzip: bytes | None = None
    # an event stream's: its whole hydration event (``event: ...\nid: ...\ndata: <body>``)
    # as one gzip member, built with the body, once (None for document routes)
    hydration_gzip: bytes | None = None
    # views of this body by key (see registry.ViewKeyOf), computed on first request
    views: OrderedDict[str, Rendered] = field(default_factory=OrderedDict, compare=False)
    # the whole body as answered (built once: the hot path allocates nothing for it)
    whole: Rendered = field(default=NOT_FOUND, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "whole", Rendered.of(self.body, self.etag, self.gzip))

    def render(self, key: str, view: ViewOf | None, etag_of: EtagOf | None) -> Rendered:
        """The whole body for key ``""``; otherwise the view, cached (bounded: the keys come
        from query strings anyone may vary) with its gzip form, both built on its first
        request in this revision and never again."""
        if not key or view is None:
            return self.whole
        hit = self.views.get(key)
        if hit is not None:
            self.views.move_to_end(key)
            return hit
        body = view(self.body, key)
        if body is None:
            rendered = NOT_FOUND
        else:
            # A view's tag is its content's alone: a revision that leaves this view as it
            # was (another flag changed) keeps the tag, so a long-poll on it keeps waiting.
            tag = etag_of(body) if etag_of else None
            rendered = Rendered.of(
                body,
                tag or f'"{hashlib.sha256(body).hexdigest()[:24]}"',
                gzip_form(body, what="view"),
            )
        self.views[key] = rendered
        if len(self.views) > VIEWS_PER_SNAPSHOT:
            self.views.popitem(last=False)
        return rendered


def _build_with_gzip(
    build: Builder,
    scope: TokenScope,
    variant: str,
    key: str,
    compress: bool,
    hydration: str | None,
) -> tuple[int, bytes, bytes | None, bytes | None]:
    """Build a body, (``compress``) its gzip form and (``hydration``, an event name) the gzip
    member of the event stream's hydration event carrying it, in one worker-thread call, off
    the event loop."""
    revision, body = build(scope, variant, key)
    packed = gzip_form(body) if compress else None
    member = (
        gzip_member(sse_event(hydration, revision, body), what="hydration")
        if hydration is not None
        else None
    )
    return revision, body, packed, member


class SnapshotCache:
    """Built bodies per (route, scope, variant); rebuilt only when the revision moves."""

    def __init__(self) -> None:
        self._entries: dict[tuple[str, str, int, int | None, str], Snapshot] = {}
        # the build in flight per key: every request that needs it awaits this one task, so
        # the thousands of long-polls a change wakes all resume in the same loop pass (a lock
        # would hand them the body one per pass)
        self._building: dict[tuple[str, str, int, int | None, str], asyncio.Task[Snapshot]] = {}
        self.builds = 0

    async def get(
        self,
        kind: str,
        build: Builder,
        scope: TokenScope,
        variant: str,
        revision: int,
        etag_of: EtagOf | None = None,
        topic_key: str = "",
        *,
        compress: bool = True,
        hydration: str | None = None,
    ) -> Snapshot:
        """The body of ``kind`` for this scope, variant and topic key at ``revision`` or
        newer, built (once, however many ask at once) when the cached one is older, with its
        gzip form when ``compress`` (routes whose answers are whole bodies; an event stream's
        are not) and, when ``hydration`` names an event stream's connected event, the gzip
        member of that event (``Snapshot.hydration_gzip``). A failed build (the database
        unavailable) raises in every request that awaited it."""
        key = (kind, topic_key, scope.environment_id, scope.agent_id, variant)
        for attempt in range(2):
            entry = self._entries.get(key)
            if entry is not None and entry.revision >= revision:
                return entry
            task = self._building.get(key)
            if task is None:
                task = asyncio.ensure_future(
                    self._build(key, build, scope, variant, etag_of, compress, hydration)
                )
                self._building[key] = task
                task.add_done_callback(lambda done, key=key: self._built(key, done))  # type: ignore[misc]
            # shielded: a request that leaves (its client gone) does not cancel the build the
            # others wait for
            entry = await asyncio.shield(task)
            if entry.revision >= revision or attempt:
                return entry
            # a build that started before this request's revision was known: once more
        raise AssertionError("unreachable")

    async def _build(
        self,
        key: tuple[str, str, int, int | None, str],
        build: Builder,
        scope: TokenScope,
        variant: str,
        etag_of: EtagOf | None,
        compress: bool,
        hydration: str | None,
    ) -> Snapshot:
        built_revision, body, packed, member = await sync_to_async(_db_call)(
            _build_with_gzip, build, scope, variant, key[1], compress, hydration
        )
        self.builds += 1
        etag = (etag_of(body) if etag_of else None) or digest_tag(built_revision, body)
        entry = Snapshot(built_revision, body, etag, packed, member)
        known = self._entries.get(key)
        if known is None or known.revision <= built_revision:
            self._entries[key] = entry
        return entry

    def _built(
        self, key: tuple[str, str, int, int | None, str], task: asyncio.Task[Snapshot]
    ) -> None:
        if self._building.get(key) is task:
            del self._building[key]
        if not task.cancelled():
            task.exception()  # retrieved: every awaiter was told; none left is not an error


class StreamEvent:
    """One update event of an event stream, shared by every connection that moves between the
    same two bodies: its plain bytes (None when the change leaves the stream nothing to say)
    and, built on the first gzip connection's request and kept, its gzip member."""

    __slots__ = ("gzip", "plain")

    def __init__(self, plain: bytes | None) -> None:
        self.plain = plain
        self.gzip: bytes | None = None

    def coded(self, gzipped: bool) -> bytes | None:
        """The bytes to send: the gzip member (built now if first) or the plain event."""
        if self.plain is None or not gzipped:
            return self.plain
        if self.gzip is None:
            self.gzip = gzip_member(self.plain, what="event")
        return self.gzip


class StreamEvents:
    """Update events by (route kind, old body's tag, new body's tag, new revision): a fleet
    streaming one environment goes from the same body to the same next one, so the delta is
    computed and its gzip member compressed once per change, not once per connection. The
    tags are content digests, so the key names the two bodies whatever scope built them.
    Bounded (least recently used dropped first, ``STREAM_EVENTS_KEPT``); a dropped pair is
    simply computed again."""

    def __init__(self, size: int = STREAM_EVENTS_KEPT) -> None:
        self._size = size
        self._events: OrderedDict[tuple[str, str, str, int], StreamEvent] = OrderedDict()

    def get(
        self, kind: str, old: Snapshot, new: Snapshot, make: Callable[[], bytes | None]
    ) -> StreamEvent:
        """The event from ``old`` to ``new``; ``make()`` (the plain event bytes, or None)
        called only when it is not remembered."""
        key = (kind, old.etag, new.etag, new.revision)
        hit = self._events.get(key)
        if hit is not None:
            self._events.move_to_end(key)
            return hit
        event = StreamEvent(make())
        self._events[key] = event
        while len(self._events) > self._size:
            self._events.popitem(last=False)
        return event


class TokenCache:
    """Runtime tokens by hash: a bounded LRU of valid tokens (``TOKEN_TTL_S``, or less when
    the token expires sooner) and a separate, smaller LRU of refused ones
    (``NEGATIVE_TOKEN_TTL_S``), so a flood of made-up tokens costs one lookup each per TTL at
    most, can grow neither pool beyond its size, and never evicts a valid token."""

    def __init__(
        self,
        lookup: TokenLookup,
        *,
        size: int = TOKEN_CACHE_SIZE,
        negative_size: int = NEGATIVE_TOKEN_CACHE_SIZE,
    ) -> None:
        self._lookup = lookup
        self._size = size
        self._negative_size = negative_size
        self._valid: OrderedDict[str, tuple[TokenScope, float]] = OrderedDict()
        self._refused: OrderedDict[str, float] = OrderedDict()
        # token hash -> (its look-up in flight, ``_forgotten`` when it started)
        self._inflight: dict[str, tuple[asyncio.Future[Any], int]] = {}
        # bumped by every ``forget`` and ``forget_scope``: a look-up in flight across one may
        # have read the token before it was revoked (or its scope archived), so its answer
        # is not cached, and is looked up again
        self._forgotten = 0

    def __len__(self) -> int:
        return len(self._valid) + len(self._refused)

    async def resolve(self, token_hash: str, raw: str) -> TokenScope | None:
        now = time.monotonic()
        hit = self._valid.get(token_hash)
        if hit is not None:
            if hit[1] > now:
                self._valid.move_to_end(token_hash)
                return hit[0]
            del self._valid[token_hash]
        refused_until = self._refused.get(token_hash)
        if refused_until is not None:
            if refused_until > now:
                return None
            del self._refused[token_hash]
        # One lookup per token however many ask at once: a fleet sharing a token all miss
        # together when its entry expires, and 1,000 identical queries would queue on the
        # thread pool in front of every waiting runtime's answer.
        while True:
            inflight = self._inflight.get(token_hash)
            if inflight is None or inflight[1] != self._forgotten:
                pending = asyncio.ensure_future(sync_to_async(_db_call)(self._lookup, raw))
                inflight = (pending, self._forgotten)
                self._inflight[token_hash] = inflight
                pending.add_done_callback(functools.partial(self._landed, token_hash, inflight))
            found = await asyncio.shield(inflight[0])
            if inflight[1] == self._forgotten:
                break
        now = time.monotonic()
        if found is None:
            self._remember(
                self._refused, token_hash, now + NEGATIVE_TOKEN_TTL_S, self._negative_size
            )
            return None
        scope, expires_in = found
        ttl = TOKEN_TTL_S if expires_in is None else min(TOKEN_TTL_S, expires_in)
        self._remember(self._valid, token_hash, (scope, now + ttl), self._size)
        return scope

    def _landed(self, token_hash: str, inflight: tuple[asyncio.Future[Any], int], _: Any) -> None:
        if self._inflight.get(token_hash) is inflight:
            del self._inflight[token_hash]

    @staticmethod
    def _remember(pool: OrderedDict[str, Any], key: str, value: Any, size: int) -> None:
        pool[key] = value
        pool.move_to_end(key)
        while len(pool) > size:
            pool.popitem(last=False)

    @property
    def entry_of(self) -> Callable[[str], tuple[TokenScope, float] | None]:
        """token hash -> (scope, expiry on ``time.monotonic``'s clock) or None: the cached
        entry, expired or not (the caller checks), without a lookup; the dict's own bound
        method, for the answer memo's hot path to keep (the dict is never replaced)."""
        return self._valid.get

    def holding(self) -> Callable[[str], bool]:
        """A test, as of now, of whether a token hash has a cached, unexpired entry (the
        clock read once, for a caller testing thousands)."""
        now, valid = time.monotonic(), self._valid

        def held(token_hash: str) -> bool:
            entry = valid.get(token_hash)
            return entry is not None and entry[1] > now

        return held

    def forget(self, token_hash: str) -> None:
        self._forgotten += 1
        self._valid.pop(token_hash, None)

    def forget_refused(self) -> None:
        """Drop every refused token: a scope was restored, and the refusals cannot tell
        whose they were (they hold no scope). Costs one look-up per refused token."""
        self._forgotten += 1
        self._refused.clear()

    def forget_scope(self, *, kind: str, object_id: int) -> None:
        """Drop every cached token of an archived tenant, environment or agent."""
        attribute = {"tenant": "tenant_id", "environment": "environment_id", "agent": "agent_id"}[
            kind
        ]
        self._forgotten += 1
        for token_hash, (scope, _) in list(self._valid.items()):
            if getattr(scope, attribute) == object_id:
                del self._valid[token_hash]
