"""An ASGI wrapper that ends a request's handling when its client goes away.

A long-poll (``?wait=``) waits for a change, not for the client: without this, a runtime that
disconnected (stopped, crashed, restarted) kept its task, and its place among the token's held
connections (``FASTPATH_MAX_OPEN_PER_TOKEN``), until its ``wait`` ran out, up to a minute; and
a server asked to stop waited for those tasks (``make run`` took up to half a minute to stop).

Only GET and HEAD requests are watched: they carry no body, so reading ahead for the
``http.disconnect`` message never buffers one (a POST's body is left to the application and
its flow control)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

Message = dict[str, Any]
WATCHED_METHODS = {"GET", "HEAD"}


class EndOnDisconnect:
    """Wraps an ASGI application: for an HTTP GET or HEAD, the messages from the server are
    read as they come and handed to the application in order; when the client's
    ``http.disconnect`` arrives before the application finished, its task is cancelled (and
    awaited), and the request ends quietly: nobody is left to answer. Anything else passes
    through untouched. Exceptions of the application propagate as they are."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Message, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope.get("method") not in WATCHED_METHODS:
            await self.app(scope, receive, send)
            return
        messages: asyncio.Queue[Message] = asyncio.Queue()
        gone = asyncio.Event()

        async def read() -> None:
            while True:
                message = await receive()
                messages.put_nowait(message)
                if message["type"] == "http.disconnect":
                    gone.set()
                    return

        reader = asyncio.create_task(read())
        handling = asyncio.create_task(self.app(scope, messages.get, send))
        left = asyncio.create_task(gone.wait())
        try:
            await asyncio.wait({handling, left}, return_when=asyncio.FIRST_COMPLETED)
            if not handling.done():
                handling.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await handling
                return
            handling.result()  # the application's own exception, if any
        finally:
            reader.cancel()
            left.cancel()
            if not handling.done():  # this request's own task was cancelled (server stop)
                handling.cancel()
