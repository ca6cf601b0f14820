"""What the approval services share: the system actor, the event announcing a change, the
runtime's actor label, and text checks."""

from __future__ import annotations

from typing import Any

from apps.core.authz import SystemActor
from apps.core.events import APPROVAL_CHANGED, publish_after_commit

from ..models import ApprovalRequest

SYSTEM = SystemActor("system:approvals")
REDACTED = "[redacted]"


def runtime_actor(token_label: str) -> SystemActor:
    """The actor recorded for what a runtime did (opened, cancelled a request)."""
    return SystemActor(f"runtime token {token_label}" if token_label else "runtime")


def iso(value: Any) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


def approval_json(request: ApprovalRequest) -> dict[str, Any]:
    """The ``{approval}`` document runtimes receive (docs/approvals.md): every answer of the
    runtime API, the webhook, and the event payload."""
    return {
        "id": request.pk,
        "status": request.status,
        "outcome": request.outcome,
        "tool": request.tool,
        "arguments_sha256": request.arguments_sha256,
        "risk": request.risk,
        "queue": request.queue.name,
        "session_id": request.session_id,
        "idempotency_key": request.idempotency_key,
        "approvals_required": request.approvals_required,
        "approvals": request.approvals,
        "created_at": iso(request.created_at),
        "expires_at": iso(request.expires_at),
        "decided_at": iso(request.decided_at),
        "decided_by": [label for label in request.decided_by_label.split(",") if label],
        "comment": request.comment,
        "version": request.version,
    }


def announce(request: ApprovalRequest) -> None:
    """Tell every process, once the caller's transaction commits, that ``request`` changed:
    the fast path wakes the runtimes waiting on it; ``runtimes`` pushes a final decision to the
    runtime's webhook. Must run inside the transaction of the change."""
    publish_after_commit(
        APPROVAL_CHANGED,
        str(request.pk),
        {
            "revision": request.version,
            "tenant_id": request.tenant_id,
            "environment_id": request.environment_id,
            "runtime_id": request.runtime_id,
            "token_id": request.token_id,
            "status": request.status,
            "approval": approval_json(request),
        },
    )


def control_character_problem(text: str, *, lines: bool = True) -> str | None:
    """A message when ``text`` holds a character that cannot be stored (NUL; a lone surrogate,
    which a JSON ``\\ud800`` escape carries but no UTF-8 text, so no PostgreSQL column,
    holds) or hides what a reader sees (other C0 controls, DEL); tabs and new lines are fine
    when ``lines``."""
    allowed = "\t\n\r" if lines else ""
    if any((ord(ch) < 32 and ch not in allowed) or ch == "\x7f" for ch in text):
        return "No control characters" + (" (tabs and new lines are fine)." if lines else ".")
    if any("\ud800" <= ch <= "\udfff" for ch in text):
        return "No lone surrogates (U+D800 to U+DFFF): they are not Unicode text."
    return None
