"""The fast path's in-memory state: revisions per environment, tokens by hash, built bodies."""

from __future__ import annotations

import asyncio
import hashlib
import time
from dataclasses import dataclass

from asgiref.sync import sync_to_async
from django.db import close_old_connections

from .registry import Builder, TokenScope

TOKEN_TTL_S = 10.0  # a safety net; revocations are pushed and drop the entry at once
NEGATIVE_TOKEN_TTL_S = 2.0


def _db_call(fn, *args):  # type: ignore[no-untyped-def]
    close_old_connections()
    try:
        return fn(*args)
    finally:
        close_old_connections()


class RevisionBoard:
    """Latest known revision per environment, and a way to wait for the next one."""

    def __init__(self) -> None:
        self._revisions: dict[int, int] = {}
        self._events: dict[int, asyncio.Event] = {}

    def known(self, environment_id: int) -> int | None:
        return self._revisions.get(environment_id)

    def bump(self, environment_id: int, revision: int) -> None:
        if revision <= self._revisions.get(environment_id, 0):
            return
        self._revisions[environment_id] = revision
        event = self._events.pop(environment_id, None)
        if event is not None:
            event.set()

    async def wait_beyond(self, environment_id: int, revision: int, timeout: float) -> bool:
        """True as soon as the environment's revision exceeds ``revision``; False at timeout."""
        deadline = time.monotonic() + timeout
        while self._revisions.get(environment_id, 0) <= revision:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            event = self._events.setdefault(environment_id, asyncio.Event())
            try:
                await asyncio.wait_for(event.wait(), remaining)
            except TimeoutError:
                return False
        return True


@dataclass(frozen=True)
class Snapshot:
    revision: int
    body: bytes
    etag: str


class SnapshotCache:
    """Built bodies per (route, scope, variant); rebuilt only when the revision moves."""

    def __init__(self) -> None:
        self._entries: dict[tuple[str, int, int | None, str], Snapshot] = {}
        self._locks: dict[tuple[str, int, int | None, str], asyncio.Lock] = {}
        self.builds = 0

    async def get(
        self, kind: str, build: Builder, scope: TokenScope, variant: str, revision: int
    ) -> Snapshot:
        key = (kind, scope.environment_id, scope.agent_id, variant)
        entry = self._entries.get(key)
        if entry is not None and entry.revision >= revision:
            return entry
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:  # one build per key, however many runtimes ask at once
            entry = self._entries.get(key)
            if entry is not None and entry.revision >= revision:
                return entry
            built_revision, body = await sync_to_async(_db_call)(build, scope, variant)
            self.builds += 1
            digest = hashlib.sha256(body).hexdigest()[:20]
            entry = Snapshot(built_revision, body, f'"{built_revision}-{digest}"')
            self._entries[key] = entry
            return entry


class TokenCache:
    def __init__(self, lookup) -> None:  # type: ignore[no-untyped-def]
        # sync, uses the ORM: raw token -> (scope, seconds until it expires or None) | None
        self._lookup = lookup
        self._entries: dict[str, tuple[TokenScope | None, float]] = {}

    async def resolve(self, token_hash: str, raw: str) -> TokenScope | None:
        hit = self._entries.get(token_hash)
        now = time.monotonic()
        if hit is not None and hit[1] > now:
            return hit[0]
        found = await sync_to_async(_db_call)(self._lookup, raw)
        if found is None:
            self._entries[token_hash] = (None, now + NEGATIVE_TOKEN_TTL_S)
            return None
        scope, expires_in = found
        ttl = TOKEN_TTL_S if expires_in is None else min(TOKEN_TTL_S, expires_in)
        self._entries[token_hash] = (scope, now + ttl)
        return scope

    def forget(self, token_hash: str) -> None:
        self._entries.pop(token_hash, None)
