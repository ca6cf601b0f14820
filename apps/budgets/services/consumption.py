"""Consumption: what telemetry reports, counted into every budget it falls in as it is
ingested; thresholds raised once per window and subject; exhaustion announced; the window
roll that lifts it."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from apps.alerts.services import alert_raise
from apps.audit.services import audit_record
from apps.core.events import (
    ENVIRONMENT_REVISION,
    SCOPE_ARCHIVED,
    SCOPE_RESTORED,
    TELEMETRY_INGESTED,
    Event,
    subscribe,
)
from apps.tenancy.models import Agent

from ..models import (
    AGENT_SCOPES,
    METRICS,
    Action,
    Budget,
    BudgetMark,
    BudgetUsage,
    Reservation,
    ReservationStatus,
    Scope,
)
from ..windows import window_bounds
from ._common import SYSTEM, _announce
from .reservations import holds_take, scope_cache_clear

# --- consumption -----------------------------------------------------------------------------

Key = tuple[int, datetime, str]


def _increment(increments: Mapping[Key, Sequence[Any]]) -> None:
    """Add ``[cost, tokens, requests, tool_calls]`` to each counter row (created at need), in key
    order (two batches touching the same rows lock them in the same order: no deadlock).
    An entry may carry four more values: what to add to the row's ``reserved_*`` (negative:
    holds released in the same statement, so the row is locked once, in key order)."""
    if not increments:
        return
    table = BudgetUsage._meta.db_table
    adapt = connection.ops.adapt_datetimefield_value
    rows = sorted(increments.items(), key=lambda item: (item[0][0], item[0][1], item[0][2]))
    with connection.cursor() as cursor:
        for start in range(0, len(rows), 200):
            chunk = rows[start : start + 200]
            params: list[Any] = []
            for (budget_id, window_start, subject), values in chunk:
                cost, tokens, requests, tools = values[:4]
                r_cost, r_tokens, r_requests, r_tools = (
                    values[4:8] if len(values) > 4 else (0, 0, 0, 0)
                )
                params.extend(
                    (budget_id, adapt(window_start), subject, str(cost), tokens, requests, tools)
                )
                params.extend((str(r_cost), r_tokens, r_requests, r_tools))
            cursor.execute(
                f"INSERT INTO {table} (budget_id, window_start, subject, cost_usd, tokens, "  # noqa: S608 - table and column names are ours
                "requests, tool_calls, reserved_cost_usd, reserved_tokens, reserved_requests, "
                "reserved_tool_calls) VALUES "
                + ", ".join(["(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"] * len(chunk))
                + " ON CONFLICT (budget_id, window_start, subject) DO UPDATE SET "
                f"cost_usd = {table}.cost_usd + excluded.cost_usd, "
                f"tokens = {table}.tokens + excluded.tokens, "
                f"requests = {table}.requests + excluded.requests, "
                f"tool_calls = {table}.tool_calls + excluded.tool_calls, "
                + ", ".join(
                    f"reserved_{m} = {table}.reserved_{m} + excluded.reserved_{m}"
                    for m in ("cost_usd", "tokens", "requests", "tool_calls")
                ),
                params,
            )


def consumption_ingested(event: Event) -> None:
    """The ``telemetry.ingested`` subscriber (once, after the batch committed): count it."""
    payload = event.payload
    consumption_apply(
        tenant_id=int(payload["tenant_id"]),
        environment_id=int(payload["environment_id"]),
        usage=payload.get("usage") or [],
        request_ids=payload.get("request_ids") or [],
    )


def register() -> None:
    """Subscribe to telemetry (``AppConfig.ready``), and have the reservations' hot path forget
    what it remembers whenever a revision moves or a scope is archived or restored, in every
    process."""
    subscribe(TELEMETRY_INGESTED, consumption_ingested)
    subscribe(ENVIRONMENT_REVISION, scope_cache_clear, everywhere=True)
    subscribe(SCOPE_ARCHIVED, scope_cache_clear, everywhere=True)
    subscribe(SCOPE_RESTORED, scope_cache_clear, everywhere=True)


def consumption_apply(
    *,
    tenant_id: int,
    environment_id: int,
    usage: Sequence[Sequence[Any]],
    request_ids: Sequence[str] = (),
    now: datetime | None = None,
) -> None:
    """Count what telemetry newly stored for ``environment_id`` of ``tenant_id`` into every
    budget it falls in, release the reservation holds of ``request_ids`` (their records now
    count), and raise what crossed a threshold in the current window. ``usage`` items:
    ``[agent_id, end_user_hash, minute ISO 8601, cost_usd str, tokens, requests,
    tool_calls]``. One transaction."""
    now = now or timezone.now()
    budgets = list(
        Budget.objects.filter(tenant_id=tenant_id)
        .filter(Q(environment_id__isnull=True) | Q(environment_id=environment_id))
        .select_related("tenant", "agent")
    )
    if not budgets:
        return
    time_zone = budgets[0].tenant.time_zone
    starts: dict[tuple[str, str], datetime] = {}
    increments: dict[Key, list[Any]] = {}
    for agent_id, user, minute, cost, tokens, requests, tools in usage:
        for budget in budgets:
            if budget.scope in AGENT_SCOPES and budget.agent_id != agent_id:
                continue
            if budget.scope == Scope.END_USER:
                if not user:
                    continue
                subject = user
            elif budget.scope == Scope.TENANT_AGENT:
                subject = str(agent_id)
            else:
                subject = ""
            start = starts.get((budget.window, minute))
            if start is None:
                moment = datetime.fromisoformat(minute)
                start = starts[(budget.window, minute)] = window_bounds(
                    budget.window, moment, time_zone
                )[0]
            entry = increments.setdefault((budget.pk, start, subject), [Decimal(0), 0, 0, 0])
            entry[0] += Decimal(cost)
            entry[1] += int(tokens)
            entry[2] += int(requests)
            entry[3] += int(tools)
    with transaction.atomic():
        if request_ids:
            # The holds of these requests first (reservation rows, then counters: the lock
            # order of settle and the expiry too), taken off in the same per-counter upsert
            # as the consumption that replaces them: counted once, each row locked once.
            _, taken = holds_take(
                Reservation.objects.filter(tenant_id=tenant_id, request_id__in=list(request_ids)),
                ReservationStatus.RELEASED,
            )
            for key, amounts in taken.items():
                entry = increments.setdefault(key, [Decimal(0), 0, 0, 0])
                entry.extend([Decimal(0), 0, 0, 0][len(entry) - 4 :])
                for index, metric in enumerate(METRICS):
                    entry[4 + index] -= amounts[metric]
        _increment(increments)
        by_budget = {budget.pk: budget for budget in budgets}
        touched: dict[int, list[tuple[datetime, str]]] = {}
        for budget_id, start, subject in increments:
            touched.setdefault(budget_id, []).append((start, subject))
        for budget_id, keys in sorted(touched.items()):
            budget = by_budget[budget_id]
            current, _ = window_bounds(budget.window, now, time_zone)
            subjects = [subject for start, subject in keys if start == current]
            if subjects:
                rows = BudgetUsage.objects.filter(
                    budget=budget, window_start=current, subject__in=subjects
                )
                _evaluate(budget, list(rows), now)


def _current_rows(budget: Budget, now: datetime) -> Iterable[BudgetUsage]:
    start, _ = window_bounds(budget.window, now, budget.tenant.time_zone)
    return BudgetUsage.objects.filter(budget=budget, window_start=start)


def percent_used(budget: Budget, row: BudgetUsage | None) -> tuple[Decimal, str]:
    """The highest share of a limit consumed, in percent (two places), and its metric."""
    best, metric = Decimal(0), ""
    if row is None:
        return best, metric
    for name, limit in budget.limits().items():
        if limit:
            share = Decimal(getattr(row, name)) * 100 / Decimal(limit)
            if share > best or not metric:
                best, metric = share, name
    return best.quantize(Decimal("0.01")), metric


def _subject_label(budget: Budget, subject: str) -> str:
    if budget.scope == Scope.TENANT_AGENT:
        slug = Agent.objects.filter(pk=int(subject)).values_list("slug", flat=True).first()
        return f" for agent {slug or subject}"
    if budget.scope == Scope.END_USER:
        return f" for end user {subject[:12]}…"
    return ""


def _mark(budget: Budget, start: datetime, subject: str, threshold: int, percent: Decimal) -> bool:
    """Insert the mark; True when this call inserted it (the one that raises the alert)."""
    table = BudgetMark._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (budget_id, window_start, subject, threshold, percent, "  # noqa: S608 - table and column names are ours
            "created_at, rolled) VALUES (%s, %s, %s, %s, %s, %s, %s) "
            "ON CONFLICT (budget_id, window_start, subject, threshold) DO NOTHING RETURNING id",
            [
                budget.pk,
                connection.ops.adapt_datetimefield_value(start),
                subject,
                threshold,
                str(percent),
                connection.ops.adapt_datetimefield_value(timezone.now()),
                False,
            ],
        )
        return cursor.fetchone() is not None


def _evaluate(
    budget: Budget, rows: Sequence[BudgetUsage], now: datetime, *, announced: bool = False
) -> None:
    """Raise each threshold the rows (of the current window) crossed, once per window and
    subject; at 100% a blocking or degrading budget is exhausted: audited and announced.
    The announcement (the environments' row locks) comes before the alerts and audits: the
    audit chain's lock is the last a change takes (``tenancy.services.
    environment_revisions_bump``). ``announced``: the caller bumped them already."""
    start, end = window_bounds(budget.window, now, budget.tenant.time_zone)
    crossings = [
        (row, threshold, percent, metric)
        for row in sorted(rows, key=lambda row: row.subject)
        for percent, metric in [percent_used(budget, row)]
        for threshold in sorted(set(budget.thresholds) | {100})
        if percent >= threshold and _mark(budget, start, row.subject, threshold, percent)
    ]
    exhausted = budget.action != Action.ALERT and any(c[1] >= 100 for c in crossings)
    if exhausted and not announced:
        _announce(budget)
    for row, threshold, percent, metric in crossings:
        _crossed(budget, row, threshold, percent, metric, start, end)


def _crossed(
    budget: Budget,
    row: BudgetUsage,
    threshold: int,
    percent: Decimal,
    metric: str,
    start: datetime,
    end: datetime,
    *,
    no_room: str = "",
) -> None:
    """What crossing ``threshold`` (its mark just inserted) does: the alert when the budget
    asks for one at that level; at 100% of a blocking or degrading budget, the audited
    exhaustion. ``no_room``: why it is exhausted below 100% (a strict budget's reservation no
    longer fits). The caller announces an exhaustion first (``_evaluate``)."""
    who = _subject_label(budget, row.subject)
    at_limit = threshold >= 100
    if threshold in budget.thresholds or (at_limit and no_room):
        reached = (
            f"limit reached: {no_room}"
            if no_room
            else f"{threshold}% of the {budget.window}'s {metric.replace('_', ' ')} limit reached"
        )
        alert_raise(
            tenant=budget.tenant,
            kind="budget.exhausted" if at_limit else "budget.threshold",
            severity="critical" if at_limit else "warning",
            title=f"Budget {budget.name}{who}: {reached}",
            detail=(
                f"{percent}% used ({metric} {getattr(row, metric)} of "
                f"{budget.limits()[metric]}); the window ends {end.isoformat()}. "
                + (
                    f"Action at the limit: {budget.action}."
                    if at_limit
                    else "Nothing is blocked yet."
                )
            ),
            link=f"/budgets/{budget.pk}/",
            subject_type="budgets.budget",
            subject_id=str(budget.pk),
            actor=SYSTEM,
        )
    if not at_limit or budget.action == Action.ALERT:
        return
    audit_record(
        actor=SYSTEM,
        action="budget.exhausted",
        target=budget,
        tenant=budget.tenant,
        after={
            "window_start": start.isoformat(),
            "subject": row.subject,
            "percent": str(percent),
            "metric": metric,
            "action": budget.action,
            **({"why": no_room} if no_room else {}),
        },
    )


def budget_no_room(
    *, budget_id: int, window_start: datetime, subject: str, metric: str, estimate: Any
) -> bool:
    """A strict budget refused a reservation that does not fit even with nothing else in
    flight (consumed + estimate > limit): the budget is gone for this window and subject.
    Marks it exhausted (the 100% mark, once: alert, audit, runtimes told, as at 100%).
    Returns whether this call marked it. Called by the reservation path on such a refusal."""
    budget = Budget.objects.select_related("tenant").filter(pk=budget_id).first()
    if budget is None:
        return False
    with transaction.atomic():
        row = BudgetUsage.objects.filter(
            budget=budget, window_start=window_start, subject=subject
        ).first()
        if row is None:
            return False
        percent, _ = percent_used(budget, row)
        if not _mark(budget, window_start, subject, 100, percent):
            return False
        _, end = window_bounds(budget.window, window_start, budget.tenant.time_zone)
        why = f"{percent}% used and a step of {estimate} {metric.replace('_', ' ')} no longer fits"
        if budget.action != Action.ALERT:
            _announce(budget)  # before the alert's and the audit's chain lock (_evaluate)
        _crossed(budget, row, 100, percent, metric, window_start, end, no_room=why)
    return True


# --- window roll -----------------------------------------------------------------------------


def budgets_roll(*, now: datetime | None = None) -> int:
    """Re-announce every blocking or degrading budget whose exhausted window has ended, so
    runtimes un-block without a human (they also stop enforcing at ``resets_at`` on their
    own). Idempotent: each exhaustion mark is rolled once. Returns the budgets announced."""
    now = now or timezone.now()
    announced = 0
    pending = (
        BudgetMark.objects.filter(threshold=100, rolled=False)
        .exclude(budget__action=Action.ALERT)
        .select_related("budget__tenant")
    )
    by_budget: dict[int, list[BudgetMark]] = {}
    for mark in pending:
        by_budget.setdefault(mark.budget_id, []).append(mark)
    for marks in by_budget.values():
        budget = marks[0].budget
        start, _ = window_bounds(budget.window, now, budget.tenant.time_zone)
        ended = [mark.pk for mark in marks if mark.window_start < start]
        if not ended:
            continue
        with transaction.atomic():
            rolled = BudgetMark.objects.filter(pk__in=ended, rolled=False).update(rolled=True)
            if rolled:
                _announce(budget)  # before the audit's chain lock (_evaluate)
                audit_record(
                    actor=SYSTEM,
                    action="budget.window_reset",
                    target=budget,
                    tenant=budget.tenant,
                    after={"window_start": start.isoformat()},
                )
                announced += 1
    return announced
