"""A small fake control plane for the client tests: canned, signed snapshots over real HTTP.

It speaks the parts of docs/runtime-api.md the runtime uses: ``/keys``, ``/config`` with ETag,
``If-None-Match`` and ``?wait=N`` long-polls, ``/heartbeat`` and ``/records``, and the
reservations of docs/budgets.md (``/budgets/reserve``, ``/budgets/settle``) over the strict
budgets a test puts in ``strict_budgets``. Everything a test
waits for is signalled through one condition variable, so tests wait on events, not sleeps."""

from __future__ import annotations

import base64
import contextlib
import json
import re
import socket
import threading
from collections.abc import Callable
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from dataplane.canonical import RFC8785, canonical_json, digest

TOKEN = "test-runtime-token"
RESERVATION_ID = re.compile(r"[A-Za-z0-9.:@/_-]{1,128}")
METRICS = ("cost_usd", "tokens", "requests", "tool_calls")
WAIT = 10.0  # upper bound for every wait in a test; reached only when something is broken


def public_b64(key: Ed25519PrivateKey) -> str:
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode()


def sign_envelope(content: dict[str, Any], key: Ed25519PrivateKey, kid: str) -> dict[str, Any]:
    """Sign as the control plane does: the content marked with its canonical form (RFC 8785),
    unless a test set the mark itself."""
    content.setdefault("canonical", RFC8785)
    signature = base64.b64encode(key.sign(canonical_json(content))).decode()
    return {
        "snapshot": content,
        "digest": digest(content),
        "signature": {"alg": "Ed25519", "kid": kid, "value": signature},
    }


class FakeControlPlane:
    def __init__(self, *, port: int = 0) -> None:
        self.key = Ed25519PrivateKey.generate()
        self.kid = "kid-1"
        self.cond = threading.Condition()
        self.body: bytes | None = None
        self.etag = ""
        self.revision = 0
        self.heartbeats: list[dict[str, Any]] = []
        self.records: list[dict[str, Any]] = []
        self.records_status = 404
        self.config_requests = 0
        self.parked_long_polls = 0
        self.wake_long_polls = True
        self.unavailable = False
        # Strict budgets the reservations are checked against, as the control plane holds
        # them: {"id", "name", "scope", "agent", "limits": {metric: limit}, "consumed":
        # {metric: amount}}; reserve and settle calls as received; holds per reservation.
        self.strict_budgets: list[dict[str, Any]] = []
        self.reserve_calls: list[dict[str, Any]] = []
        self.settle_calls: list[dict[str, Any]] = []
        self.reservations: dict[str, dict[str, Any]] = {}
        self._closing = False
        self._connections: set[socket.socket] = set()
        self.server = ThreadingHTTPServer(("127.0.0.1", port), self._handler())
        self.server.daemon_threads = True
        self.server.block_on_close = False
        self._thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- what tests do ----------------------------------------------------------------------

    def publish_envelope(self, envelope: dict[str, Any], revision: int) -> None:
        with self.cond:
            self.body = json.dumps(envelope).encode()
            self.revision = revision
            self.etag = f'"{revision}-{digest(envelope)[:12]}"'
            self.cond.notify_all()

    def publish(self, content: dict[str, Any]) -> dict[str, Any]:
        envelope = sign_envelope(content, self.key, self.kid)
        self.publish_envelope(envelope, content["revision"])
        return envelope

    def set_unavailable(self, unavailable: bool) -> None:
        """Answer 503 (parked long-polls included) until set back."""
        with self.cond:
            self.unavailable = unavailable
            self.cond.notify_all()

    def wait_for(self, predicate: Callable[[], bool], timeout: float = WAIT) -> bool:
        with self.cond:
            return self.cond.wait_for(predicate, timeout)

    def wait_for_heartbeat(self, predicate: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        found: list[dict[str, Any]] = []

        def match() -> bool:
            found[:] = [beat for beat in self.heartbeats if predicate(beat)]
            return bool(found)

        assert self.wait_for(match), f"no matching heartbeat in {self.heartbeats}"
        return found[0]

    def stop(self) -> None:
        """Stop answering: connections refused, open ones cut."""
        with self.cond:
            self._closing = True
            self.cond.notify_all()
            connections = list(self._connections)
        self.server.shutdown()
        self.server.server_close()
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    # -- HTTP -------------------------------------------------------------------------------

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        plane = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, like the real server

            def setup(self) -> None:
                super().setup()
                with plane.cond:
                    plane._connections.add(self.connection)

            def finish(self) -> None:
                with plane.cond:
                    plane._connections.discard(self.connection)
                super().finish()

            def log_message(self, format: str, *args: object) -> None:
                return

            def _send(
                self, status: int, body: bytes = b"", headers: dict[str, str] | None = None
            ) -> None:
                self.send_response(status)
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                if status != 304:
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if body and status != 304:
                    self.wfile.write(body)

            def _json(self, status: int, value: Any) -> None:
                self._send(status, json.dumps(value).encode(), {"Content-Type": "application/json"})

            def _authorised(self) -> bool:
                if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                    self._json(401, {"detail": "A valid runtime token is required."})
                    return False
                return True

            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                if not self._authorised():
                    return
                if parts.path == "/api/runtime/v1/keys":
                    self._json(
                        200,
                        {
                            "keys": [
                                {
                                    "kid": plane.kid,
                                    "alg": "Ed25519",
                                    "public_key": public_b64(plane.key),
                                    "active": True,
                                }
                            ]
                        },
                    )
                elif parts.path == "/api/runtime/v1/config":
                    self._config(float(parse_qs(parts.query).get("wait", ["0"])[0]))
                else:
                    self._json(404, {"detail": "not found"})

            def _config(self, wait: float) -> None:
                if_none_match = self.headers.get("If-None-Match", "")
                with plane.cond:
                    plane.config_requests += 1
                    plane.cond.notify_all()
                    if wait > 0 and if_none_match == plane.etag and not plane.unavailable:
                        plane.parked_long_polls += 1
                        plane.cond.notify_all()
                        plane.cond.wait_for(
                            lambda: (
                                plane._closing
                                or plane.unavailable
                                or (plane.wake_long_polls and plane.etag != if_none_match)
                            ),
                            wait,
                        )
                        plane.parked_long_polls -= 1
                    body, etag, unavailable = plane.body, plane.etag, plane.unavailable
                if unavailable or body is None:
                    self._json(503, {"detail": "unavailable"})
                elif if_none_match == etag:
                    self._send(304, headers={"ETag": etag})
                else:
                    self._send(200, body, {"Content-Type": "application/json", "ETag": etag})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                payload = json.loads(self.rfile.read(length) or b"{}")
                if not self._authorised():
                    return
                path = urlsplit(self.path).path
                if path.startswith("/api/runtime/v1/budgets/") and plane.unavailable:
                    self._json(503, {"detail": "unavailable"})
                elif path == "/api/runtime/v1/budgets/reserve":
                    status, answer = plane._reserve(payload)
                    self._json(status, answer)
                elif path == "/api/runtime/v1/budgets/settle":
                    status, answer = plane._settle(payload)
                    self._json(status, answer)
                elif path == "/api/runtime/v1/heartbeat":
                    with plane.cond:
                        plane.heartbeats.append(payload)
                        revision = plane.revision
                        plane.cond.notify_all()
                    self._json(200, {"revision": revision})
                elif path == "/api/runtime/v1/records":
                    with plane.cond:
                        if plane.records_status < 300:
                            plane.records.extend(payload["records"])
                        plane.cond.notify_all()
                    self._json(plane.records_status, {})
                else:
                    self._json(404, {"detail": "not found"})

        return Handler

    # -- reservations (docs/budgets.md) -----------------------------------------------------

    def _amounts(self, raw: Any, where: str) -> dict[str, Decimal]:
        if not isinstance(raw, dict):
            raise ValueError(f"{where} must be an object")
        amounts = dict.fromkeys(METRICS, Decimal(0))
        for name, value in raw.items():
            if name not in METRICS:
                raise ValueError(f"{where}.{name} is unknown")
            if name == "cost_usd" and not isinstance(value, str):
                raise ValueError(f"{where}.cost_usd must be a decimal string")
            if name != "cost_usd" and (isinstance(value, bool) or not isinstance(value, int)):
                raise ValueError(f"{where}.{name} must be an integer")
            amounts[name] = Decimal(str(value))
            if amounts[name] < 0:
                raise ValueError(f"{where}.{name} must not be negative")
        return amounts

    def _applies(self, budget: dict[str, Any], agent: str) -> bool:
        return budget["scope"] in ("tenant", "tenant_agent") or budget.get("agent") == agent

    def _held(self, budget_id: Any) -> dict[str, Decimal]:
        held = dict.fromkeys(METRICS, Decimal(0))
        for reservation in self.reservations.values():
            if budget_id in reservation["budgets"]:
                for name in METRICS:
                    held[name] += reservation["amounts"][name]
        return held

    def _remaining(self, budget: dict[str, Any]) -> dict[str, Decimal]:
        held = self._held(budget["id"])
        return {
            name: Decimal(str(limit))
            - Decimal(str(budget.get("consumed", {}).get(name, 0)))
            - held[name]
            for name, limit in budget["limits"].items()
            if limit is not None
        }

    def _reserve(self, payload: Any) -> tuple[int, dict[str, Any]]:
        with self.cond:
            self.reserve_calls.append(payload)
            self.cond.notify_all()
            reservation_id = payload.get("reservation_id") if isinstance(payload, dict) else None
            if not isinstance(reservation_id, str) or not RESERVATION_ID.fullmatch(reservation_id):
                return 400, {"detail": "invalid", "errors": {"reservation_id": ["invalid"]}}
            if reservation_id in self.reservations:
                return 200, self.reservations[reservation_id]["answer"]
            try:
                estimate = self._amounts(payload.get("estimate") or {}, "estimate")
            except ValueError as exc:
                return 400, {"detail": "invalid", "errors": {"estimate": [str(exc)]}}
            budgets = [b for b in self.strict_budgets if self._applies(b, str(payload["agent"]))]
            for budget in budgets:
                for name, left in self._remaining(budget).items():
                    if estimate[name] > left:
                        answer = {
                            "reservation_id": reservation_id,
                            "granted": False,
                            "refused_by": {
                                "id": budget["id"],
                                "name": budget.get("name", ""),
                                "metric": name,
                                "remaining": str(left),
                                "resets_at": "2026-12-05T08:00:00+00:00",
                            },
                            "budgets": [],
                        }
                        return 200, answer
            answer = {
                "reservation_id": reservation_id,
                "granted": True,
                "expires_at": "2026-12-05T07:32:00+00:00",
                "budgets": [],
            }
            self.reservations[reservation_id] = {
                "budgets": [b["id"] for b in budgets],
                "amounts": estimate,
                "status": "held",
                "answer": answer,
            }
            answer["budgets"] = [
                {"id": b["id"], "remaining": {k: str(v) for k, v in self._remaining(b).items()}}
                for b in budgets
            ]
            return 200, answer

    def _settle(self, payload: Any) -> tuple[int, dict[str, Any]]:
        with self.cond:
            self.settle_calls.append(payload)
            self.cond.notify_all()
            reservation = self.reservations.get(payload.get("reservation_id"))
            if reservation is None:
                return 404, {"detail": "unknown reservation"}
            reservation_id = payload["reservation_id"]
            if reservation["status"] == "settled":
                return 200, {
                    "reservation_id": reservation_id,
                    "status": "settled",
                    "duplicate": True,
                }
            try:
                reservation["amounts"] = self._amounts(payload.get("actual") or {}, "actual")
            except ValueError as exc:
                return 400, {"detail": "invalid", "errors": {"actual": [str(exc)]}}
            reservation["status"] = "settled"
            return 200, {"reservation_id": reservation_id, "status": "settled", "duplicate": False}
