"""Every change of budgets: definitions (operators), consumption (telemetry), reservations
(runtimes), threshold alerts and window rolls (docs/budgets.md, docs/decisions/0025).

Counting is exact under concurrency: consumption is added with one ``INSERT … ON CONFLICT DO
UPDATE SET x = x + excluded.x`` per counter row (PostgreSQL serialises the row, no lost
update), and a reservation is one conditional ``UPDATE … WHERE consumed + reserved + estimate
<= limit`` per strict budget inside one transaction, so a strict budget's consumed plus
reserved never passes its limit. Each threshold's alert fires once per window and subject: the
unique ``BudgetMark`` row whose insert wins is the one that raises it."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import structlog
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from apps.alerts.services import alert_raise
from apps.audit.concurrency import version_check
from apps.audit.services import Actor, actor_identity, audit_record
from apps.core.authz import SystemActor, authorize
from apps.core.events import TELEMETRY_INGESTED, Event, subscribe
from apps.telemetry.consumption import consumption_between
from apps.tenancy.models import Agent, Environment, Tenant
from apps.tenancy.services import environment_revision_bump

from .models import (
    AGENT_SCOPES,
    DEFAULT_THRESHOLDS,
    HELD,
    METRICS,
    Action,
    Budget,
    BudgetMark,
    BudgetUsage,
    DegradeMode,
    Reservation,
    ReservationStatus,
    Scope,
    Window,
)
from .windows import window_bounds

log = structlog.get_logger(__name__)
SYSTEM = SystemActor("system:budgets")
MAX_COST = Decimal("1000000000")  # 18 digits, 8 decimal places
MAX_COUNT = 10**15


# --- definitions -----------------------------------------------------------------------------


def _number(value: Any, *, decimal: bool) -> Decimal | int | None:
    """A limit or an amount from a form, JSON or the CLI: None when blank; raises ValueError."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise ValueError("not a number")
    if decimal:
        number = Decimal(str(value).strip())
        if not number.is_finite():
            raise ValueError("not a finite number")
        if number != number.quantize(Decimal("0.00000001")):
            raise ValueError("at most 8 decimal places")
        return number
    if isinstance(value, float) and not value.is_integer():
        raise ValueError("not a whole number")
    number = Decimal(str(value).strip())
    if not number.is_finite() or number != number.to_integral_value():
        raise ValueError("not a whole number")
    return int(number)


def budget_validate(*, tenant: Tenant, data: Mapping[str, Any]) -> dict[str, Any]:
    """Check a budget definition and return its model fields. ``data``: ``name``, ``scope``,
    ``agent`` (an ``Agent`` of ``tenant`` or None), ``environment`` (an ``Environment`` of
    ``tenant`` or None), ``window``, ``limits`` (``{metric: number|str|None}``), ``action``,
    ``degrade_mode``, ``degrade_model``, ``strict``, ``thresholds`` (list of whole percents),
    ``description``. Raises ``ValidationError`` keyed by field (``limits.cost_usd``)."""
    errors: dict[str, list[str]] = {}
    name = str(data.get("name") or "").strip()
    if not name:
        errors["name"] = ["Give the budget a name."]
    elif len(name) > 120:
        errors["name"] = ["At most 120 characters."]
    scope = data.get("scope")
    if scope not in Scope.values:
        errors["scope"] = [f"One of {', '.join(Scope.values)}."]
    agent = data.get("agent")
    if scope in AGENT_SCOPES:
        if not isinstance(agent, Agent):
            errors["agent"] = ["This scope needs an agent."]
        elif agent.tenant_id != tenant.pk or agent.archived_at is not None:
            errors["agent"] = ["No such agent in this tenant."]
    elif agent is not None:
        errors["agent"] = ["Only the agent and end-user scopes name an agent."]
        agent = None
    environment = data.get("environment")
    if environment is not None and (
        not isinstance(environment, Environment)
        or environment.tenant_id != tenant.pk
        or environment.archived_at is not None
    ):
        errors["environment"] = ["No such environment in this tenant."]
    window = data.get("window")
    if window not in Window.values:
        errors["window"] = [f"One of {', '.join(Window.values)}."]
    limits_in = data.get("limits") or {}
    limits: dict[str, Any] = {}
    if not isinstance(limits_in, Mapping):
        errors["limits"] = ["An object of cost_usd, tokens, requests, tool_calls."]
        limits_in = {}
    for key in limits_in:
        if key not in METRICS:
            errors.setdefault("limits", []).append(f"Unknown limit {key!r}.")
    for metric in METRICS:
        try:
            value = _number(limits_in.get(metric), decimal=metric == "cost_usd")
        except (ValueError, ArithmeticError) as exc:
            errors[f"limits.{metric}"] = [f"Enter a number ({exc})."]
            continue
        if value is not None and (
            value <= 0 or value >= (MAX_COST if metric == "cost_usd" else MAX_COUNT)
        ):
            errors[f"limits.{metric}"] = ["Must be above 0 and below 10^9 USD / 10^15."]
            continue
        limits[metric] = value
    if not any(value is not None for value in limits.values()) and not any(
        key.startswith("limits") for key in errors
    ):
        errors["limits"] = ["Set at least one limit: cost, tokens, requests or tool calls."]
    action = data.get("action") or Action.ALERT
    if action not in Action.values:
        errors["action"] = [f"One of {', '.join(Action.values)}."]
    degrade_mode = data.get("degrade_mode") or ""
    degrade_model = str(data.get("degrade_model") or "").strip()
    if action == Action.DEGRADE:
        if degrade_mode not in DegradeMode.values:
            errors["degrade_mode"] = ["Degrade to draft_only or to a cheaper model."]
        elif degrade_mode == DegradeMode.MODEL and not degrade_model:
            errors["degrade_model"] = ["Name the cheaper model."]
        elif len(degrade_model) > 120:
            errors["degrade_model"] = ["At most 120 characters."]
        if degrade_mode != DegradeMode.MODEL:
            degrade_model = ""
    else:
        degrade_mode, degrade_model = "", ""
    thresholds_in = data.get("thresholds")
    if thresholds_in is None or thresholds_in == "":
        thresholds_in = list(DEFAULT_THRESHOLDS)
    if isinstance(thresholds_in, str):
        thresholds_in = [part for part in thresholds_in.replace(" ", "").split(",") if part]
    thresholds: list[int] = []
    if not isinstance(thresholds_in, list | tuple) or len(thresholds_in) > 10:
        errors["thresholds"] = ["Up to 10 whole percentages, 1 to 100."]
    else:
        for value in thresholds_in:
            try:
                number = _number(value, decimal=False)
            except (ValueError, ArithmeticError):
                number = None
            if not isinstance(number, int) or not 1 <= number <= 100:
                errors["thresholds"] = ["Up to 10 whole percentages, 1 to 100."]
                break
            thresholds.append(number)
    strict = data.get("strict", False)
    if not isinstance(strict, bool):
        errors["strict"] = ["true or false."]
    description = str(data.get("description") or "")
    if len(description) > 2000:
        errors["description"] = ["At most 2,000 characters."]
    if errors:
        raise ValidationError(errors)
    return {
        "name": name,
        "scope": scope,
        "agent": agent if scope in AGENT_SCOPES else None,
        "environment": environment,
        "window": window,
        "limit_cost_usd": limits.get("cost_usd"),
        "limit_tokens": limits.get("tokens"),
        "limit_requests": limits.get("requests"),
        "limit_tool_calls": limits.get("tool_calls"),
        "action": action,
        "degrade_mode": degrade_mode,
        "degrade_model": degrade_model,
        "strict": strict,
        "thresholds": sorted(set(thresholds)),
        "description": description,
    }


def _environment_ids(budget: Budget) -> list[int]:
    if budget.environment_id is not None:
        return [budget.environment_id]
    return sorted(
        Environment.objects.filter(
            tenant_id=budget.tenant_id, archived_at__isnull=True
        ).values_list("pk", flat=True)
    )


def _announce(budget: Budget, environment_ids: Iterable[int] = ()) -> None:
    """Bump the revision of every environment whose snapshot lists ``budget`` (and of the
    extra ``environment_ids`` it was listed in before a change), in id order."""
    for environment_id in sorted(set(_environment_ids(budget)) | set(environment_ids)):
        environment_revision_bump(environment_id=environment_id)


def _name_taken(tenant: Tenant, name: str, exclude: int | None = None) -> bool:
    taken = Budget.objects.filter(tenant=tenant, name=name)
    if exclude is not None:
        taken = taken.exclude(pk=exclude)
    return taken.exists()


@transaction.atomic
def budget_create(
    *, actor: Actor, tenant: Tenant, data: Mapping[str, Any], reason: str = ""
) -> Budget:
    """Create a budget of ``tenant`` from ``data`` (see ``budget_validate``). It starts with
    what its scope already consumed in the current window (from telemetry), raises the
    thresholds that consumption has crossed, and appears in the snapshots of its
    environments (revision bumped). Raises ``ValidationError``, ``PermissionDenied``."""
    authorize(actor, "budgets.add_budget", tenant)
    fields = budget_validate(tenant=tenant, data=data)
    if _name_taken(tenant, fields["name"]):
        raise ValidationError({"name": ["A budget of this tenant already has this name."]})
    _, label = actor_identity(actor)
    budget = Budget.objects.create(tenant=tenant, updated_by_label=label, **fields)
    audit_record(
        actor=actor,
        action="budget.created",
        target=budget,
        tenant=tenant,
        reason=reason.strip(),
        after=budget.snapshot(),
    )
    _backfill(budget, timezone.now())
    _announce(budget)
    return budget


@transaction.atomic
def budget_update(
    *,
    actor: Actor,
    budget: Budget,
    data: Mapping[str, Any],
    expected_version: int | None = None,
    reason: str = "",
) -> Budget:
    """Replace the definition of ``budget`` with ``data`` (see ``budget_validate``). A change
    of scope, agent, environment or window recounts the current window from telemetry; a
    change of limits or thresholds keeps the counts and re-checks the thresholds. Raises
    ``ValidationError``, ``StaleVersion``, ``PermissionDenied``."""
    authorize(actor, "budgets.change_budget", budget.tenant)
    fields = budget_validate(tenant=budget.tenant, data=data)
    locked = Budget.objects.select_for_update().select_related("tenant").get(pk=budget.pk)
    version_check(
        what=f"The budget {locked.name}",
        expected=expected_version,
        current=locked.version,
        changed_by=locked.updated_by_label,
        changed_at=locked.updated_at,
    )
    if _name_taken(locked.tenant, fields["name"], exclude=locked.pk):
        raise ValidationError({"name": ["A budget of this tenant already has this name."]})
    before = locked.snapshot()
    listed_before = _environment_ids(locked)
    recount = any(
        getattr(locked, name) != fields[name]
        for name in ("scope", "agent", "environment", "window")
    )
    for name, value in fields.items():
        setattr(locked, name, value)
    locked.version += 1
    locked.updated_by_label = actor_identity(actor)[1]
    locked.save()
    audit_record(
        actor=actor,
        action="budget.changed",
        target=locked,
        tenant=locked.tenant,
        reason=reason.strip(),
        before=before,
        after=locked.snapshot(),
    )
    now = timezone.now()
    if recount:
        start, _ = window_bounds(locked.window, now, locked.tenant.time_zone)
        # Reservations held on the old counters are dropped with them: runtimes settle into
        # nothing (404), and their records count through telemetry as always.
        BudgetUsage.objects.filter(budget=locked).delete()
        BudgetMark.objects.filter(budget=locked, window_start__gte=start).delete()
        _backfill(locked, now)
    else:
        _evaluate(locked, list(_current_rows(locked, now)), now)
    _announce(locked, listed_before)
    return locked


@transaction.atomic
def budget_delete(
    *, actor: Actor, budget: Budget, reason: str = "", expected_version: int | None = None
) -> None:
    """Delete ``budget`` with its counters and reservations; runtimes stop enforcing it on the
    next revision. ``expected_version``: the version the caller read (None: no check).
    Raises ``PermissionDenied``, ``StaleVersion``."""
    authorize(actor, "budgets.delete_budget", budget.tenant)
    locked = Budget.objects.select_for_update().select_related("tenant").get(pk=budget.pk)
    version_check(
        what=f"The budget {locked.name}",
        expected=expected_version,
        current=locked.version,
        changed_by=locked.updated_by_label,
        changed_at=locked.updated_at,
    )
    listed = _environment_ids(locked)
    audit_record(
        actor=actor,
        action="budget.deleted",
        target=locked,
        tenant=locked.tenant,
        reason=reason.strip(),
        before=locked.snapshot(),
    )
    locked.delete()
    for environment_id in listed:
        environment_revision_bump(environment_id=environment_id)


def _subject_by(budget: Budget) -> str:
    return {"tenant_agent": "agent", "end_user": "end_user"}.get(budget.scope, "")


def _backfill(budget: Budget, now: datetime) -> None:
    """Count what the budget's scope consumed in the current window before the budget (or its
    new definition) existed, then check its thresholds."""
    start, _ = window_bounds(budget.window, now, budget.tenant.time_zone)
    spent = consumption_between(
        tenant_id=budget.tenant_id,
        start=start,
        end=now + timedelta(minutes=1),
        environment_id=budget.environment_id,
        agent_id=budget.agent_id,
        by=_subject_by(budget),  # type: ignore[arg-type]
    )
    increments = {
        (budget.pk, start, subject): [c.cost_usd, c.tokens, c.requests, c.tool_calls]
        for subject, c in spent.items()
    }
    _increment(increments)
    _evaluate(budget, list(_current_rows(budget, now)), now)


# --- consumption -----------------------------------------------------------------------------

Key = tuple[int, datetime, str]


def _increment(increments: Mapping[Key, Sequence[Any]]) -> None:
    """Add ``[cost, tokens, requests, tool_calls]`` to each counter row (created at need), in key
    order (two batches touching the same rows lock them in the same order: no deadlock)."""
    if not increments:
        return
    table = BudgetUsage._meta.db_table
    adapt = connection.ops.adapt_datetimefield_value
    rows = sorted(increments.items(), key=lambda item: (item[0][0], item[0][1], item[0][2]))
    with connection.cursor() as cursor:
        for start in range(0, len(rows), 200):
            chunk = rows[start : start + 200]
            params: list[Any] = []
            for (budget_id, window_start, subject), (cost, tokens, requests, tools) in chunk:
                params.extend(
                    (budget_id, adapt(window_start), subject, str(cost), tokens, requests, tools)
                )
            cursor.execute(
                f"INSERT INTO {table} (budget_id, window_start, subject, cost_usd, tokens, "  # noqa: S608 - table and column names are ours
                "requests, tool_calls, reserved_cost_usd, reserved_tokens, reserved_requests, "
                "reserved_tool_calls) VALUES "
                + ", ".join(["(%s, %s, %s, %s, %s, %s, %s, 0, 0, 0, 0)"] * len(chunk))
                + " ON CONFLICT (budget_id, window_start, subject) DO UPDATE SET "
                f"cost_usd = {table}.cost_usd + excluded.cost_usd, "
                f"tokens = {table}.tokens + excluded.tokens, "
                f"requests = {table}.requests + excluded.requests, "
                f"tool_calls = {table}.tool_calls + excluded.tool_calls",
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
    """Subscribe to telemetry (``AppConfig.ready``)."""
    subscribe(TELEMETRY_INGESTED, consumption_ingested)


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
        _increment(increments)
        if request_ids:
            _release(
                Reservation.objects.filter(
                    tenant_id=tenant_id, request_id__in=list(request_ids), status__in=HELD
                ),
                ReservationStatus.RELEASED,
            )
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


def _evaluate(budget: Budget, rows: Sequence[BudgetUsage], now: datetime) -> None:
    """Raise each threshold the rows (of the current window) crossed, once per window and
    subject; at 100% a blocking or degrading budget is exhausted: audited and announced."""
    time_zone = budget.tenant.time_zone
    start, end = window_bounds(budget.window, now, time_zone)
    exhausted = False
    for row in sorted(rows, key=lambda row: row.subject):
        percent, metric = percent_used(budget, row)
        levels = sorted(set(budget.thresholds) | {100})
        for threshold in levels:
            if percent < threshold or not _mark(budget, start, row.subject, threshold, percent):
                continue
            who = _subject_label(budget, row.subject)
            if threshold in budget.thresholds:
                at_limit = threshold >= 100
                alert_raise(
                    tenant=budget.tenant,
                    kind="budget.exhausted" if at_limit else "budget.threshold",
                    severity="critical" if at_limit else "warning",
                    title=f"Budget {budget.name}{who}: {threshold}% of the {budget.window}'s "
                    f"{metric.replace('_', ' ')} limit reached",
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
            if threshold >= 100 and budget.action != Action.ALERT:
                exhausted = True
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
                    },
                )
    if exhausted:
        _announce(budget)


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
                audit_record(
                    actor=SYSTEM,
                    action="budget.window_reset",
                    target=budget,
                    tenant=budget.tenant,
                    after={"window_start": start.isoformat()},
                )
                _announce(budget)
                announced += 1
    return announced


# --- reservations ----------------------------------------------------------------------------


@dataclass
class ReserveAnswer:
    """The answer to a reservation (docs/budgets.md): granted, or refused by the first strict
    budget whose limit it would pass (``refused_by``: id, name, metric, remaining, resets_at).
    ``budgets``: per strict budget in scope, what remains after this reservation."""

    reservation_id: str
    granted: bool
    expires_at: datetime | None = None
    refused_by: dict[str, Any] | None = None
    budgets: list[dict[str, Any]] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "reservation_id": self.reservation_id,
            "granted": self.granted,
            "budgets": self.budgets,
        }
        if self.granted:
            body["expires_at"] = self.expires_at.isoformat() if self.expires_at else None
        else:
            body["refused_by"] = self.refused_by
        return body


def _amounts(raw: Mapping[str, Any] | None, where: str) -> dict[str, Decimal | int]:
    """``{metric: amount}`` for the four metrics from a reserve/settle body; raises
    ``ValidationError`` keyed ``<where>.<metric>``."""
    errors: dict[str, list[str]] = {}
    amounts: dict[str, Decimal | int] = {}
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise ValidationError({where: ["An object of cost_usd, tokens, requests, tool_calls."]})
    for key in raw:
        if key not in METRICS:
            errors[f"{where}.{key}"] = ["Unknown metric: cost_usd, tokens, requests or tool_calls."]
    for metric in METRICS:
        try:
            value = _number(raw.get(metric), decimal=metric == "cost_usd")
        except (ValueError, ArithmeticError) as exc:
            errors[f"{where}.{metric}"] = [f"Enter a number ({exc})."]
            continue
        if value is None:
            value = Decimal(0) if metric == "cost_usd" else 0
        if value < 0 or value >= (MAX_COST if metric == "cost_usd" else MAX_COUNT):
            errors[f"{where}.{metric}"] = ["Must be 0 or more (and below 10^9)."]
            continue
        amounts[metric] = value
    if errors:
        raise ValidationError(errors)
    return amounts


def _in_scope(
    *, tenant_id: int, environment_id: int, agent: Agent, strict_only: bool
) -> list[Budget]:
    budgets = Budget.objects.filter(tenant_id=tenant_id).filter(
        Q(environment_id__isnull=True) | Q(environment_id=environment_id)
    )
    budgets = budgets.filter(Q(scope__in=(Scope.TENANT, Scope.TENANT_AGENT)) | Q(agent_id=agent.pk))
    if strict_only:
        budgets = budgets.filter(strict=True)
    return list(budgets.select_related("tenant").order_by("pk"))


def _subject(budget: Budget, agent: Agent, end_user_hash: str) -> str | None:
    if budget.scope == Scope.TENANT_AGENT:
        return str(agent.pk)
    if budget.scope == Scope.END_USER:
        return end_user_hash or None  # no end user: an end-user budget has nothing to hold
    return ""


def _remaining(budget: Budget, row: BudgetUsage) -> dict[str, str | int]:
    left: dict[str, str | int] = {}
    for metric, limit in budget.limits().items():
        if limit is not None:
            value = limit - getattr(row, metric) - getattr(row, f"reserved_{metric}")
            left[metric] = str(value) if metric == "cost_usd" else int(value)
    return left


def reservation_ttl() -> timedelta:
    return timedelta(seconds=float(settings.BUDGET_RESERVATION_TTL_S))


def budget_reserve(
    *,
    tenant_id: int,
    environment_id: int,
    agent: Agent,
    key: str,
    request_id: str = "",
    end_user_hash: str = "",
    estimate: Mapping[str, Any] | None = None,
    now: datetime | None = None,
) -> ReserveAnswer:
    """Hold ``estimate`` on every strict budget in scope (``agent`` of ``tenant_id`` in
    ``environment_id``, the end user), or on none: granted only if for each, consumed +
    reserved + estimate <= limit for every limited metric. Idempotent by ``key`` (a repeat
    of a granted reservation answers it again). Raises ``ValidationError`` for a bad
    estimate. Expired reservations of these budgets are released first."""
    amounts = _amounts(estimate, "estimate")
    now = now or timezone.now()
    budgets = _in_scope(
        tenant_id=tenant_id, environment_id=environment_id, agent=agent, strict_only=True
    )
    if not budgets:
        return ReserveAnswer(key, True, expires_at=now + reservation_ttl())
    existing = list(
        Reservation.objects.filter(tenant_id=tenant_id, key=key).select_related(
            "usage__budget__tenant"
        )
    )
    if existing:
        return ReserveAnswer(
            key,
            True,
            expires_at=existing[0].expires_at,
            budgets=[
                {"id": r.usage.budget_id, "remaining": _remaining(r.usage.budget, r.usage)}
                for r in existing
            ],
        )
    table = BudgetUsage._meta.db_table
    expires_at = now + reservation_ttl()
    with transaction.atomic():
        targets: list[tuple[Budget, str, datetime, datetime]] = []
        for budget in budgets:
            subject = _subject(budget, agent, end_user_hash)
            if subject is None:
                continue
            start, end = window_bounds(budget.window, now, budget.tenant.time_zone)
            targets.append((budget, subject, start, end))
        if targets:
            _increment({(b.pk, start, subject): [0, 0, 0, 0] for b, subject, start, _ in targets})
        _expire_due(
            Reservation.objects.filter(
                usage__budget_id__in=[b.pk for b, *_ in targets], expires_at__lte=now
            ),
        )
        held: list[tuple[Budget, BudgetUsage]] = []
        for budget, subject, start, end in targets:
            conditions: list[str] = []
            params: list[Any] = []
            sets = []
            for metric in METRICS:
                sets.append(f"reserved_{metric} = reserved_{metric} + %s")
            for metric, limit in budget.limits().items():
                if limit is not None:
                    conditions.append(f"{metric} + reserved_{metric} + %s <= %s")
                    params.extend((str(amounts[metric]), str(limit)))
            with connection.cursor() as cursor:
                cursor.execute(
                    f"UPDATE {table} SET {', '.join(sets)} WHERE budget_id = %s "  # noqa: S608 - table and column names are ours
                    "AND window_start = %s AND subject = %s"
                    + "".join(f" AND {condition}" for condition in conditions),
                    [str(amounts[metric]) for metric in METRICS]
                    + [budget.pk, connection.ops.adapt_datetimefield_value(start), subject]
                    + params,
                )
                updated = cursor.rowcount
            row = BudgetUsage.objects.get(budget=budget, window_start=start, subject=subject)
            if not updated:
                transaction.set_rollback(True)
                left = _remaining(budget, row)
                metric = next(
                    (
                        m
                        for m, limit in budget.limits().items()
                        if limit is not None
                        and getattr(row, m) + getattr(row, f"reserved_{m}") + amounts[m] > limit
                    ),
                    next(m for m, limit in budget.limits().items() if limit is not None),
                )
                return ReserveAnswer(
                    key,
                    False,
                    refused_by={
                        "id": budget.pk,
                        "name": budget.name,
                        "metric": metric,
                        "remaining": left.get(metric),
                        "resets_at": end.isoformat(),
                    },
                    budgets=[{"id": b.pk, "remaining": _remaining(b, r)} for b, r in held],
                )
            held.append((budget, row))
        Reservation.objects.bulk_create(
            [
                Reservation(
                    tenant_id=tenant_id,
                    key=key,
                    request_id=request_id,
                    usage=row,
                    expires_at=expires_at,
                    **amounts,
                )
                for _, row in held
            ]
        )
    return ReserveAnswer(
        key,
        True,
        expires_at=expires_at,
        budgets=[{"id": b.pk, "remaining": _remaining(b, r)} for b, r in held],
    )


@dataclass(frozen=True)
class SettleAnswer:
    reservation_id: str
    status: str
    duplicate: bool

    def as_json(self) -> dict[str, Any]:
        return {
            "reservation_id": self.reservation_id,
            "status": self.status,
            "duplicate": self.duplicate,
        }


class UnknownReservation(LookupError):
    """No reservation of this tenant has this id."""


def budget_settle(
    *,
    tenant_id: int,
    key: str,
    actual: Mapping[str, Any] | None,
    now: datetime | None = None,
) -> SettleAnswer:
    """Replace the estimate held by reservation ``key`` with the ``actual`` amounts, held
    until the request's record arrives (telemetry then counts it and releases the hold) or
    the TTL passes. Idempotent: a repeat answers ``duplicate`` and changes nothing; a
    reservation already released or expired answers its status. Raises
    ``UnknownReservation``, ``ValidationError`` for bad amounts."""
    amounts = _amounts(actual, "actual")
    now = now or timezone.now()
    with transaction.atomic():
        parts = list(
            Reservation.objects.select_for_update()
            .filter(tenant_id=tenant_id, key=key)
            .order_by("usage_id")
        )
        if not parts:
            raise UnknownReservation(key)
        if any(part.status != ReservationStatus.RESERVED for part in parts):
            status = parts[0].status
            return SettleAnswer(key, status, duplicate=status == ReservationStatus.SETTLED)
        table = BudgetUsage._meta.db_table
        for part in parts:
            with connection.cursor() as cursor:
                cursor.execute(
                    f"UPDATE {table} SET "  # noqa: S608 - table and column names are ours
                    + ", ".join(
                        f"reserved_{metric} = reserved_{metric} - %s + %s" for metric in METRICS
                    )
                    + " WHERE id = %s",
                    [
                        value
                        for metric in METRICS
                        for value in (str(getattr(part, metric)), str(amounts[metric]))
                    ]
                    + [part.usage_id],
                )
        Reservation.objects.filter(pk__in=[part.pk for part in parts]).update(
            status=ReservationStatus.SETTLED,
            settled_at=now,
            expires_at=now + reservation_ttl(),
            **amounts,
        )
    return SettleAnswer(key, ReservationStatus.SETTLED, duplicate=False)


def _release(reservations: Any, status: str) -> int:
    """Take the amounts of ``reservations`` (held ones) off their counters and mark them
    ``status``; inside the caller's transaction. Returns how many were released."""
    parts = list(reservations.select_for_update().filter(status__in=HELD).order_by("usage_id"))
    if not parts:
        return 0
    table = BudgetUsage._meta.db_table
    for part in parts:
        with connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE {table} SET "  # noqa: S608 - table and column names are ours
                + ", ".join(f"reserved_{metric} = reserved_{metric} - %s" for metric in METRICS)
                + " WHERE id = %s",
                [str(getattr(part, metric)) for metric in METRICS] + [part.usage_id],
            )
    Reservation.objects.filter(pk__in=[part.pk for part in parts]).update(status=status)
    return len(parts)


def _expire_due(reservations: Any) -> int:
    return _release(reservations, ReservationStatus.EXPIRED)


def reservations_expire(*, now: datetime | None = None) -> int:
    """Release every reservation or settled hold whose TTL has passed (the beat). Returns how
    many were released."""
    now = now or timezone.now()
    with transaction.atomic():
        return _expire_due(Reservation.objects.filter(expires_at__lte=now))


def reservations_purge(*, older_than: timedelta = timedelta(days=2)) -> int:
    """Delete released and expired reservations older than ``older_than`` (housekeeping)."""
    cutoff = timezone.now() - older_than
    deleted, _ = Reservation.objects.exclude(status__in=HELD).filter(created_at__lt=cutoff).delete()
    return deleted
