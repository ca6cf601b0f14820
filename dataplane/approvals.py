"""Approval requests, the runtime's side of the wire (docs/runtime-api.md, "Approvals").

What ``Runtime.approval_request`` sends and what every approvals answer is parsed into. No
network here: ``client.Runtime`` sends, ``gate.ApprovalGate`` decides with what comes back.

Argument-hash pinning starts here: ``arguments_sha256`` is the sha256 of the RFC 8785
canonical JSON of the *full* arguments (sensitive ones included), so the hash a human
approved names exactly one set of arguments, whatever the key order or number spelling they
are written in, while the arguments the approver sees have the tool contract's
``sensitive_args`` replaced by ``"[redacted]"``."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .canonical import RFC8785, canonical_json

APPROVALS_PATH = "/api/runtime/v1/approvals"
REDACTED = "[redacted]"
RISKS = ("read", "write", "critical")  # lowest first
STATUSES = ("pending", "approved", "rejected", "expired", "cancelled")
FINAL_STATUSES = frozenset(STATUSES[1:])
# The outcome the runtime applies for each status: only an approval allows. Expired is not
# rejected, but it denies all the same (the safe default).
OUTCOMES: Mapping[str, str | None] = {
    "pending": None,
    "approved": "allow",
    "rejected": "deny",
    "expired": "deny",
    "cancelled": "deny",
}
EXCERPT_ROLES = ("user", "assistant", "tool", "system")

# The contract's bounds (docs/runtime-api.md): what the control plane refuses with a 400.
MAX_BODY_BYTES = 64 * 1024
MAX_ARGUMENTS_BYTES = 16 * 1024  # the arguments sent (redacted), as canonical JSON
MAX_REASON = 2000
MAX_EXCERPT_ITEMS = 20
MAX_EXCERPT_CONTENT = 2000
MAX_RULE = 200
MAX_REQUESTED_BY = 254
MAX_CANCEL_REASON = 500
_KEY = re.compile(r"[A-Za-z0-9_.:@/-]{1,128}")
_SHA256 = re.compile(r"[0-9a-f]{64}")
# C0 controls but tab and new lines, and DEL: the control plane refuses them in text (they
# cannot be stored, or hide what the approver reads).
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


class ApprovalError(Exception):
    """An approval could not be requested, read or cancelled: the control plane refused the
    call (``status`` 400, 401, 404, ...; ``detail`` and field ``errors`` as it answered) or
    answered something that is not an approval (``status`` the HTTP status, 0 when the
    call itself failed)."""

    def __init__(
        self,
        message: str,
        *,
        status: int = 0,
        detail: str = "",
        errors: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.detail = detail or message
        self.errors: Mapping[str, Any] = dict(errors or {})


class ApprovalRefused(ApprovalError):
    """429: the control plane will not open another request now, typically because the
    session already has its queue's ``max_open_per_session`` open requests. ``detail`` is the
    control plane's sentence (it names the session, the queue and the limit);
    ``retry_after_s`` its ``Retry-After`` header in seconds (None when absent)."""

    def __init__(self, detail: str, *, retry_after_s: float | None = None) -> None:
        super().__init__(f"approval request refused: {detail}", status=429, detail=detail)
        self.retry_after_s = retry_after_s


class ApprovalConflict(ApprovalError):
    """409: the idempotency key is already used by a request for another tool or other
    arguments (a new call needs a new key, or the default derived one)."""


class ApprovalUnavailable(ApprovalError):
    """The control plane could not be reached (network, 5xx) within the call's time, or the
    runtime is stopping. Nothing is known about the request's state."""


@dataclass(frozen=True)
class Approval:
    """One approval request as the control plane last described it (the ``{approval}``
    JSON). ``outcome`` is what the runtime applies: ``"allow"`` only for ``approved``,
    ``"deny"`` for ``rejected``, ``expired`` and ``cancelled``, None while ``pending``.
    Times are aware datetimes (None only for ``decided_at`` while undecided); ``version``
    bumps on every change of the request (a decision, an escalation)."""

    id: int
    status: str
    outcome: str | None
    tool: str
    arguments_sha256: str
    risk: str
    expires_at: datetime
    created_at: datetime | None = None
    decided_at: datetime | None = None
    queue: str = ""
    session_id: str = ""
    idempotency_key: str = ""
    approvals_required: int = 1
    approvals: int = 0
    decided_by: tuple[str, ...] = ()
    comment: str = ""
    version: int = 0

    @property
    def pending(self) -> bool:
        return self.status == "pending"

    @property
    def final(self) -> bool:
        """Decided, expired or cancelled: the state never changes again."""
        return self.status in FINAL_STATUSES

    @property
    def allowed(self) -> bool:
        """May the call whose hash is ``arguments_sha256`` run? Only when approved."""
        return self.status == "approved" and self.outcome == "allow"

    def describe(self) -> str:
        """A sentence for logs and refusals: "approval #17 (issue_refund) rejected by alice:
        not owed"."""
        who = f" by {', '.join(self.decided_by)}" if self.decided_by else ""
        why = f": {self.comment}" if self.comment else ""
        return f"approval #{self.id} ({self.tool}) {self.status}{who}{why}"


def arguments_sha256(arguments: Mapping[str, Any]) -> str:
    """The lowercase hex sha256 of the RFC 8785 canonical JSON of ``arguments`` (all of them,
    sensitive ones included): what an approval pins. Equal content gives the same hash in
    any key order or number spelling (``1.0`` and ``1`` are one number). Raises
    ``CanonicalError`` (a ValueError) for values JSON cannot carry: an integer beyond
    ±(2**53-1), NaN, a non-string key, an object that is not JSON."""
    if not isinstance(arguments, Mapping):
        raise TypeError("arguments must be a mapping (a JSON object)")
    return hashlib.sha256(canonical_json(dict(arguments), RFC8785)).hexdigest()


def sensitive_args_of(tool_spec: Mapping[str, Any] | None) -> tuple[str, ...]:
    """The ``sensitive_args`` a tool contract (one entry of a bundle's ``tools``) declares;
    () when it declares none or is None."""
    if not isinstance(tool_spec, Mapping):
        return ()
    names = tool_spec.get("sensitive_args")
    if not isinstance(names, list):
        return ()
    return tuple(name for name in names if isinstance(name, str) and name)


def redact(arguments: Mapping[str, Any], sensitive: Iterable[str]) -> dict[str, Any]:
    """A copy of ``arguments`` with each argument named in ``sensitive`` that is present
    replaced by ``"[redacted]"``: a top-level name (the bundle's ``sensitive_args`` are
    argument names of the tool's ``parameters``) or a dotted path into nested objects
    (``card.number``), as the control plane redacts. What is absent stays absent; the rest,
    and the caller's mapping, are unchanged."""
    result: dict[str, Any] = dict(arguments)
    for path in sensitive:
        parts = path.split(".")
        holder: Any = result
        for part in parts[:-1]:
            if not isinstance(holder, dict) or not isinstance(holder.get(part), Mapping):
                holder = None
                break
            holder[part] = dict(holder[part])  # copied on the way down: the caller's stays
            holder = holder[part]
        if isinstance(holder, dict) and parts[-1] in holder:
            holder[parts[-1]] = REDACTED
    return result


def check_key(value: Any, field: str) -> str:
    """``value`` if it is 1 to 128 of letters, digits and ``_ . : @ / -`` (an idempotency key
    or a session id); ValueError naming ``field`` otherwise."""
    if not isinstance(value, str) or not _KEY.fullmatch(value):
        raise ValueError(f"{field} {value!r} must be 1-128 of letters, digits and _ . : @ / -")
    return value


def derive_idempotency_key(
    *, session_id: str, tool: str, arguments_sha256: str, discriminator: str = ""
) -> str:
    """The idempotency key of a call when the caller gives none: ``"dp:"`` and the sha256 of
    the session, the tool, the arguments' hash and ``discriminator``. Deterministic, so a
    retry after a lost answer (or a restarted runtime serving the same call) reopens the
    same request rather than a second one. The same call twice with one discriminator is the
    same request (an approval then covers both): ``build_request`` puts the request id in it,
    and a caller adds the call's index when one request may make the same call twice."""
    material = "\x00".join((session_id, tool, arguments_sha256, discriminator))
    return "dp:" + hashlib.sha256(material.encode()).hexdigest()


def _bounded(text: Any, limit: int, field: str) -> str:
    if not isinstance(text, str):
        raise ValueError(f"{field} must be a string")
    # Text the model wrote is cleaned and cut rather than refused: a stray control character
    # or a long reason must not keep a human from seeing the request.
    text = _CONTROL.sub("\ufffd", text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _excerpt(excerpt: Iterable[Mapping[str, Any]]) -> list[dict[str, str]]:
    items: list[dict[str, str]] = []
    for index, item in enumerate(excerpt):
        if not isinstance(item, Mapping):
            raise ValueError(f"excerpt[{index}] must be an object with role and content")
        role = item.get("role")
        if role not in EXCERPT_ROLES:
            raise ValueError(f"excerpt[{index}].role must be one of {', '.join(EXCERPT_ROLES)}")
        content = _bounded(item.get("content", ""), MAX_EXCERPT_CONTENT, "excerpt content")
        items.append({"role": str(role), "content": content})
    # The most recent turns are the ones that explain the call.
    return items[-MAX_EXCERPT_ITEMS:]


def build_request(
    *,
    agent: str,
    tool: str,
    arguments: Mapping[str, Any],
    session_id: str,
    sensitive: Iterable[str] = (),
    idempotency_key: str | None = None,
    discriminator: str = "",
    risk: str | None = None,
    reason: str = "",
    excerpt: Iterable[Mapping[str, Any]] = (),
    bundle_version: int | None = None,
    request_id: str | None = None,
    rule: str = "",
    requested_by: str | None = None,
    runtime_id: str | None = None,
) -> dict[str, Any]:
    """The JSON body of ``POST /api/runtime/v1/approvals`` for one tool call.

    ``arguments`` are the call's full arguments: their hash (``arguments_sha256``) is taken
    over all of them, and the ``arguments`` sent have each name in ``sensitive`` (the tool
    contract's ``sensitive_args``) replaced by ``"[redacted]"``. ``idempotency_key``
    defaults to ``derive_idempotency_key(...)`` with ``request_id`` and ``discriminator`` (one
    approval covers one request's call, never the same call of a later request of the
    session). ``runtime_id``: the
    runtime's instance id (its heartbeats'), so the decision is pushed to its ``push_url``.
    ``reason`` (cut at 2000 characters), ``rule`` (200) and each excerpt content (2000) are
    cut rather than refused, control characters (but tabs and new lines) replaced by U+FFFD;
    the excerpt keeps its last 20 turns, and drops the oldest ones further if the body would
    exceed 64 KiB. ValueError for what the control plane would refuse: a bad session id,
    key, request id or runtime id, an unknown risk or excerpt role, a ``requested_by`` over
    254 characters or with control characters, a ``bundle_version`` below 1, arguments that
    are not JSON (CanonicalError) or over 16 KiB as canonical JSON once redacted, or a body
    still over 64 KiB."""
    check_key(session_id, "session_id")
    if not isinstance(agent, str) or not agent:
        raise ValueError("agent must be a non-empty slug")
    if not isinstance(tool, str) or not tool:
        raise ValueError("tool must be a non-empty name")
    digest = arguments_sha256(arguments)
    # The request id is part of the call's identity: a conversation that asks for the same
    # refund again in a later request must not find (and execute on) the first approval.
    key = idempotency_key or derive_idempotency_key(
        session_id=session_id,
        tool=tool,
        arguments_sha256=digest,
        discriminator=f"{request_id}\x00{discriminator}" if request_id else discriminator,
    )
    check_key(key, "idempotency_key")
    shown = redact(arguments, sensitive)
    size = len(canonical_json(shown, RFC8785))
    if size > MAX_ARGUMENTS_BYTES:
        raise ValueError(
            f"the arguments are {size} bytes as canonical JSON, over the 16 KiB "
            f"({MAX_ARGUMENTS_BYTES} bytes) an approval request may carry"
        )
    body: dict[str, Any] = {
        "idempotency_key": key,
        "agent": agent,
        "tool": tool,
        "arguments": shown,
        "arguments_sha256": digest,
        "session_id": session_id,
    }
    if risk is not None:
        if risk not in RISKS:
            raise ValueError(f"risk must be one of {', '.join(RISKS)}")
        body["risk"] = risk
    if reason:
        body["reason"] = _bounded(reason, MAX_REASON, "reason")
    if bundle_version is not None:
        if isinstance(bundle_version, bool) or not isinstance(bundle_version, int):
            raise ValueError("bundle_version must be an integer")
        if bundle_version < 1:
            raise ValueError("bundle_version must be at least 1")
        body["bundle_version"] = bundle_version
    if request_id:
        body["request_id"] = check_key(request_id, "request_id")
    if runtime_id:
        body["runtime_id"] = check_key(runtime_id, "runtime_id")
    if rule:
        body["rule"] = _bounded(rule, MAX_RULE, "rule")
    if requested_by:
        if len(requested_by) > MAX_REQUESTED_BY:
            raise ValueError(f"requested_by must be at most {MAX_REQUESTED_BY} characters")
        if _CONTROL.search(requested_by) or "\n" in requested_by or "\r" in requested_by:
            raise ValueError("requested_by must not hold control characters")
        body["requested_by"] = requested_by
    turns = _excerpt(excerpt)
    while True:
        if turns:
            body["excerpt"] = turns
        size = len(json.dumps(body, separators=(",", ":")).encode())
        if size <= MAX_BODY_BYTES:
            return body
        if not turns:
            raise ValueError(
                f"the approval request is {size} bytes, over the 64 KiB ({MAX_BODY_BYTES} "
                "bytes) limit: its arguments are too large"
            )
        turns = turns[1:]
        body.pop("excerpt", None)


def _instant(value: Any, field: str, *, required: bool) -> datetime | None:
    if value is None and not required:
        return None
    if not isinstance(value, str):
        raise ValueError(f"the approval's {field} is not an ISO 8601 instant")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise ValueError(f"the approval's {field} {value!r} is not an ISO 8601 instant") from exc
    if parsed.tzinfo is None:
        raise ValueError(f"the approval's {field} {value!r} has no time zone")
    return parsed


def _integer(value: Any, field: str, default: int | None = None) -> int:
    if value is None and default is not None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"the approval's {field} is not an integer")
    return value


def parse_approval(document: Any) -> Approval:
    """An ``{approval}`` JSON object as an ``Approval``. Strict where a wrong value could
    let a call run: ``id`` an integer, ``status`` a known one, ``outcome`` the one its status
    implies (an "approved" that does not say "allow" is refused), ``arguments_sha256`` 64
    lowercase hex, ``expires_at`` an aware instant. Lenient with the descriptive fields
    (absent ones take their defaults). ValueError naming the field otherwise."""
    if not isinstance(document, Mapping):
        raise ValueError("the approval is not a JSON object")
    approval_id = _integer(document.get("id"), "id")
    status = document.get("status")
    if not isinstance(status, str) or status not in OUTCOMES:
        raise ValueError(f"the approval's status {status!r} is not one of {', '.join(STATUSES)}")
    outcome = document.get("outcome")
    if outcome != OUTCOMES[status]:
        raise ValueError(
            f"the approval's outcome {outcome!r} does not match its status {status!r} "
            f"(expected {OUTCOMES[status]!r})"
        )
    digest = document.get("arguments_sha256")
    if not isinstance(digest, str) or not _SHA256.fullmatch(digest):
        raise ValueError("the approval's arguments_sha256 is not 64 lowercase hex digits")
    tool = document.get("tool")
    if not isinstance(tool, str) or not tool:
        raise ValueError("the approval names no tool")
    decided_by = document.get("decided_by") or []
    if not isinstance(decided_by, list) or not all(isinstance(who, str) for who in decided_by):
        raise ValueError("the approval's decided_by is not a list of usernames")
    risk = document.get("risk") or "critical"
    expires_at = _instant(document.get("expires_at"), "expires_at", required=True)
    assert expires_at is not None
    return Approval(
        id=approval_id,
        status=str(status),
        outcome=outcome,
        tool=tool,
        arguments_sha256=digest,
        risk=str(risk),
        expires_at=expires_at,
        created_at=_instant(document.get("created_at"), "created_at", required=False),
        decided_at=_instant(document.get("decided_at"), "decided_at", required=False),
        queue=str(document.get("queue") or ""),
        session_id=str(document.get("session_id") or ""),
        idempotency_key=str(document.get("idempotency_key") or ""),
        approvals_required=_integer(document.get("approvals_required"), "approvals_required", 1),
        approvals=_integer(document.get("approvals"), "approvals", 0),
        decided_by=tuple(decided_by),
        comment=str(document.get("comment") or ""),
        version=_integer(document.get("version"), "version", 0),
    )


def approval_json(approval: Approval) -> dict[str, Any]:
    """``approval`` back in its ``{approval}`` JSON shape (fakes, logs, pushes in tests)."""

    def instant(value: datetime | None) -> str | None:
        return value.isoformat() if value is not None else None

    return {
        "id": approval.id,
        "status": approval.status,
        "outcome": approval.outcome,
        "tool": approval.tool,
        "arguments_sha256": approval.arguments_sha256,
        "risk": approval.risk,
        "queue": approval.queue,
        "session_id": approval.session_id,
        "idempotency_key": approval.idempotency_key,
        "approvals_required": approval.approvals_required,
        "approvals": approval.approvals,
        "created_at": instant(approval.created_at),
        "expires_at": instant(approval.expires_at),
        "decided_at": instant(approval.decided_at),
        "decided_by": list(approval.decided_by),
        "comment": approval.comment,
        "version": approval.version,
    }
