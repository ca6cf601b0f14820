"""A small fake control plane for the client tests: canned, signed snapshots over real HTTP.

It speaks the parts of docs/runtime-api.md the runtime uses: ``/keys``, ``/config`` with ETag,
``If-None-Match`` and ``?wait=N`` long-polls, ``/heartbeat`` and ``/records``, and the
reservations of docs/budgets.md (``/budgets/reserve``, ``/budgets/settle``) over the strict
budgets a test puts in ``strict_budgets``, and the approvals of issue 14 (``POST /approvals``,
``GET /approvals/{id}?wait=N``, ``POST /approvals/{id}/cancel``) that a test decides with
``decide``. Everything a test
waits for is signalled through one condition variable, so tests wait on events, not sleeps."""

from __future__ import annotations

import base64
import contextlib
import json
import re
import socket
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from dataplane.canonical import RFC8785, canonical_json, digest

TOKEN = "test-runtime-token"
RESERVATION_ID = re.compile(r"[A-Za-z0-9.:@/_-]{1,128}")
APPROVAL_KEY = re.compile(r"[A-Za-z0-9_.:@/-]{1,128}")
APPROVAL_PATH = re.compile(r"/api/runtime/v1/approvals/(\d+)(/cancel)?")
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
        # Approvals: {id: the {approval} JSON}; bodies of POST /approvals as received; every
        # GET's (id, wait); cancel bodies. ``approval_limit``: open requests per session
        # before a 429; ``failing_polls``: how many next GETs answer 503; ``park_cap_s``: the
        # longest a GET parks (tests of chunking set 0); ``approval_ttl_s``: expires_at.
        self.approvals: dict[int, dict[str, Any]] = {}
        self.approval_bodies: list[dict[str, Any]] = []
        self.approval_polls: list[tuple[int, int]] = []
        self.cancel_bodies: list[dict[str, Any]] = []
        self.approval_limit: int | None = None
        self.approval_agents: set[str] | None = None  # the token's scope; None: any agent
        self.failing_polls = 0
        self.park_cap_s = WAIT
        self.approval_ttl_s = 3600.0
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
                elif match := APPROVAL_PATH.fullmatch(parts.path):
                    wait = int(parse_qs(parts.query).get("wait", ["0"])[0])
                    status, answer = plane._approval_get(int(match.group(1)), wait)
                    self._json(status, answer)
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
                elif path == "/api/runtime/v1/approvals":
                    status, answer = plane._approval_create(payload)
                    headers = {"Retry-After": "30"} if status == 429 else {}
                    self._send(
                        status,
                        json.dumps(answer).encode(),
                        {"Content-Type": "application/json", **headers},
                    )
                elif (match := APPROVAL_PATH.fullmatch(path)) and match.group(2):
                    status, answer = plane._approval_cancel(int(match.group(1)), payload)
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

    # -- approvals (issue 14) ---------------------------------------------------------------

    def decide(
        self,
        approval_id: int,
        status: str,
        *,
        decided_by: tuple[str, ...] = ("alice",),
        comment: str = "",
        arguments_sha256: str | None = None,
    ) -> dict[str, Any]:
        """Decide (or expire) a request as the control plane would: wakes parked GETs.
        ``arguments_sha256``: what the answer claims was approved (a lying server)."""
        outcome = {"approved": "allow", "pending": None}.get(status, "deny")
        with self.cond:
            approval = self.approvals[approval_id]
            approval.update(
                status=status,
                outcome=outcome,
                decided_at=None if status == "pending" else _now(),
                decided_by=[] if status in ("pending", "expired") else list(decided_by),
                comment=comment,
                version=approval["version"] + 1,
            )
            if arguments_sha256 is not None:
                approval["arguments_sha256"] = arguments_sha256
            self.cond.notify_all()
            return dict(approval)

    def _approval_create(self, payload: Any) -> tuple[int, dict[str, Any]]:
        with self.cond:
            self.approval_bodies.append(payload)
            self.cond.notify_all()
            key = payload.get("idempotency_key") if isinstance(payload, dict) else None
            if not isinstance(key, str) or not APPROVAL_KEY.fullmatch(key):
                return 400, {"detail": "Invalid input.", "errors": {"idempotency_key": ["bad"]}}
            for approval in self.approvals.values():
                if approval["idempotency_key"] == key:
                    same = (approval["tool"], approval["arguments_sha256"]) == (
                        payload.get("tool"),
                        payload.get("arguments_sha256"),
                    )
                    if not same:
                        return 409, {"detail": f"Idempotency key {key} names another call."}
                    return 200, dict(approval)
            if (
                self.approval_agents is not None
                and payload.get("agent") not in self.approval_agents
            ):
                return 404, {"detail": f"Agent {payload.get('agent')} is not in scope."}
            session = payload.get("session_id")
            open_ = [
                a
                for a in self.approvals.values()
                if a["session_id"] == session and a["status"] == "pending"
            ]
            if self.approval_limit is not None and len(open_) >= self.approval_limit:
                return 429, {
                    "detail": f"Session {session} already has {len(open_)} open approval "
                    f"requests in queue Refunds (its limit): decide or cancel one first."
                }
            approval_id = len(self.approvals) + 1
            now = datetime.now(UTC)
            self.approvals[approval_id] = {
                "id": approval_id,
                "status": "pending",
                "outcome": None,
                "tool": payload["tool"],
                "arguments_sha256": payload["arguments_sha256"],
                "risk": payload.get("risk") or "write",
                "queue": "Refunds",
                "session_id": session,
                "idempotency_key": key,
                "approvals_required": 1,
                "approvals": 0,
                "created_at": now.isoformat(),
                "expires_at": (now + timedelta(seconds=self.approval_ttl_s)).isoformat(),
                "decided_at": None,
                "decided_by": [],
                "comment": "",
                "version": 1,
            }
            return 201, dict(self.approvals[approval_id])

    def _approval_get(self, approval_id: int, wait: int) -> tuple[int, dict[str, Any]]:
        with self.cond:
            self.approval_polls.append((approval_id, wait))
            self.cond.notify_all()
            if self.failing_polls > 0:
                self.failing_polls -= 1
                return 503, {"detail": "unavailable"}
            if approval_id not in self.approvals:
                return 404, {"detail": "Not found."}
            deadline = time.monotonic() + min(wait, self.park_cap_s)
            self.cond.wait_for(
                lambda: (
                    self._closing
                    or self.approvals[approval_id]["status"] != "pending"
                    or time.monotonic() >= deadline
                ),
                max(0.0, deadline - time.monotonic()),
            )
            return 200, dict(self.approvals[approval_id])

    def _approval_cancel(self, approval_id: int, payload: Any) -> tuple[int, dict[str, Any]]:
        with self.cond:
            self.cancel_bodies.append(payload)
            approval = self.approvals.get(approval_id)
            if approval is None:
                return 404, {"detail": "Not found."}
            if approval["status"] == "pending":
                approval.update(
                    status="cancelled",
                    outcome="deny",
                    decided_at=_now(),
                    version=approval["version"] + 1,
                )
            self.cond.notify_all()
            return 200, dict(approval)


def _now() -> str:
    return datetime.now(UTC).isoformat()
