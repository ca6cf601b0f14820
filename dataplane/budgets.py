"""Budget reservations, the runtime's side (docs/budgets.md, "Reservations").

The shapes ``Runtime.budget_reserve`` and ``Runtime.budget_settle`` answer with, and the
encoding of amounts for the wire (cost as a decimal string, counts as integers). No network
here: ``client.Runtime`` sends, ``guardrails.RequestGuard`` decides with what it gets back."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

RESERVE_PATH = "/api/runtime/v1/budgets/reserve"
SETTLE_PATH = "/api/runtime/v1/budgets/settle"
METRICS = ("cost_usd", "tokens", "requests", "tool_calls")
_RESERVATION_ID = re.compile(r"[A-Za-z0-9.:@/_-]{1,128}")

# control-plane: the control plane answered; local: no strict budget in scope, granted
# without asking; offline: the control plane could not be asked (open within the grace,
# refused past it).
Source = Literal["control-plane", "local", "offline"]


@dataclass(frozen=True)
class BudgetRefusal:
    """The budget that refused a reservation (the answer's ``refused_by``)."""

    id: Any
    name: str = ""
    metric: str = ""
    remaining: str = ""  # as the control plane wrote it (a decimal string for cost_usd)
    resets_at: datetime | None = None


@dataclass(frozen=True)
class ReserveResult:
    """The answer to one reservation. ``granted`` False: the step must not run, and the
    request is reported with outcome ``budget_blocked`` and ``error_code``
    (``budget:<id>``, or ``budget:<id>:unreachable`` when the control plane has been
    unreachable past the grace)."""

    reservation_id: str
    granted: bool
    source: Source
    error_code: str = ""
    refused_by: BudgetRefusal | None = None
    expires_at: datetime | None = None
    # what each strict budget has left after this reservation: {budget id: {metric: value}}
    remaining: Mapping[Any, Mapping[str, str | int]] = field(default_factory=dict)


@dataclass(frozen=True)
class SettleResult:
    """The answer to one settle. ``status``: ``settled``, ``expired``, ``released`` (from the
    control plane), ``unknown`` (it does not know the reservation), ``local`` (nothing to
    settle: the reservation never reached the control plane), ``pending`` (the call failed;
    the runtime retries it in the background)."""

    reservation_id: str
    status: str
    duplicate: bool = False


def check_reservation_id(reservation_id: str) -> str:
    """``reservation_id`` if it is 1 to 128 of letters, digits and ``. : @ / - _``; else
    ValueError (the control plane would answer 400)."""
    if not isinstance(reservation_id, str) or not _RESERVATION_ID.fullmatch(reservation_id):
        raise ValueError(
            f"reservation_id {reservation_id!r} must be 1-128 of letters, digits and . : @ / - _"
        )
    return reservation_id


def amounts_json(amounts: Mapping[str, Any], *, where: str) -> dict[str, Any]:
    """``amounts`` (any of the four metrics) for the wire: ``cost_usd`` a decimal string,
    the others integers. ValueError for an unknown metric or a negative or non-numeric
    amount."""
    out: dict[str, Any] = {}
    for name, value in amounts.items():
        if name not in METRICS:
            raise ValueError(f"{where}.{name} is not a budget metric ({', '.join(METRICS)})")
        if value is None:
            continue
        if name == "cost_usd":
            try:
                # str() first: 0.1 as a float stays 0.1, not its binary approximation.
                cost = Decimal(str(value))
            except InvalidOperation as exc:
                raise ValueError(f"{where}.cost_usd {value!r} is not a decimal") from exc
            if not cost.is_finite() or cost < 0:
                raise ValueError(f"{where}.cost_usd must be a non-negative decimal")
            out[name] = str(cost)
        else:
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{where}.{name} must be a non-negative integer")
            out[name] = value
    return out


def parse_instant(value: Any) -> datetime | None:
    """An ISO 8601 instant from an answer, or None when absent or unreadable."""
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def reserve_result(reservation_id: str, document: Any) -> ReserveResult:
    """A 200 answer of ``POST /budgets/reserve`` as a ``ReserveResult``; ValueError when the
    document does not have the documented shape."""
    if not isinstance(document, Mapping) or not isinstance(document.get("granted"), bool):
        raise ValueError("the reserve answer has no boolean 'granted'")
    remaining: dict[Any, Mapping[str, str | int]] = {}
    for item in document.get("budgets") or []:
        if isinstance(item, Mapping) and isinstance(item.get("remaining"), Mapping):
            remaining[item.get("id")] = dict(item["remaining"])
    if document["granted"]:
        return ReserveResult(
            reservation_id=reservation_id,
            granted=True,
            source="control-plane",
            expires_at=parse_instant(document.get("expires_at")),
            remaining=remaining,
        )
    refused = document.get("refused_by")
    if not isinstance(refused, Mapping):
        raise ValueError("a refused reservation names no refused_by budget")
    refusal = BudgetRefusal(
        id=refused.get("id"),
        name=str(refused.get("name") or ""),
        metric=str(refused.get("metric") or ""),
        remaining=str(refused.get("remaining") if refused.get("remaining") is not None else ""),
        resets_at=parse_instant(refused.get("resets_at")),
    )
    return ReserveResult(
        reservation_id=reservation_id,
        granted=False,
        source="control-plane",
        error_code=f"budget:{refusal.id}",
        refused_by=refusal,
        remaining=remaining,
    )
