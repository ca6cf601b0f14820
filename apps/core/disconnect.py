"""An ASGI wrapper that ends a fast-path request's handling when its client goes away.

A fast-path long-poll (``?wait=``) waits for a change, not for the client: without this, a
runtime that disconnected (stopped, crashed, restarted) kept its task, and its place among the
token's held connections (``FASTPATH_MAX_OPEN_PER_TOKEN``), until its ``wait`` ran out, up to a
minute; and a server asked to stop waited for those tasks (``make run`` took up to half a
minute to stop). Kept apart from ``apps.core.fastpath.app`` so the fast path's own code stays
as it is; the event stream watches its client itself, the wrapper makes that true of every
route.

Only GET and HEAD requests the fast path answers are watched: they carry no body, so reading
ahead for the ``http.disconnect`` message never buffers one, and Django's requests are left to
Django (which notices a gone client itself and must run its own clean-up)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from .fastpath.registry import registry

Message = dict[str, Any]
WATCHED_METHODS = {"GET", "HEAD"}


class EndOnDisconnect:
    """Wraps the ASGI application (the fast path in front of Django). For a watched request
    the messages from the server are read as they come and handed to the application in
    order; when the client's ``http.disconnect`` arrives before the response was sent whole,
    the application's task is cancelled (and awaited) and the request ends quietly: nobody is
    left to answer. After a complete response the application finishes undisturbed.
    Exceptions of the application propagate as they are."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Message, receive: Any, send: Any) -> None:
        if (
            scope["type"] != "http"
            or scope.get("method") not in WATCHED_METHODS
            or registry.match(scope.get("path", "")) is None
        ):
            await self.app(scope, receive, send)
            return
        messages: asyncio.Queue[Message] = asyncio.Queue()
        gone = asyncio.Event()
        answered = False

        async def read() -> None:
            while True:
                message = await receive()
                messages.put_nowait(message)
                if message["type"] == "http.disconnect":
                    gone.set()
                    return

        async def tracked(message: Message) -> None:
            nonlocal answered
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body"):
                answered = True

        reader = asyncio.create_task(read())
        handling = asyncio.create_task(self.app(scope, messages.get, tracked))
        left = asyncio.create_task(gone.wait())
        try:
            await asyncio.wait({handling, left}, return_when=asyncio.FIRST_COMPLETED)
            if not handling.done() and not answered:
                handling.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await handling
                return
            await handling  # the application's own exception, if any
        finally:
            reader.cancel()
            left.cancel()
            if not handling.done():  # this request's own task was cancelled (server stop)
                handling.cancel()
