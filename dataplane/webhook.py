"""Verify the control plane's webhook pushes, and a tiny receiver that turns them into fetches.

Two kinds of push, signed alike:

- a revision announcement ``{"tenant", "environment", "revision"}``: only a hint that a new
  revision exists; the runtime still fetches and verifies the signed snapshot;
- an approval decision ``{"type": "approval.decided", "approval": {approval}}``: wakes the
  ``approval_wait`` waiting for that request at once (docs/runtime-api.md, "Approvals").

Verification keeps strangers from making a fleet hammer the control plane or from deciding
its approvals, and from replaying old pushes. See docs/runtime-api.md, "Webhook push"."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from .approvals import Approval, parse_approval

SIGNATURE_HEADER = "X-Controlplane-Signature"
TIMESTAMP_HEADER = "X-Controlplane-Timestamp"
REPLAY_WINDOW_S = 300
APPROVAL_DECIDED = "approval.decided"
MAX_BODY_BYTES = 64 * 1024

log = logging.getLogger("dataplane.webhook")


class PushRejected(Exception):
    """The push is not from the control plane, or not fresh; the message says which."""


@dataclass(frozen=True)
class Push:
    tenant: str
    environment: str
    revision: int


@dataclass(frozen=True)
class ApprovalPush:
    """A verified ``approval.decided`` push: the request's final state."""

    approval: Approval


def push_key(token: str) -> str:
    """The HMAC key: hex sha256 of the runtime token (the control plane stores only this hash)."""
    return hashlib.sha256(token.encode()).hexdigest()


def sign_push(*, key: str, timestamp: int, body: bytes) -> str:
    message = str(timestamp).encode() + b"." + body
    return "v1=" + hmac.new(key.encode(), message, hashlib.sha256).hexdigest()


def _header(headers: Mapping[str, str], name: str) -> str:
    lowered = name.lower()
    for key, value in headers.items():
        if key.lower() == lowered:
            return value
    return ""


class PushVerifier:
    """Checks signature, freshness (±300 s) and that the same push is not accepted twice."""

    def __init__(
        self, token: str, *, window_s: int = REPLAY_WINDOW_S, clock: Callable[[], float] = time.time
    ) -> None:
        self._key = push_key(token)
        self._window_s = window_s
        self._clock = clock
        # Signatures accepted inside the window. A replay inside the window carries the same
        # timestamp and signature; outside it the timestamp check refuses it anyway, so entries
        # older than the window can be forgotten.
        self._seen: dict[str, int] = {}
        self._lock = threading.Lock()

    def verify(self, headers: Mapping[str, str], body: bytes) -> Push:
        """A verified revision announcement; PushRejected for anything else (a bad or stale
        signature, a replay, another kind of push)."""
        message = self.verify_message(headers, body)
        if not isinstance(message, Push):
            raise PushRejected("the body is not a revision announcement")
        return message

    def verify_message(self, headers: Mapping[str, str], body: bytes) -> Push | ApprovalPush:
        """A verified push of either kind (see the module docstring). PushRejected when the
        signature, the timestamp or the body is wrong, or the push was seen before; an
        ``approval.decided`` push must carry an approval in a final state."""
        raw_timestamp = _header(headers, TIMESTAMP_HEADER)
        signature = _header(headers, SIGNATURE_HEADER)
        if not raw_timestamp or not signature:
            raise PushRejected("missing timestamp or signature header")
        try:
            timestamp = int(raw_timestamp)
        except ValueError as exc:
            raise PushRejected("the timestamp is not an integer") from exc
        now = self._clock()
        if abs(now - timestamp) > self._window_s:
            raise PushRejected(f"timestamp is outside the {self._window_s} s replay window")
        expected = sign_push(key=self._key, timestamp=timestamp, body=body)
        if not hmac.compare_digest(expected.encode(), signature.strip().encode()):
            raise PushRejected("bad signature")
        with self._lock:
            self._seen = {sig: ts for sig, ts in self._seen.items() if now - ts <= self._window_s}
            if expected in self._seen:
                raise PushRejected("replayed push")
            self._seen[expected] = timestamp
        try:
            payload = json.loads(body)
        except ValueError as exc:
            raise PushRejected("the body is not JSON") from exc
        if isinstance(payload, dict) and payload.get("type") == APPROVAL_DECIDED:
            try:
                approval = parse_approval(payload.get("approval"))
            except ValueError as exc:
                raise PushRejected(f"the body is not an approval decision: {exc}") from exc
            if not approval.final:
                raise PushRejected(f"approval #{approval.id} is still {approval.status}")
            return ApprovalPush(approval)
        try:
            return Push(
                tenant=str(payload.get("tenant", "")),
                environment=str(payload.get("environment", "")),
                revision=int(payload["revision"]),
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise PushRejected("the body is not a revision announcement") from exc


class PushReceiver:
    """``POST <path>`` → verify → ``on_push(push)`` for a revision announcement,
    ``on_approval(push)`` for an approval decision; 204 when accepted, 401 when not.

    Runs its own small threaded HTTP server; a runtime advertises its URL as ``push_url``.
    Without ``on_approval``, verified approval decisions are accepted and ignored."""

    def __init__(
        self,
        *,
        verifier: PushVerifier,
        on_push: Callable[[Push], None],
        on_approval: Callable[[ApprovalPush], None] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        path: str = "/push",
    ) -> None:
        self.verifier = verifier
        self.on_push = on_push
        self.on_approval = on_approval
        self.path = path
        self._server = ThreadingHTTPServer((host, port), self._handler_class())
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}{self.path}"

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                if self.path != receiver.path:
                    self._answer(404, "not found")
                    return
                length = int(self.headers.get("Content-Length") or 0)
                if length > MAX_BODY_BYTES:
                    self._answer(413, "too large")
                    return
                body = self.rfile.read(length)
                try:
                    push = receiver.verifier.verify_message(dict(self.headers.items()), body)
                except PushRejected as exc:
                    log.warning("runtime.push_rejected", extra={"error": str(exc)})
                    self._answer(401, str(exc))
                    return
                if isinstance(push, Push):
                    receiver.on_push(push)
                elif receiver.on_approval is not None:
                    receiver.on_approval(push)
                self.send_response(204)
                self.end_headers()

            def _answer(self, status: int, message: str) -> None:
                payload = json.dumps({"detail": message}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: object) -> None:
                return  # access logs would drown the runtime's own; rejections are logged above

        return Handler

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="dataplane-push", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
            self._thread = None
        self._server.server_close()
