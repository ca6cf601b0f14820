"""Reads of budgets: the snapshot's ``budgets`` document (docs/budgets.md) and what the Budgets
pages and the API show (state, consumption, forecast)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db.models import Max, Q, QuerySet
from django.utils import timezone

from apps.alerts.models import Alert
from apps.core.authz import VIEW, AnyUser, restrict
from apps.tenancy.models import Agent

from .models import METRICS, PER_SUBJECT_SCOPES, Budget, BudgetMark, BudgetUsage, Scope
from .windows import window_bounds


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def exhausted(budget: Budget, row: BudgetUsage) -> bool:
    """Some limit of ``budget`` is reached by ``row``'s consumption (reservations aside)."""
    return any(
        limit is not None and getattr(row, metric) >= limit
        for metric, limit in budget.limits().items()
    )


def exhausted_subjects(budget: Budget, rows: list[BudgetUsage], start: datetime) -> list[str]:
    """The subjects of the window starting ``start`` at the limit: consumption reached it, or
    the 100% mark says so (a strict budget with no room left for a step), sorted."""
    marked = set(
        BudgetMark.objects.filter(budget=budget, window_start=start, threshold=100).values_list(
            "subject", flat=True
        )
    )
    return sorted(marked | {row.subject for row in rows if exhausted(budget, row)})


def budgets_for_snapshot(
    *, tenant_id: int, environment_id: int, agent_id: int | None, now: datetime | None = None
) -> list[dict[str, Any]]:
    """The snapshot's ``budgets``: every budget of the tenant that applies to the environment
    (and to the token's agent when it names one), with its state in the current window."""
    now = now or timezone.now()
    budgets = Budget.objects.filter(tenant_id=tenant_id).filter(
        Q(environment_id__isnull=True) | Q(environment_id=environment_id)
    )
    if agent_id is not None:
        budgets = budgets.filter(
            Q(scope__in=(Scope.TENANT, Scope.TENANT_AGENT)) | Q(agent_id=agent_id)
        )
    documents = []
    agent_slugs: dict[str, str] | None = None
    for budget in budgets.select_related("tenant", "agent").order_by("pk"):
        start, end = window_bounds(budget.window, now, budget.tenant.time_zone)
        rows = BudgetUsage.objects.filter(budget=budget, window_start=start)
        if budget.scope in PER_SUBJECT_SCOPES:
            subjects = exhausted_subjects(budget, list(rows), start)
            if budget.scope == Scope.TENANT_AGENT and subjects:
                if agent_slugs is None:
                    agent_slugs = {
                        str(pk): slug
                        for pk, slug in Agent.objects.filter(tenant_id=tenant_id).values_list(
                            "pk", "slug"
                        )
                    }
                subjects = sorted(agent_slugs.get(subject, subject) for subject in subjects)
            state = "ok"
        else:
            subjects = []
            state = "exhausted" if exhausted_subjects(budget, list(rows), start) else "ok"
        documents.append(
            {
                "id": budget.pk,
                "name": budget.name,
                "scope": budget.scope,
                "agent": budget.agent.slug if budget.agent is not None else None,
                "window": budget.window,
                "window_start": _iso(start),
                "resets_at": _iso(end),
                "limits": {
                    metric: (
                        None
                        if value is None
                        else (
                            format(value.normalize(), "f") if isinstance(value, Decimal) else value
                        )
                    )
                    for metric, value in budget.limits().items()
                },
                "action": budget.action,
                "degrade": (
                    None
                    if budget.action != "degrade"
                    else (
                        {"mode": "model", "model": budget.degrade_model}
                        if budget.degrade_mode == "model"
                        else {"mode": budget.degrade_mode}
                    )
                ),
                "strict": budget.strict,
                "state": state,
                "exhausted_subjects": subjects,
            }
        )
    return documents


def budget_list_for_user(
    *, user: AnyUser, tenant_ids: list[int] | None = None, action: str = VIEW
) -> QuerySet[Budget]:
    """Budgets of the tenants ``user`` may ``action`` (``view`` by default; optionally
    narrowed to ``tenant_ids``)."""
    budgets = restrict(
        Budget.objects.select_related("tenant", "agent", "environment"), user, action
    )
    if tenant_ids is not None:
        budgets = budgets.filter(tenant_id__in=tenant_ids)
    return budgets.order_by("tenant__name", "name")


def budget_get_for_user(*, user: AnyUser, pk: int, action: str = VIEW) -> Budget:
    """One budget ``user`` may ``action``; ``Budget.DoesNotExist`` otherwise (a 404)."""
    return budget_list_for_user(user=user, action=action).get(pk=pk)


@dataclass(frozen=True)
class BudgetStatus:
    """A budget in its current window: totals over subjects (``consumed``, ``reserved``), the
    highest share of a limit used by any subject (``percent``, its ``metric``), subjects at
    the limit, the window bounds, and a linear forecast of the window's end from the rate so
    far (``projected``: per metric; ``exhausts_at``: when the limit is reached at that rate,
    None if it is not within the window)."""

    budget: Budget
    window_start: datetime
    resets_at: datetime
    consumed: dict[str, Decimal | int]
    reserved: dict[str, Decimal | int]
    percent: Decimal
    metric: str
    subjects: int
    exhausted_subjects: list[str]
    projected: dict[str, Decimal]
    exhausts_at: datetime | None

    @property
    def state(self) -> str:
        return "exhausted" if self.exhausted_subjects else "ok"


def budget_status(budget: Budget, *, now: datetime | None = None) -> BudgetStatus:
    """The current window of ``budget`` (see ``BudgetStatus``)."""
    from .services import percent_used  # the one definition of "share of a limit used"

    now = now or timezone.now()
    start, end = window_bounds(budget.window, now, budget.tenant.time_zone)
    rows = list(BudgetUsage.objects.filter(budget=budget, window_start=start))
    consumed: dict[str, Decimal | int] = {
        m: (Decimal(0) if m == "cost_usd" else 0) for m in METRICS
    }
    reserved = dict(consumed)
    best, best_metric, worst_row = Decimal(0), "", None
    for row in rows:
        for metric in METRICS:
            consumed[metric] += getattr(row, metric)
            reserved[metric] += getattr(row, f"reserved_{metric}")
        percent, metric = percent_used(budget, row)
        if worst_row is None or percent > best:
            best, best_metric, worst_row = percent, metric, row
    if not best_metric:
        best_metric = next((m for m, v in budget.limits().items() if v is not None), "cost_usd")
    elapsed = max((now - start).total_seconds(), 1.0)
    length = (end - start).total_seconds()
    projected = {
        metric: (Decimal(consumed[metric]) * Decimal(length) / Decimal(elapsed)).quantize(
            Decimal("0.0001")
        )
        for metric in METRICS
    }
    exhausts_at = None
    limit = budget.limits().get(best_metric)
    if worst_row is not None and limit:
        used = Decimal(getattr(worst_row, best_metric))
        if used >= limit:
            exhausts_at = None
        elif used > 0:
            rate = used / Decimal(elapsed)  # per second, the worst subject's
            seconds = float((Decimal(limit) - used) / rate)
            candidate = now + timedelta(seconds=seconds)
            exhausts_at = candidate if candidate < end else None
    at_limit = exhausted_subjects(budget, rows, start)
    if budget.scope not in PER_SUBJECT_SCOPES and at_limit:
        at_limit = [""]
    return BudgetStatus(
        budget=budget,
        window_start=start,
        resets_at=end,
        consumed=consumed,
        reserved=reserved,
        percent=best,
        metric=best_metric,
        subjects=len(rows),
        exhausted_subjects=at_limit,
        projected=projected,
        exhausts_at=exhausts_at,
    )


def budget_marks(budget: Budget, *, limit: int = 50) -> list[BudgetMark]:
    """The thresholds crossed, newest first (the budget's alert history)."""
    return list(BudgetMark.objects.filter(budget=budget).order_by("-created_at", "-pk")[:limit])


def budget_usage_rows(budget: Budget, *, now: datetime | None = None) -> list[BudgetUsage]:
    """The counters of the current window, biggest spender first (per-subject budgets)."""
    now = now or timezone.now()
    start, _ = window_bounds(budget.window, now, budget.tenant.time_zone)
    return list(
        BudgetUsage.objects.filter(budget=budget, window_start=start).order_by(
            "-cost_usd", "-tokens", "-requests", "subject"
        )
    )


def budget_definition(budget: Budget) -> dict[str, Any]:
    """The current definition of ``budget`` in the shape ``services.budget_validate`` reads
    (``agent`` and ``environment`` as objects, ``limits`` by metric): what a partial change
    starts from."""
    return {
        "name": budget.name,
        "scope": budget.scope,
        "agent": budget.agent,
        "environment": budget.environment,
        "window": budget.window,
        "limits": budget.limits(),
        "action": budget.action,
        "degrade_mode": budget.degrade_mode,
        "degrade_model": budget.degrade_model,
        "strict": budget.strict,
        "thresholds": list(budget.thresholds),
        "description": budget.description,
    }


def subject_labels(budget: Budget, subjects: list[str]) -> dict[str, str]:
    """What an operator calls each counter subject of ``budget``: the agent's slug for
    ``tenant_agent`` (subjects are agent ids), the end-user hash as it is for ``end_user``,
    "" for the single counter of the other scopes."""
    if budget.scope != Scope.TENANT_AGENT:
        return {subject: subject for subject in subjects}
    ids = [int(subject) for subject in subjects if subject.isascii() and subject.isdigit()]
    slugs = {
        str(pk): slug
        for pk, slug in Agent.objects.filter(tenant_id=budget.tenant_id, pk__in=ids).values_list(
            "pk", "slug"
        )
    }
    return {subject: slugs.get(subject, subject) for subject in subjects}


def budget_alerts(budget: Budget, *, limit: int = 50) -> QuerySet[Alert]:
    """The alerts the budget raised (kinds ``budget.*``), newest first."""
    return Alert.objects.filter(
        tenant_id=budget.tenant_id,
        kind__startswith="budget.",
        subject_type="budgets.budget",
        subject_id=str(budget.pk),
    ).order_by("-created_at", "-pk")[:limit]


def budget_scope(budget: Budget) -> dict[str, int | None]:
    """The telemetry filters of the budget's scope: ``tenant_id``, ``environment_id`` and
    ``agent_id`` (None: every one), as ``apps.telemetry.consumption`` takes them."""
    return {
        "tenant_id": budget.tenant_id,
        "environment_id": budget.environment_id,
        "agent_id": budget.agent_id,
    }


# --------------------------------------------------------------------------- the overview


@dataclass(frozen=True)
class BudgetBurn:
    """How much of ``budget``'s current window one agent in one environment has used:
    ``percent`` of its tightest limit (``metric``; for a per-end-user budget, the biggest
    spender's), beside ``elapsed_percent`` of the window gone: burning faster than time
    passes when ``percent > elapsed_percent``."""

    budget: Budget
    percent: Decimal
    metric: str
    elapsed_percent: Decimal
    resets_at: datetime

    @property
    def exhausted(self) -> bool:
        return self.percent >= 100

    @property
    def ahead_of_time(self) -> bool:
        return self.percent > self.elapsed_percent


def _applies(budget: Budget, agent_id: int, environment_id: int) -> bool:
    if budget.environment_id is not None and budget.environment_id != environment_id:
        return False
    return budget.agent_id is None or budget.agent_id == agent_id


def budget_burn_for(
    *,
    user: AnyUser,
    tenant_id: int,
    agent_ids: list[int],
    environment_ids: list[int],
    now: datetime | None = None,
) -> dict[tuple[int, int], BudgetBurn]:
    """(agent id, environment id) -> the burn of the budget of the tenant that is closest to
    its limit among those that apply to that agent there (``BudgetBurn``); pairs no budget
    applies to are absent. Three queries whatever the number of pairs and budgets: the
    budgets, the current windows' counters of whole-scope and per-agent budgets, the biggest
    spender of per-end-user ones."""
    from .services import percent_used  # the one definition of "share of a limit used"

    now = now or timezone.now()
    budgets = list(budget_list_for_user(user=user, tenant_ids=[tenant_id]))
    if not budgets:
        return {}
    bounds = {b.pk: window_bounds(b.window, now, b.tenant.time_zone) for b in budgets}
    starts = {start for start, _ in bounds.values()}
    usage: dict[tuple[int, str], BudgetUsage] = {}
    shared = [b.pk for b in budgets if b.scope != Scope.END_USER]
    for row in BudgetUsage.objects.filter(budget_id__in=shared, window_start__in=starts):
        if row.window_start == bounds[row.budget_id][0]:
            usage[(row.budget_id, row.subject)] = row
    per_user = [b.pk for b in budgets if b.scope == Scope.END_USER]
    if per_user:
        worst = (
            BudgetUsage.objects.filter(budget_id__in=per_user, window_start__in=starts)
            .values("budget_id", "window_start")
            .annotate(**{f"top_{m}": Max(m) for m in METRICS})
            .order_by()
        )
        for top in worst:
            tops: dict[str, Any] = dict(top)
            if tops["window_start"] == bounds[tops["budget_id"]][0]:
                usage[(tops["budget_id"], "*")] = BudgetUsage(
                    budget_id=tops["budget_id"], **{m: tops[f"top_{m}"] for m in METRICS}
                )
    result: dict[tuple[int, int], BudgetBurn] = {}
    for budget in budgets:
        start, end = bounds[budget.pk]
        elapsed = Decimal((now - start) / (end - start) * 100).quantize(Decimal("0.1"))
        for agent_id in agent_ids:
            subject = {Scope.TENANT_AGENT: str(agent_id), Scope.END_USER: "*"}.get(
                Scope(budget.scope), ""
            )
            percent, metric = percent_used(budget, usage.get((budget.pk, subject)))
            for environment_id in environment_ids:
                if not _applies(budget, agent_id, environment_id):
                    continue
                held = result.get((agent_id, environment_id))
                if held is None or percent > held.percent:
                    result[(agent_id, environment_id)] = BudgetBurn(
                        budget, percent, metric or "cost_usd", elapsed, end
                    )
    return result
