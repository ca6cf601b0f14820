"""Reads of consumption (cost, tokens, requests, tool calls) over a tenant's scopes, for budgets:
what a window already spent when a budget is created or changed mid-window, and the spend
views of the Budgets page.

Counted the same way ingestion announces it (``services._announce_consumption``): tokens are
input plus output; a request whose outcome is ``budget_blocked`` or a shadow run is not a
request served, though its cost and tool calls count. Tenant, agent and environment filters
are ids the caller has already checked the user may see. Times are aware UTC datetimes, a
window is ``[start, end)``; costs are ``Decimal`` USD."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from django.db.models import Count, F, Q, Sum
from django.db.models.functions import Coalesce

from .models import MinuteRollup, Outcome, RequestRecord, Variant

By = Literal["", "agent", "end_user"]


@dataclass(frozen=True)
class Consumption:
    """What one subject consumed: USD, tokens (in + out), requests served, tool calls."""

    cost_usd: Decimal = Decimal(0)
    tokens: int = 0
    requests: int = 0
    tool_calls: int = 0


def consumption_between(
    *,
    tenant_id: int,
    start: datetime,
    end: datetime,
    environment_id: int | None = None,
    agent_id: int | None = None,
    by: By = "",
) -> dict[str, Consumption]:
    """Consumption of a tenant over ``[start, end)``, optionally one environment and one agent,
    keyed by subject: ``""`` for all together (``by=""``), the agent id as a string
    (``by="agent"``), or the end-user hash (``by="end_user"``). ``end_user`` reads raw request
    records (the rollups keep no end users; records older than their retention are gone), the
    others the minute rollups."""
    if by == "end_user":
        records = RequestRecord.objects.filter(
            tenant_id=tenant_id, started_at__gte=start, started_at__lt=end
        ).exclude(end_user_hash="")
        if environment_id is not None:
            records = records.filter(environment_id=environment_id)
        if agent_id is not None:
            records = records.filter(agent_id=agent_id)
        served = ~Q(outcome=Outcome.BUDGET_BLOCKED) & ~Q(variant=Variant.SHADOW)
        rows = records.values("end_user_hash").annotate(
            cost=Coalesce(Sum("cost_usd"), Decimal(0)),
            tokens=Coalesce(Sum(F("tokens_in") + F("tokens_out")), 0),
            served=Count("id", filter=served),
            tools=Coalesce(Sum("tool_calls"), 0),
        )
        return {
            row["end_user_hash"]: Consumption(
                Decimal(row["cost"]), int(row["tokens"]), int(row["served"]), int(row["tools"])
            )
            for row in rows
        }
    rollups = MinuteRollup.objects.filter(
        tenant_id=tenant_id, bucket_start__gte=start, bucket_start__lt=end
    )
    if environment_id is not None:
        rollups = rollups.filter(environment_id=environment_id)
    if agent_id is not None:
        rollups = rollups.filter(agent_id=agent_id)
    keys = ["agent_id"] if by == "agent" else []
    not_shadow = ~Q(variant=Variant.SHADOW)
    aggregates = {
        "cost": Coalesce(Sum("cost_usd"), Decimal(0)),
        "tokens": Coalesce(Sum(F("tokens_in") + F("tokens_out")), 0),
        "requests": Coalesce(Sum("requests", filter=not_shadow), 0),
        "blocked": Coalesce(Sum("count_budget_blocked", filter=not_shadow), 0),
        "tools": Coalesce(Sum("tool_calls"), 0),
    }
    found: list[dict[str, Any]]
    if not keys:
        found = [{"subject": "", **rollups.aggregate(**aggregates)}]
    else:
        found = [
            {"subject": str(row["agent_id"]), **row}
            for row in rollups.values(*keys).annotate(**aggregates)
        ]
    return {
        row["subject"]: Consumption(
            Decimal(row["cost"]),
            int(row["tokens"]),
            int(row["requests"]) - int(row["blocked"]),
            int(row["tools"]),
        )
        for row in found
        if row["cost"] or row["tokens"] or row["requests"] or row["tools"]
    }
