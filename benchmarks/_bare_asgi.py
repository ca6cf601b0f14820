"""The ceiling: the least an ASGI handler can do to serve a runtime-facing document, run under
the same uvicorn settings as the product so the benchmark can say how close to it we are.

It answers every GET with the bytes our server served (read once at start-up from
``BARE_BODY_FILE``), after exactly two checks: the ``Authorization`` header against
``BARE_TOKEN`` (constant-time) and ``If-None-Match`` against ``BARE_ETAG`` (a 304 when equal).
No routing, no token cache, no revision lookup, no logging: whatever the product does beyond
this is what the ratio ``…_vs_bare_asgi`` prices.

The response headers: with ``BARE_HEADERS_FILE`` (JSON: ``{"ok": [[name, value], …],
"not_modified": […]}``, what our server sent for the same two requests, uvicorn's own
``date`` and ``server`` left out) the very same ones, so the ceiling answers byte for byte
what we answer (uvicorn checks and writes every header line, ~1 µs each); without it the
fewest a correct answer needs (content type and length, ETag; a 304 the ETag alone).

    BARE_BODY_FILE=body.json BARE_ETAG='"…"' BARE_TOKEN=cprt_… [BARE_HEADERS_FILE=h.json] \\
        uvicorn benchmarks._bare_asgi:app --loop uvloop --http httptools
"""

from __future__ import annotations

import hmac
import json
import os
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]

BODY = Path(os.environ.get("BARE_BODY_FILE", os.devnull)).read_bytes()
ETAG = os.environ.get("BARE_ETAG", "").encode()
TOKEN = os.environ.get("BARE_TOKEN", "").encode()
CONTENT_TYPE = os.environ.get("BARE_CONTENT_TYPE", "application/json").encode()


def _headers(kind: str, fewest: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    path = os.environ.get("BARE_HEADERS_FILE")
    if not path:
        return fewest
    lines = json.loads(Path(path).read_text())[kind]
    return [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in lines]


_OK_HEADERS = _headers(
    "ok",
    [
        (b"content-type", CONTENT_TYPE),
        (b"content-length", str(len(BODY)).encode()),
        (b"etag", ETAG),
    ],
)
_NOT_MODIFIED_HEADERS = _headers("not_modified", [(b"etag", ETAG)])
_UNAUTHORISED_HEADERS = [(b"content-length", b"0")]


async def app(
    scope: Scope,
    receive: Callable[[], Awaitable[Message]],
    send: Callable[[Message], Awaitable[None]],
) -> None:
    """ASGI 3 entry point: 200 with the body, 304 on a matching ETag, 401 on a wrong token."""
    if scope["type"] != "http":  # lifespan: nothing to set up
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
            await receive()
            await send({"type": "lifespan.shutdown.complete"})
        return
    token = inm = b""
    for name, value in scope["headers"]:
        if name == b"authorization":
            token = value
        elif name == b"if-none-match":
            inm = value
    if not hmac.compare_digest(token, TOKEN):
        await send({"type": "http.response.start", "status": 401, "headers": _UNAUTHORISED_HEADERS})
        await send({"type": "http.response.body", "body": b""})
    elif inm and inm == ETAG:
        await send({"type": "http.response.start", "status": 304, "headers": _NOT_MODIFIED_HEADERS})
        await send({"type": "http.response.body", "body": b""})
    else:
        await send({"type": "http.response.start", "status": 200, "headers": _OK_HEADERS})
        await send({"type": "http.response.body", "body": BODY})
