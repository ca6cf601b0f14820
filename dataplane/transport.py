"""A minimal HTTP/1.1 client for the runtime API, built on ``http.client``.

Why not ``requests``: a runtime must stop cleanly, and a push must be able to cut short a 30 s
long-poll. Both need to interrupt a read that another thread is blocked in, which means shutting
down that request's socket; ``http.client`` exposes it, ``requests`` buries it in urllib3's pool.
One ``Transport`` keeps one persistent connection and is used by one thread at a time; only
``abort()`` is called from other threads.

It asks for gzip (``Accept-Encoding: gzip``) and inflates what arrives gzip-coded, so callers
always see the plain bytes: the control plane serves each revision's documents pre-compressed
(docs/runtime-api.md, "Compression"), and a signature is checked over the plain bytes."""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import ssl
import threading
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit


class TransportError(Exception):
    """The request did not complete: connection refused, reset, timed out, ..."""


class Aborted(TransportError):
    """``abort()`` cut the request short (stop, or a push asking for a fetch now)."""


# The most a gzip-coded answer may inflate to: far above any snapshot, far below what would
# hurt the runtime (a gzip bomb of a broken or hostile server is refused, not inflated).
MAX_INFLATED_BYTES = 64 * 1024 * 1024


def decode_body(payload: bytes, coding: str | None, *, limit: int = MAX_INFLATED_BYTES) -> bytes:
    """The plain bytes of an answer's body sent in ``coding`` (its ``Content-Encoding``):
    ``gzip`` (or ``x-gzip``) is inflated, at most ``limit`` bytes; none or
    ``identity`` is as sent. Raises ``TransportError`` for another coding (this client asks
    only for gzip), a broken or cut short gzip stream, or one inflating past the limit."""
    codings = [c.strip().lower() for c in (coding or "").split(",") if c.strip()]
    codings = [c for c in codings if c != "identity"]
    if not codings:
        return payload
    if codings != ["gzip"] and codings != ["x-gzip"]:
        raise TransportError(f"unsupported Content-Encoding {coding!r} (only gzip is asked for)")
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        plain = inflater.decompress(payload, limit + 1)
    except zlib.error as exc:
        raise TransportError(f"broken gzip body: {exc}") from exc
    if len(plain) > limit or inflater.unconsumed_tail:
        raise TransportError(f"gzip body inflates past {limit} bytes")
    if not inflater.eof:
        raise TransportError("gzip body cut short")
    return plain


@dataclass(frozen=True)
class Response:
    status: int
    headers: Mapping[str, str]  # lower-cased names
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


# Failures that mean "the idle keep-alive connection was closed under us", worth one retry.
_STALE_CONNECTION = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)


class Transport:
    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        user_agent: str,
        connect_timeout: float = 5.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"base URL must be http(s)://host[:port][/prefix], got {base_url!r}")
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port
        self._prefix = parts.path.rstrip("/")
        self._headers = {
            "Authorization": f"Bearer {token}",
            "User-Agent": user_agent,
            "Accept-Encoding": "gzip",
        }
        self._connect_timeout = connect_timeout
        self._ssl_context = ssl_context
        self._conn: http.client.HTTPConnection | None = None
        self._active: http.client.HTTPConnection | None = None
        self._abort = False
        self._lock = threading.Lock()

    def _new_connection(self) -> http.client.HTTPConnection:
        if self._https:
            return http.client.HTTPSConnection(
                self._host,
                self._port,
                timeout=self._connect_timeout,
                context=self._ssl_context or ssl.create_default_context(),
            )
        return http.client.HTTPConnection(self._host, self._port, timeout=self._connect_timeout)

    def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        headers: Mapping[str, str] | None = None,
        timeout: float = 10.0,
    ) -> Response:
        body = None
        all_headers = dict(self._headers)
        if json_body is not None:
            body = json.dumps(json_body, separators=(",", ":")).encode()
            all_headers["Content-Type"] = "application/json"
        all_headers.update(headers or {})
        reused = self._conn is not None and self._conn.sock is not None
        try:
            return self._once(method, self._prefix + path, body, all_headers, timeout)
        except TransportError as exc:
            if (
                reused
                and not isinstance(exc, Aborted)
                and isinstance(exc.__cause__, _STALE_CONNECTION)
            ):
                return self._once(method, self._prefix + path, body, all_headers, timeout)
            raise

    def _once(
        self, method: str, url: str, body: bytes | None, headers: dict[str, str], timeout: float
    ) -> Response:
        conn = self._conn or self._new_connection()
        self._conn = conn
        try:
            if conn.sock is None:
                conn.connect()
            with self._lock:
                if self._abort:
                    self._abort = False
                    raise Aborted("request aborted")
                self._active = conn
            conn.sock.settimeout(timeout)
            conn.request(method, url, body=body, headers=headers)
            response = conn.getresponse()
            payload = response.read()
            if response.will_close:
                self._drop()
            received = {name.lower(): value for name, value in response.getheaders()}
            return Response(
                status=response.status,
                # as received: ``content-encoding`` tells how the body travelled
                headers=received,
                body=decode_body(payload, received.get("content-encoding")),
            )
        except Aborted:
            self._drop()
            raise
        except (OSError, http.client.HTTPException) as exc:
            self._drop()
            with self._lock:
                aborted, self._abort = self._abort, False
            if aborted:
                raise Aborted("request aborted") from exc
            raise TransportError(f"{type(exc).__name__}: {exc}") from exc
        finally:
            with self._lock:
                if self._active is conn:
                    self._active = None
                    # An abort aimed at this request has done its job (or came too late to
                    # matter); it must not spill over onto the next one.
                    self._abort = False

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def abort(self) -> None:
        """Cut short the request in flight, or the next one to start (from any thread)."""
        with self._lock:
            self._abort = True
            active = self._active
            if active is not None and active.sock is not None:
                # OSError: already closed, the request is failing on its own.
                with contextlib.suppress(OSError):
                    active.sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.abort()
        self._drop()
