"""The runtime side of approvals (docs/approvals.md), answered on the fast path: open a request
(``POST /api/runtime/v1/approvals``), long-poll its decision (``GET …/approvals/{id}?wait=N``,
woken by the ``approval.changed`` event within the moment it commits), cancel it
(``POST …/approvals/{id}/cancel``). This module only reads bodies and maps the services'
answers and errors to HTTP."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.core.exceptions import ValidationError

from apps.accounts.models import RuntimeToken
from apps.core.events import APPROVAL_CHANGED
from apps.core.fastpath import (
    ActionRoute,
    OperationDoc,
    TokenScope,
    Topic,
    WaitRoute,
    register_action,
    register_topic,
    register_wait,
)
from apps.core.input_guards import JSONShapeError, json_loads

from ..models import ApprovalRequest, Status
from ..services import (
    IdempotencyConflict,
    SessionLimit,
    UnknownAgent,
    approval_cancel,
    approval_for_runtime,
    approval_json,
    approval_open,
    runtime_document,
)

OPEN_PATH = "/api/runtime/v1/approvals"
READ_PATH = "/api/runtime/v1/approvals/{id}"
CANCEL_PATH = "/api/runtime/v1/approvals/{id}/cancel"
Answer = tuple[int, dict[str, Any]]


def _invalid(errors: dict[str, list[str]]) -> Answer:
    return 400, {"detail": "Invalid input.", "errors": errors}


def _object(raw: bytes, *, empty_ok: bool = False) -> dict[str, Any] | Answer:
    """The body as a JSON object, or a 400 answer. Parsed by the rules every API body follows
    (decision 0011, ``json_loads``): nesting bounded, no NaN or infinity, no NUL (by path)."""
    if empty_ok and not raw.strip():
        return {}
    try:
        body = json_loads(raw)
    except JSONShapeError as exc:
        return _invalid({path or "non_field_errors": list(m) for path, m in exc.errors.items()})
    except ValueError:
        return 400, {"detail": "Malformed JSON.", "errors": {}}
    if not isinstance(body, dict):
        return _invalid({"non_field_errors": ["Send a JSON object."]})
    return body


def _token_label(token_id: int) -> str:
    name = RuntimeToken.objects.filter(pk=token_id).values_list("name", flat=True).first()
    return str(name or f"#{token_id}")


def _approval_id(params: Mapping[str, str]) -> int | None:
    raw = params.get("id", "")
    if not raw.isascii() or not raw.isdigit() or len(raw) > 18:
        return None
    return int(raw)


def _wait_key(scope: TokenScope, params: Mapping[str, str]) -> str:
    """The key a read of ``params`` waits on: the request's id as ``announce`` spells it
    (``/0017`` reads request 17, whose changes are announced as "17")."""
    approval_id = _approval_id(params)
    return str(approval_id) if approval_id is not None else params.get("id", "")


def _not_found(params: Mapping[str, str]) -> Answer:
    return 404, {"detail": f"No approval request {params.get('id', '')!r} in this token's scope."}


def open_request(scope: TokenScope, raw: bytes, params: Mapping[str, str]) -> Answer:
    """``POST /api/runtime/v1/approvals``: 201 new, 200 an idempotent repeat."""
    body = _object(raw)
    if isinstance(body, tuple):
        return body
    try:
        opened = approval_open(
            tenant_id=scope.tenant_id,
            environment_id=scope.environment_id,
            token_id=scope.token_id,
            token_agent_id=scope.agent_id,
            token_label=_token_label(scope.token_id),
            body=body,
        )
    except ValidationError as exc:
        return _invalid({name: list(messages) for name, messages in exc.message_dict.items()})
    except UnknownAgent as exc:
        return 404, {"detail": f"No agent {str(exc)!r} in this token's scope."}
    except IdempotencyConflict as exc:
        return 409, {"detail": str(exc)}
    except SessionLimit as exc:
        return 429, {"detail": str(exc), "retry_after_s": exc.retry_after_s}
    return (201 if opened.created else 200), approval_json(opened.request)


def read_request(scope: TokenScope, params: Mapping[str, str]) -> tuple[int, dict[str, Any], bool]:
    """``GET /api/runtime/v1/approvals/{id}``: the state, and whether it is final."""
    approval_id = _approval_id(params)
    request = (
        approval_for_runtime(
            tenant_id=scope.tenant_id,
            environment_id=scope.environment_id,
            token_agent_id=scope.agent_id,
            approval_id=approval_id,
        )
        if approval_id is not None
        else None
    )
    if request is None:
        status, answer = _not_found(params)
        return status, answer, True
    document, settled = runtime_document(request)
    return 200, document, settled


def cancel_request(scope: TokenScope, raw: bytes, params: Mapping[str, str]) -> Answer:
    """``POST /api/runtime/v1/approvals/{id}/cancel``: cancelled, or its final state as is."""
    body = _object(raw, empty_ok=True)
    if isinstance(body, tuple):
        return body
    approval_id = _approval_id(params)
    if approval_id is None:
        return _not_found(params)
    try:
        request = approval_cancel(
            tenant_id=scope.tenant_id,
            environment_id=scope.environment_id,
            token_agent_id=scope.agent_id,
            token_label=_token_label(scope.token_id),
            approval_id=approval_id,
            reason="" if body.get("reason") is None else body["reason"],  # the service checks it
        )
    except ValidationError as exc:
        return _invalid({name: list(messages) for name, messages in exc.message_dict.items()})
    if request is None:
        return _not_found(params)
    return 200, approval_json(request)


def _current(key: str) -> int:
    version = ApprovalRequest.objects.filter(pk=int(key)).values_list("version", flat=True).first()
    return int(version or 0)


APPROVAL = {
    "type": "object",
    "required": ["id", "status", "outcome", "tool", "arguments_sha256", "risk", "expires_at"],
    "properties": {
        "id": {"type": "integer"},
        "status": {"enum": [status.value for status in Status]},
        "outcome": {"type": "string", "enum": ["allow", "deny"], "nullable": True},
        "tool": {"type": "string"},
        "arguments_sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
        "risk": {"enum": ["read", "write", "critical"]},
        "queue": {"type": "string"},
        "session_id": {"type": "string"},
        "idempotency_key": {"type": "string"},
        "approvals_required": {"type": "integer"},
        "approvals": {"type": "integer"},
        "created_at": {"type": "string", "format": "date-time"},
        "expires_at": {"type": "string", "format": "date-time"},
        "decided_at": {"type": "string", "format": "date-time", "nullable": True},
        "decided_by": {"type": "array", "items": {"type": "string"}},
        "comment": {"type": "string"},
        "version": {"type": "integer"},
    },
}
OPEN_BODY = {
    "type": "object",
    "required": ["idempotency_key", "agent", "tool", "arguments", "arguments_sha256", "session_id"],
    "properties": {
        "idempotency_key": {"type": "string", "maxLength": 128},
        "agent": {"type": "string"},
        "tool": {"type": "string"},
        "arguments": {"type": "object", "description": "sensitive fields redacted"},
        "arguments_sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
        "risk": {"enum": ["read", "write", "critical"]},
        "reason": {"type": "string", "maxLength": 2000},
        "excerpt": {
            "type": "array",
            "maxItems": 20,
            "items": {
                "type": "object",
                "properties": {
                    "role": {"enum": ["user", "assistant", "tool", "system"]},
                    "content": {"type": "string", "maxLength": 2000},
                },
            },
        },
        "bundle_version": {"type": "integer", "minimum": 1},
        "session_id": {"type": "string", "maxLength": 128},
        "request_id": {"type": "string", "maxLength": 128},
        "runtime_id": {"type": "string", "maxLength": 128},
        "rule": {"type": "string", "maxLength": 200},
        "requested_by": {"type": "string", "maxLength": 254},
    },
}
_ID_PARAMETER = {"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}}


def register() -> None:
    """Serve the three routes on the fast path (``AppConfig.ready``)."""
    register_topic(Topic(name=APPROVAL_CHANGED, current=_current, wake_only=True))
    register_action(
        ActionRoute(
            path=OPEN_PATH,
            kind="approval-open",
            handle=open_request,
            docs=(
                OperationDoc(
                    path=OPEN_PATH,
                    operation_id="runtime_approvals_open",
                    summary="Open an approval request for a tool call",
                    description=(
                        "Holds the call for a human. 201 when created, 200 for a repeat of "
                        "the same `idempotency_key` (409 if it named other arguments), 429 "
                        "when the session already holds its queue's limit of open requests. "
                        "The platform computes the risk from the deployed tool contract. See "
                        "docs/approvals.md."
                    ),
                    tag="runtime",
                    request=OPEN_BODY,
                    response=APPROVAL,
                ),
            ),
        )
    )
    register_wait(
        WaitRoute(
            path=READ_PATH,
            kind="approval-read",
            read=read_request,
            topic=APPROVAL_CHANGED,
            topic_key=_wait_key,
            docs=(
                OperationDoc(
                    path=READ_PATH,
                    operation_id="runtime_approvals_read",
                    summary="An approval request's state; long-poll for its decision",
                    description=(
                        "With `wait=N` a pending request is held until it is decided (the "
                        "decision wakes it at once) or N seconds pass. `outcome` is what "
                        "the runtime applies: allow only when approved; rejected, expired "
                        "and cancelled deny. Execute only arguments whose canonical sha256 "
                        "is `arguments_sha256`."
                    ),
                    tag="runtime",
                    response=APPROVAL,
                    parameters=(_ID_PARAMETER,),
                ),
            ),
        )
    )
    register_action(
        ActionRoute(
            path=CANCEL_PATH,
            kind="approval-cancel",
            handle=cancel_request,
            docs=(
                OperationDoc(
                    path=CANCEL_PATH,
                    operation_id="runtime_approvals_cancel",
                    summary="Cancel a pending approval request",
                    description=(
                        "The runtime gave up waiting (its own timeout, the session ended). "
                        "A request already decided is returned as it is."
                    ),
                    tag="runtime",
                    request={
                        "type": "object",
                        "properties": {"reason": {"type": "string", "maxLength": 500}},
                    },
                    response=APPROVAL,
                    parameters=(_ID_PARAMETER,),
                ),
            ),
        )
    )
