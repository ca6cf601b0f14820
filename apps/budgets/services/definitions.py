"""Budget definitions: create, change, delete (operators), each authorised, audited, and
announced to the runtimes that list the budget."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from apps.audit.concurrency import version_check
from apps.audit.services import Actor, actor_identity, audit_record
from apps.core.authz import authorize
from apps.core.locks import lock_row
from apps.core.lookalike import hidden_character_message
from apps.telemetry.consumption import consumption_between
from apps.tenancy.models import Agent, Environment, Tenant

from ..models import (
    AGENT_SCOPES,
    DEFAULT_THRESHOLDS,
    METRICS,
    Action,
    Budget,
    BudgetMark,
    BudgetUsage,
    DegradeMode,
    Reservation,
    Scope,
    Window,
)
from ..windows import window_bounds
from ._common import MAX_COST, MAX_COUNT, _announce, _environment_ids, _number
from .consumption import _current_rows, _evaluate, _increment, percent_used

NAME_TAKEN = "A budget of this tenant already has this name (names differing only in case count)."


def budget_validate(*, tenant: Tenant, data: Mapping[str, Any]) -> dict[str, Any]:
    """Check a budget definition and return its model fields. ``data``: ``name``, ``scope``,
    ``agent`` (an ``Agent`` of ``tenant`` or None), ``environment`` (an ``Environment`` of
    ``tenant`` or None), ``window``, ``limits`` (``{metric: number|str|None}``), ``action``,
    ``degrade_mode``, ``degrade_model``, ``strict``, ``thresholds`` (list of whole percents),
    ``description``. Raises ``ValidationError`` keyed by field (``limits.cost_usd``)."""
    errors: dict[str, list[str]] = {}
    name = _text(data.get("name")).strip()
    hidden = hidden_character_message(name)
    # runs of spaces are one space: "daily  cap" is the name "daily cap" (taken if that is)
    name = " ".join(name.split())
    if not name:
        errors["name"] = ["Give the budget a name."]
    elif hidden:
        errors["name"] = [hidden]
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
    degrade_model = _text(data.get("degrade_model")).strip()
    if action == Action.DEGRADE:
        if degrade_mode not in DegradeMode.values:
            errors["degrade_mode"] = ["Degrade to draft_only or to a cheaper model."]
        elif degrade_mode == DegradeMode.MODEL and not degrade_model:
            errors["degrade_model"] = ["Name the cheaper model."]
        elif len(degrade_model) > 120:
            errors["degrade_model"] = ["At most 120 characters."]
        elif hidden_character_message(degrade_model):
            errors["degrade_model"] = [str(hidden_character_message(degrade_model))]
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
    description = _text(data.get("description"))
    if len(description) > 2000:
        errors["description"] = ["At most 2,000 characters."]
    elif any((ord(ch) < 32 and ch not in "\t\n\r") or ch == "\x7f" for ch in description):
        # NUL cannot be stored (PostgreSQL text), the others hide what a reader sees
        errors["description"] = ["No control characters (tabs and new lines are fine)."]
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


def _text(value: Any) -> str:
    """A text field's value: a string as sent, "" for None; any other type is not text, so
    it is no value at all (the field's own error then says what is missing)."""
    return value if isinstance(value, str) else ""


def _name_taken(tenant: Tenant, name: str, exclude: int | None = None) -> bool:
    # case-insensitive: "Daily" next to "daily" would be two budgets no one tells apart
    taken = Budget.objects.filter(tenant=tenant, name__iexact=name)
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
        raise ValidationError({"name": [NAME_TAKEN]})
    _, label = actor_identity(actor)
    try:
        with transaction.atomic():  # a savepoint: the same name created meanwhile is a 400
            budget = Budget.objects.create(tenant=tenant, updated_by_label=label, **fields)
    except IntegrityError:
        raise ValidationError({"name": [NAME_TAKEN]}) from None
    # The environments first (their row locks), the audit after: the audit chain's lock is
    # the last one a change takes (tenancy.services.environment_revisions_bump).
    _announce(budget)
    audit_record(
        actor=actor,
        action="budget.created",
        target=budget,
        tenant=tenant,
        reason=reason.strip(),
        after=budget.snapshot(),
    )
    now = timezone.now()
    _backfill(budget, now)
    _evaluate(budget, list(_current_rows(budget, now)), now, announced=True)
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
    # FOR NO KEY UPDATE of the budget alone: select_for_update() with select_related would
    # lock the tenant row FOR UPDATE too (apps.core.locks)
    locked = lock_row(Budget, budget.pk, related=("tenant",))
    version_check(
        what=f"The budget {locked.name}",
        expected=expected_version,
        current=locked.version,
        changed_by=locked.updated_by_label,
        changed_at=locked.updated_at,
    )
    if _name_taken(locked.tenant, fields["name"], exclude=locked.pk):
        raise ValidationError({"name": [NAME_TAKEN]})
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
    try:
        with transaction.atomic():
            locked.save()
    except IntegrityError:
        raise ValidationError({"name": [NAME_TAKEN]}) from None
    now = timezone.now()
    # The order of locks: the budget, its counters, the environments, the audit chain last
    # (_evaluate): the counters first, as ingestion takes them before it announces.
    if recount:
        start, _ = window_bounds(locked.window, now, locked.tenant.time_zone)
        # Reservations held on the old counters are dropped with them (rows first, then the
        # counters: the lock order of every writer): runtimes settle into nothing (404), and
        # their records count through telemetry as always. Left behind, a hold would later
        # be taken off the new counter, which never held it: room past the limit.
        Reservation.objects.filter(budget=locked).delete()
        BudgetUsage.objects.filter(budget=locked).delete()
        BudgetMark.objects.filter(budget=locked, window_start__gte=start).delete()
        _backfill(locked, now)
        rows = list(_current_rows(locked, now))
    else:
        rows = list(_current_rows(locked, now))
        # A limit raised: who is below it now is no longer at the limit (runtimes un-block on
        # this change's revision); the lower thresholds keep their marks (alerted once).
        start, _ = window_bounds(locked.window, now, locked.tenant.time_zone)
        below = [row.subject for row in rows if percent_used(locked, row)[0] < 100]
        BudgetMark.objects.filter(
            budget=locked, window_start=start, threshold=100, subject__in=below
        ).delete()
    _announce(locked, listed_before)
    _evaluate(locked, rows, now, announced=True)
    audit_record(
        actor=actor,
        action="budget.changed",
        target=locked,
        tenant=locked.tenant,
        reason=reason.strip(),
        before=before,
        after=locked.snapshot(),
    )
    return locked


@transaction.atomic
def budget_delete(
    *, actor: Actor, budget: Budget, reason: str = "", expected_version: int | None = None
) -> None:
    """Delete ``budget`` with its counters and reservations; runtimes stop enforcing it on the
    next revision. ``expected_version``: the version the caller read (None: no check).
    Raises ``PermissionDenied``, ``StaleVersion``."""
    authorize(actor, "budgets.delete_budget", budget.tenant)
    # FOR NO KEY UPDATE of the budget alone: select_for_update() with select_related would
    # lock the tenant row FOR UPDATE too (apps.core.locks)
    locked = lock_row(Budget, budget.pk, related=("tenant",))
    version_check(
        what=f"The budget {locked.name}",
        expected=expected_version,
        current=locked.version,
        changed_by=locked.updated_by_label,
        changed_at=locked.updated_at,
    )
    _announce(locked)  # announced after commit: the snapshots built then no longer list it
    audit_record(
        actor=actor,
        action="budget.deleted",
        target=locked,
        tenant=locked.tenant,
        reason=reason.strip(),
        before=locked.snapshot(),
    )
    locked.delete()


def _subject_by(budget: Budget) -> str:
    return {"tenant_agent": "agent", "end_user": "end_user"}.get(budget.scope, "")


def _backfill(budget: Budget, now: datetime) -> None:
    """Count what the budget's scope consumed in the current window before the budget (or its
    new definition) existed; the caller then announces and checks the thresholds
    (``_evaluate``), in that order (the audit chain's lock last). The whole window, as counting on
    ingest does (each record in the window of its own minute): a record dated a little ahead
    (ingest accepts up to ``TELEMETRY_MAX_FUTURE_S``) counts the same whether it arrived before
    the budget or after, and one dated in the next window is not counted in this one."""
    start, end = window_bounds(budget.window, now, budget.tenant.time_zone)
    spent = consumption_between(
        tenant_id=budget.tenant_id,
        start=start,
        end=end,
        environment_id=budget.environment_id,
        agent_id=budget.agent_id,
        by=_subject_by(budget),  # type: ignore[arg-type]
    )
    increments = {
        (budget.pk, start, subject): [c.cost_usd, c.tokens, c.requests, c.tool_calls]
        for subject, c in spent.items()
    }
    _increment(increments)
