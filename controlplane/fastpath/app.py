"""The ASGI application: registered runtime routes here, everything else to Django."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
from typing import Any
from urllib.parse import parse_qsl

from asgiref.sync import sync_to_async
from django.conf import settings

from . import notify
from .registry import Route, StreamRoute, registry
from .state import RevisionBoard, SnapshotCache, TokenCache, _db_call

log = logging.getLogger(__name__)

POLL_INTERVAL_S = 0.5  # catch-up poll of revisions when there is no Redis
POLL_INTERVAL_WITH_REDIS_S = 5.0  # safety net for a missed pub/sub message


def _poll_interval() -> float:
    configured = getattr(settings, "FASTPATH_POLL_INTERVAL_S", None)
    if configured:
        return float(configured)
    return POLL_INTERVAL_WITH_REDIS_S if settings.REDIS_URL else POLL_INTERVAL_S


Scope = dict[str, Any]


def _lookup_token(raw: str):  # type: ignore[no-untyped-def]
    # Local import: the fast path module is imported by asgi.py before Django is set up.
    from django.utils import timezone

    from apps.accounts.runtime_tokens import runtime_token_authenticate

    from .registry import TokenScope

    token = runtime_token_authenticate(raw)
    if token is None:
        return None
    expires_in = (token.expires_at - timezone.now()).total_seconds() if token.expires_at else None
    return TokenScope(token.pk, token.tenant_id, token.environment_id, token.agent_id), expires_in


def _all_revisions() -> dict[int, int]:
    from apps.tenancy.models import Environment

    return dict(Environment.objects.values_list("id", "revision"))


def _one_revision(environment_id: int) -> int:
    from apps.tenancy.models import Environment

    return Environment.objects.values_list("revision", flat=True).get(pk=environment_id)


def _token_from_headers(headers: dict[str, str]) -> str:
    value = headers.get("authorization", "").strip()
    if value.lower().startswith("bearer "):
        return value[7:].strip()
    return value


def _json(status: int, body: dict[str, Any]) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    return status, [(b"content-type", b"application/json")], json.dumps(body).encode()


class FastPath:
    def __init__(self, django_app: Any) -> None:
        self.django_app = django_app
        self.board = RevisionBoard()
        self.snapshots = SnapshotCache()
        self.tokens = TokenCache(_lookup_token)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: list[asyncio.Task[None]] = []

    # ------------------------------------------------------------------ background work

    def _on_message(self, message: dict[str, Any]) -> None:
        """Called from any thread (local publish) or the loop (Redis)."""
        loop = self._loop
        if loop is None:
            return
        if message.get("t") == "rev":
            loop.call_soon_threadsafe(self.board.bump, int(message["e"]), int(message["r"]))
        elif message.get("t") == "tok":
            loop.call_soon_threadsafe(self.tokens.forget, str(message["h"]))

    def _ensure_started(self) -> None:
        if self._loop is not None:
            return
        self._loop = asyncio.get_running_loop()
        notify.subscribe_local(self._on_message)
        self._tasks.append(asyncio.create_task(self._poll_revisions()))
        if settings.REDIS_URL:
            self._tasks.append(asyncio.create_task(self._listen_redis()))

    async def _poll_revisions(self) -> None:
        interval = _poll_interval()
        while True:
            try:
                for environment_id, revision in (
                    await sync_to_async(_db_call)(_all_revisions)
                ).items():
                    self.board.bump(environment_id, revision)
            except Exception:
                log.warning("fastpath.poll_failed", exc_info=True)
            await asyncio.sleep(interval)

    async def _listen_redis(self) -> None:
        import redis.asyncio as aioredis  # local: only with Redis configured

        while True:
            try:
                client = aioredis.Redis.from_url(settings.REDIS_URL)
                async with client.pubsub() as pubsub:
                    await pubsub.subscribe(notify.CHANNEL)
                    async for item in pubsub.listen():
                        if item.get("type") == "message":
                            self._on_message(json.loads(item["data"]))
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("fastpath.redis_listen_failed", exc_info=True)
                await asyncio.sleep(1)

    async def _stop(self) -> None:
        notify.unsubscribe_local(self._on_message)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        self._loop = None

    # ------------------------------------------------------------------ ASGI entry

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] == "http":
            path = scope["path"]
            route = registry.routes.get(path)
            if route is not None and scope["method"] in ("GET", "HEAD"):
                self._ensure_started()
                await self._serve(route, scope, send)
                return
            stream = registry.streams.get(path)
            if stream is not None and scope["method"] == "GET":
                self._ensure_started()
                await self._stream(stream, scope, receive, send)
                return
        await self.django_app(scope, receive, send)

    async def _lifespan(self, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self._ensure_started()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self._stop()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _authorise(self, headers: dict[str, str]):  # type: ignore[no-untyped-def]
        raw = _token_from_headers(headers)
        if not raw:
            return None
        return await self.tokens.resolve(hashlib.sha256(raw.encode()).hexdigest(), raw)

    async def _current_revision(self, environment_id: int) -> int:
        known = self.board.known(environment_id)
        if known is None:
            known = await sync_to_async(_db_call)(_one_revision, environment_id)
            self.board.bump(environment_id, known)
        return known

    async def _serve(self, route: Route, scope: Scope, send: Any) -> None:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
        token = await self._authorise(headers)
        if token is None:
            await _send(
                send,
                *_json(
                    401,
                    {"detail": "A valid runtime token is required in the Authorization header."},
                ),
            )
            return
        try:
            wait = float(query.get("wait", "0") or 0)
        except ValueError:
            wait = -1
        if not 0 <= wait <= route.max_wait_s:
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
        revision = await self._current_revision(token.environment_id)
        snapshot = await self.snapshots.get(route.kind, route.build, token, variant, revision)
        if_none_match = headers.get("if-none-match", "")
        # long-poll: only a client that already has this revision waits for the next one
        if (
            if_none_match == snapshot.etag
            and wait > 0
            and await self.board.wait_beyond(token.environment_id, snapshot.revision, wait)
        ):
            revision = await self._current_revision(token.environment_id)
            snapshot = await self.snapshots.get(route.kind, route.build, token, variant, revision)
        common = [
            (b"etag", snapshot.etag.encode()),
            (b"cache-control", b"no-cache"),
            (b"x-revision", str(snapshot.revision).encode()),
        ]
        if if_none_match == snapshot.etag:
            await _send(send, 304, common, b"")
            return
        body = b"" if scope["method"] == "HEAD" else snapshot.body
        await _send(send, 200, [(b"content-type", b"application/json"), *common], body)

    async def _stream(self, route: StreamRoute, scope: Scope, receive: Any, send: Any) -> None:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
        token = await self._authorise(headers)
        if token is None:
            await _send(
                send,
                *_json(
                    401,
                    {"detail": "A valid runtime token is required in the Authorization header."},
                ),
            )
            return
        variant = route.variant(headers, query)
        revision = await self._current_revision(token.environment_id)
        snapshot = await self.snapshots.get(route.kind, route.build, token, variant, revision)
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"text/event-stream"),
                    (b"cache-control", b"no-cache"),
                    (b"x-accel-buffering", b"no"),
                ],
            }
        )
        disconnected = asyncio.Event()

        async def watch_disconnect() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            disconnected.set()

        watcher = asyncio.create_task(watch_disconnect())
        try:
            await _sse(send, route.connected_event, snapshot.revision, snapshot.body.decode())
            while not disconnected.is_set():
                # Wait for the next revision, a heartbeat, or the client leaving, whichever
                # comes first: a gone client must not hold its task until the next heartbeat.
                change = asyncio.create_task(
                    self.board.wait_beyond(
                        token.environment_id, snapshot.revision, route.heartbeat_s
                    )
                )
                gone = asyncio.create_task(disconnected.wait())
                await asyncio.wait({change, gone}, return_when=asyncio.FIRST_COMPLETED)
                gone.cancel()
                if disconnected.is_set():
                    change.cancel()
                    break
                changed = change.result()
                if not changed:
                    await send(
                        {
                            "type": "http.response.body",
                            "body": b": keep-alive\n\n",
                            "more_body": True,
                        }
                    )
                    continue
                still_valid = await self._authorise(headers)
                if still_valid is None:
                    break  # a revoked token's stream ends at the next change
                revision = await self._current_revision(token.environment_id)
                newer = await self.snapshots.get(route.kind, route.build, token, variant, revision)
                data = route.delta(snapshot.body, newer.body)
                snapshot = newer
                if data is not None:
                    await _sse(send, route.updated_event, snapshot.revision, data)
        finally:
            watcher.cancel()
            with contextlib.suppress(Exception):
                await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _send(send: Any, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*headers, (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _sse(send: Any, event: str, revision: int, data: str) -> None:
    payload = f"event: {event}\nid: {revision}\ndata: {data}\n\n".encode()
    await send({"type": "http.response.body", "body": payload, "more_body": True})
