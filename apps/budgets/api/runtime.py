"""``POST /api/runtime/v1/budgets/reserve`` and ``…/settle`` (docs/budgets.md), answered on the
fast path (``apps.core.fastpath.ActionRoute``): a runtime reserves once per expensive step, so
the route skips Django's request cycle (docs/decisions/0025-budget-reservations.md). This
module only reads the body and maps the services' answers and errors to HTTP."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from django.core.exceptions import ValidationError

from apps.core.fastpath import ActionRoute, OperationDoc, TokenScope, register_action

from ..services import UnknownAgent, UnknownReservation, budget_reserve, budget_settle

RESERVE_PATH = "/api/runtime/v1/budgets/reserve"
SETTLE_PATH = "/api/runtime/v1/budgets/settle"
# Whole-string matches (``fullmatch``): ``$`` also matches before a final newline, which would
# let "req-1\n" in as another id than "req-1".
_ID = re.compile(r"[\w.:@/-]{1,128}")
_HASH = re.compile(r"[\w.:@/+=-]{0,128}")
_SLUG = re.compile(r"[\w-]{1,100}")
Answer = tuple[int, dict[str, Any]]


def _invalid(errors: dict[str, list[str]]) -> Answer:
    return 400, {"detail": "Invalid input.", "errors": errors}


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _object(raw: bytes) -> dict[str, Any] | Answer:
    """The body as a JSON object (fractions as ``Decimal``), or a 400 answer."""
    try:
        body = json.loads(raw, parse_float=Decimal, parse_constant=_refuse_constant)
    except (ValueError, RecursionError):
        return 400, {"detail": "Malformed JSON.", "errors": {}}
    if not isinstance(body, dict):
        return _invalid({"non_field_errors": ["Send a JSON object."]})
    return body


def _identifier(body: dict[str, Any], name: str, errors: dict[str, list[str]]) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not _ID.fullmatch(value):
        errors[name] = ["1 to 128 of letters, digits and . : @ / - _"]
        return ""
    return value


def reserve(scope: TokenScope, raw: bytes, params: Mapping[str, str]) -> Answer:
    """The reserve route's handler (see ``apps.core.fastpath.registry.ActionHandler``)."""
    body = _object(raw)
    if isinstance(body, tuple):
        return body
    errors: dict[str, list[str]] = {}
    key = _identifier(body, "reservation_id", errors)
    request_id = ""
    if body.get("request_id") is not None:
        request_id = _identifier(body, "request_id", errors)
    agent = body.get("agent")
    if not isinstance(agent, str) or not _SLUG.fullmatch(agent):
        errors["agent"] = ["The agent's slug."]
    user = body.get("end_user_hash")
    if user is None:
        user = ""
    if not isinstance(user, str) or not _HASH.fullmatch(user):
        errors["end_user_hash"] = ["At most 128 of letters, digits and . : @ / + = - _"]
    if "estimate" not in body:
        errors["estimate"] = ["Required: the step's estimate (cost_usd, tokens, ...)."]
    if errors:
        return _invalid(errors)
    try:
        answer = budget_reserve(
            tenant_id=scope.tenant_id,
            environment_id=scope.environment_id,
            agent=str(agent),
            token_agent_id=scope.agent_id,
            key=key,
            request_id=request_id,
            end_user_hash=user,
            estimate=body["estimate"],
        )
    except ValidationError as exc:
        return _invalid({name: list(messages) for name, messages in exc.message_dict.items()})
    except UnknownAgent:
        return 404, {"detail": f"No agent {agent!r} in this token's scope."}
    return 200, answer.as_json()


def settle(scope: TokenScope, raw: bytes, params: Mapping[str, str]) -> Answer:
    """The settle route's handler."""
    body = _object(raw)
    if isinstance(body, tuple):
        return body
    errors: dict[str, list[str]] = {}
    key = _identifier(body, "reservation_id", errors)
    if "actual" not in body:
        errors["actual"] = ["Required: what the step really used (cost_usd, tokens, ...)."]
    if errors:
        return _invalid(errors)
    try:
        answer = budget_settle(
            tenant_id=scope.tenant_id,
            environment_id=scope.environment_id,
            key=key,
            actual=body["actual"],
        )
    except ValidationError as exc:
        return _invalid({name: list(messages) for name, messages in exc.message_dict.items()})
    except UnknownReservation:
        return 404, {"detail": f"No reservation {key!r}."}
    return 200, answer.as_json()


_AMOUNTS = {
    "type": "object",
    "properties": {
        "cost_usd": {"type": "string", "description": "USD, a decimal (string or number)"},
        "tokens": {"type": "integer", "minimum": 0},
        "requests": {"type": "integer", "minimum": 0},
        "tool_calls": {"type": "integer", "minimum": 0},
    },
    "additionalProperties": False,
}
_REMAINING = {
    "type": "array",
    "items": {
        "type": "object",
        "properties": {"id": {"type": "integer"}, "remaining": {"type": "object"}},
    },
}


def register() -> None:
    """Serve the two routes on the fast path (``AppConfig.ready``)."""
    register_action(
        ActionRoute(
            path=RESERVE_PATH,
            kind="budget-reserve",
            handle=reserve,
            docs=(
                OperationDoc(
                    path=RESERVE_PATH,
                    operation_id="runtime_budgets_reserve",
                    summary="Reserve an estimate on the strict budgets in scope",
                    description=(
                        "Granted only if every strict budget the request falls in has room "
                        "for the estimate (consumed + reserved + estimate <= limit); then it "
                        "is held on all of them until settled, released by the request's "
                        "record, or expired. Idempotent by `reservation_id`. See "
                        "docs/budgets.md."
                    ),
                    tag="runtime",
                    request={
                        "type": "object",
                        "required": ["reservation_id", "agent", "estimate"],
                        "properties": {
                            "reservation_id": {"type": "string", "maxLength": 128},
                            "request_id": {"type": "string", "maxLength": 128},
                            "agent": {"type": "string"},
                            "end_user_hash": {"type": "string", "maxLength": 128},
                            "estimate": _AMOUNTS,
                        },
                    },
                    response={
                        "type": "object",
                        "required": ["reservation_id", "granted", "budgets"],
                        "properties": {
                            "reservation_id": {"type": "string"},
                            "granted": {"type": "boolean"},
                            "expires_at": {"type": "string", "format": "date-time"},
                            "refused_by": {"type": "object"},
                            "budgets": _REMAINING,
                        },
                    },
                ),
            ),
        )
    )
    register_action(
        ActionRoute(
            path=SETTLE_PATH,
            kind="budget-settle",
            handle=settle,
            docs=(
                OperationDoc(
                    path=SETTLE_PATH,
                    operation_id="runtime_budgets_settle",
                    summary="Settle a reservation with the actual amounts",
                    description=(
                        "Replaces the estimate held by the reservation with what the step "
                        "really used, held until the request's record arrives. Idempotent: a "
                        "repeat answers `duplicate: true`. See docs/budgets.md."
                    ),
                    tag="runtime",
                    request={
                        "type": "object",
                        "required": ["reservation_id", "actual"],
                        "properties": {
                            "reservation_id": {"type": "string", "maxLength": 128},
                            "actual": _AMOUNTS,
                        },
                    },
                    response={
                        "type": "object",
                        "required": ["reservation_id", "status", "duplicate"],
                        "properties": {
                            "reservation_id": {"type": "string"},
                            "status": {"enum": ["settled", "released", "expired"]},
                            "duplicate": {"type": "boolean"},
                        },
                    },
                ),
            ),
        )
    )
