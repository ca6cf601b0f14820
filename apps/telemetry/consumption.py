"""Reads of consumption (cost, tokens, requests, tool calls) over a tenant's scopes, for budgets:
what a window already spent when a budget is created or changed mid-window, and the spend
views of the Budgets page.

Counted the same way ingestion announces it (``services._announce_consumption``): tokens are
input plus output; a request whose outcome is ``budget_blocked`` or a shadow run is not a
request served, though its cost and tool calls count. Tenant, agent and environment filters
are ids the caller has already checked the user may see. Times are aware UTC datetimes, a
window is ``[start, end)``; costs are ``Decimal`` USD."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Literal

from django.db.models import Count, F, Q, QuerySet, Sum
from django.db.models.functions import Coalesce, TruncMinute

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
        rows = (
            _records(
                tenant_id=tenant_id,
                start=start,
                end=end,
                environment_id=environment_id,
                agent_id=agent_id,
            )
            .exclude(end_user_hash="")
            .values("end_user_hash")
            .annotate(**_RECORD_SUMS)
        )
        return {row["end_user_hash"]: _of_records(row) for row in rows}
    rollups = _rollups(
        tenant_id=tenant_id,
        start=start,
        end=end,
        environment_id=environment_id,
        agent_id=agent_id,
    )
    keys = ["agent_id"] if by == "agent" else []
    found: list[dict[str, Any]]
    if not keys:
        found = [{"subject": "", **rollups.aggregate(**_ROLLUP_SUMS)}]
    else:
        found = [
            {"subject": str(row["agent_id"]), **row}
            for row in rollups.values(*keys).annotate(**_ROLLUP_SUMS)
        ]
    return {
        row["subject"]: _of_rollups(row)
        for row in found
        if row["cost"] or row["tokens"] or row["requests"] or row["tools"]
    }


def _scoped(
    rows: QuerySet[Any],
    time_field: str,
    *,
    tenant_id: int,
    start: datetime,
    end: datetime,
    environment_id: int | None = None,
    agent_id: int | None = None,
    end_user_hash: str | None = None,
) -> QuerySet[Any]:
    """``rows`` of the tenant with ``time_field`` in ``[start, end)``, narrowed to the
    environment, agent and end user when given: the one scope filter of these reads."""
    rows = rows.filter(
        tenant_id=tenant_id, **{f"{time_field}__gte": start, f"{time_field}__lt": end}
    )
    narrowing = {
        "environment_id": environment_id,
        "agent_id": agent_id,
        "end_user_hash": end_user_hash,
    }
    return rows.filter(**{name: value for name, value in narrowing.items() if value is not None})


def _rollups(**scope: Any) -> QuerySet[MinuteRollup]:
    return _scoped(MinuteRollup.objects.all(), "bucket_start", **scope)


def _records(**scope: Any) -> QuerySet[RequestRecord]:
    return _scoped(RequestRecord.objects.all(), "started_at", **scope)


_NOT_SHADOW = ~Q(variant=Variant.SHADOW)
# What the minute rollups add up to: the counting of ``services._announce_consumption``.
_ROLLUP_SUMS = {
    "cost": Coalesce(Sum("cost_usd"), Decimal(0)),
    "tokens": Coalesce(Sum(F("tokens_in") + F("tokens_out")), 0),
    "requests": Coalesce(Sum("requests", filter=_NOT_SHADOW), 0),
    "blocked": Coalesce(Sum("count_budget_blocked", filter=_NOT_SHADOW), 0),
    "tools": Coalesce(Sum("tool_calls"), 0),
}


def _of_rollups(row: Mapping[str, Any]) -> Consumption:
    return Consumption(
        Decimal(row["cost"]),
        int(row["tokens"]),
        int(row["requests"]) - int(row["blocked"]),
        int(row["tools"]),
    )


_SERVED = ~Q(outcome=Outcome.BUDGET_BLOCKED) & _NOT_SHADOW
_RECORD_SUMS = {
    "cost": Coalesce(Sum("cost_usd"), Decimal(0)),
    "tokens": Coalesce(Sum(F("tokens_in") + F("tokens_out")), 0),
    "served": Count("id", filter=_SERVED),
    "tools": Coalesce(Sum("tool_calls"), 0),
}


def _of_records(row: Mapping[str, Any]) -> Consumption:
    return Consumption(
        Decimal(row["cost"]), int(row["tokens"]), int(row["served"]), int(row["tools"])
    )


def consumption_per_minute(
    *,
    tenant_id: int,
    start: datetime,
    end: datetime,
    environment_id: int | None = None,
    agent_id: int | None = None,
    end_user_hash: str | None = None,
) -> list[tuple[datetime, Consumption]]:
    """Consumption per minute over ``[start, end)``, oldest first, minutes without any left
    out: from the minute rollups, or from the raw records of one end user when
    ``end_user_hash`` is given (the rollups keep no end users)."""
    if end_user_hash is not None:
        rows = (
            _records(
                tenant_id=tenant_id,
                start=start,
                end=end,
                environment_id=environment_id,
                agent_id=agent_id,
                end_user_hash=end_user_hash,
            )
            .annotate(minute=TruncMinute("started_at", tzinfo=UTC))
            .values("minute")
            .annotate(**_RECORD_SUMS)
            .order_by("minute")
        )
        return [(row["minute"], _of_records(row)) for row in rows]
    minutes = (
        _rollups(
            tenant_id=tenant_id,
            start=start,
            end=end,
            environment_id=environment_id,
            agent_id=agent_id,
        )
        .values("bucket_start")
        .annotate(**_ROLLUP_SUMS)
        .order_by("bucket_start")
    )
    return [(row["bucket_start"], _of_rollups(row)) for row in minutes]


def consumption_by(
    *,
    tenant_id: int,
    start: datetime,
    end: datetime,
    key: Literal["model", "session_id", "end_user_hash"],
    environment_id: int | None = None,
    agent_id: int | None = None,
    limit: int = 10,
) -> list[tuple[str, Consumption]]:
    """The biggest spenders over ``[start, end)`` by ``key`` of the raw request records (the
    model that served, the session, the end user), most cost first, at most ``limit``.
    Records without the key (no session, no end user) are left out; an unnamed model is
    ``""``."""
    records = _records(
        tenant_id=tenant_id,
        start=start,
        end=end,
        environment_id=environment_id,
        agent_id=agent_id,
    )
    if key != "model":
        records = records.exclude(**{key: ""})
    rows = records.values(key).annotate(**_RECORD_SUMS).order_by("-cost", "-tokens", key)[:limit]
    return [(row[key], _of_records(row)) for row in rows]


@dataclass(frozen=True)
class CostOutlier:
    """A request whose cost is far above the scope's median (``times`` the median)."""

    request_id: str
    agent_id: int
    cost_usd: Decimal
    times: Decimal
    tool_calls: int
    tokens: int
    model: str
    trace_id: str
    session_id: str
    started_at: datetime


def cost_outliers(
    *,
    tenant_id: int,
    start: datetime,
    end: datetime,
    environment_id: int | None = None,
    agent_id: int | None = None,
    factor: int = 10,
    top_share: float = 0.01,
    limit: int = 20,
) -> tuple[Decimal | None, list[CostOutlier]]:
    """``(median cost, outliers)`` of the request records over ``[start, end)``: requests
    costing more than ``factor`` times the median and in the top ``top_share`` by cost
    (with fewer than 1/``top_share`` records, the single most expensive), most expensive
    first, at most ``limit``. The median is None without records; a median of 0 makes
    every costed request in the top share an outlier."""
    records = _records(
        tenant_id=tenant_id,
        start=start,
        end=end,
        environment_id=environment_id,
        agent_id=agent_id,
    )
    count = records.count()
    if not count:
        return None, []
    by_cost = records.order_by("cost_usd", "id").values_list("cost_usd", flat=True)
    middle = count // 2
    if count % 2:
        median = Decimal(by_cost[middle])
    else:
        low, high = by_cost[middle - 1 : middle + 1]
        median = (Decimal(low) + Decimal(high)) / 2
    top = max(1, int(count * top_share))
    # the cheapest of the top share: an outlier costs at least this
    floor = Decimal(
        records.order_by("-cost_usd", "-id").values_list("cost_usd", flat=True)[top - 1]
    )
    threshold = max(median * factor, floor)
    found = (
        records.filter(cost_usd__gte=threshold)
        .filter(cost_usd__gt=median * factor)
        .order_by("-cost_usd", "-id")[: min(limit, top)]
    )
    return median, [
        CostOutlier(
            request_id=row.request_id,
            agent_id=row.agent_id,
            cost_usd=row.cost_usd,
            times=(row.cost_usd / median).quantize(Decimal("0.1")) if median else Decimal(0),
            tool_calls=row.tool_calls,
            tokens=row.tokens_in + row.tokens_out,
            model=row.model,
            trace_id=row.trace_id,
            session_id=row.session_id,
            started_at=row.started_at,
        )
        for row in found
    ]
