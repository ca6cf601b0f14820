"""How the Budgets pages word a budget's window: amounts in the metric's unit, the share of
the tightest limit, the state and the forecast ("projected to run out at 14:32"), times in
the tenant's zone."""

from __future__ import annotations

import zoneinfo
from dataclasses import dataclass
from datetime import datetime, tzinfo
from decimal import Decimal
from typing import Any

from .models import PER_SUBJECT_SCOPES, Action, Budget, Scope
from .selectors import BudgetStatus

METRIC_WORDS = {
    "cost_usd": "cost",
    "tokens": "tokens",
    "requests": "requests",
    "tool_calls": "tool calls",
}
SUBJECT_WORDS = {Scope.TENANT_AGENT.value: "agent", Scope.END_USER.value: "end user"}


def zone_of(time_zone: str) -> tzinfo:
    """The tenant's zone (UTC for a name the zone database does not know)."""
    try:
        return zoneinfo.ZoneInfo(time_zone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return zoneinfo.ZoneInfo("UTC")


def tenant_zone(budget: Budget) -> tzinfo:
    return zone_of(budget.tenant.time_zone)


def amount(metric: str, value: Any) -> str:
    """``$3.10`` for cost, ``1,234 tokens`` / ``20 tool calls`` / ``5 requests`` otherwise."""
    if value is None:
        return "—"
    if metric == "cost_usd":
        number = Decimal(value)
        return f"${number:,.2f}" if number >= Decimal("0.01") or number == 0 else f"${number:.6f}"
    return f"{int(value):,} {METRIC_WORDS.get(metric, metric)}"


def moment(when: datetime, zone: tzinfo, *, with_date: bool) -> str:
    local = when.astimezone(zone)
    return local.strftime("%b %d %H:%M") if with_date else local.strftime("%H:%M")


def scope_words(budget: Budget) -> str:
    """ "the whole tenant", "agent support-bot", "each agent", "each end user of support-bot"."""
    agent = budget.agent.slug if budget.agent is not None else "?"
    return {
        Scope.TENANT.value: "the whole tenant",
        Scope.AGENT.value: f"agent {agent}",
        Scope.TENANT_AGENT.value: "each agent",
        Scope.END_USER.value: f"each end user of {agent}",
    }[budget.scope]


def action_words(budget: Budget) -> str:
    if budget.action == Action.BLOCK:
        return "blocks new requests"
    if budget.action == Action.DEGRADE:
        if budget.degrade_mode == "model":
            return f"degrades to {budget.degrade_model}"
        return "degrades to draft only"
    return "alerts only"


@dataclass(frozen=True)
class WindowView:
    """One budget's current window as the list and the detail page show it."""

    budget: Budget
    status: BudgetStatus
    percent: float  # 0-100, for the progress bar
    used: str  # "$3.10 of $5.00 (cost)"
    state: str  # "ok" / "exhausted"
    state_words: str  # "ok" / "exhausted: blocks new requests"
    state_class: str  # badge class: ok / warn / bad
    forecast: str
    per_subject: bool
    subject_word: str


def window_view(budget: Budget, status: BudgetStatus, now: datetime) -> WindowView:
    """The words and numbers of ``status`` for the pages."""
    zone = tenant_zone(budget)
    metric = status.metric
    limit = budget.limits().get(metric)
    per_subject = budget.scope in PER_SUBJECT_SCOPES
    with_date = (status.resets_at - status.window_start).total_seconds() > 86400
    if per_subject:
        worst = Decimal(limit or 0) * status.percent / 100
        used = (
            f"busiest {SUBJECT_WORDS[budget.scope]}: {amount(metric, worst)} of "
            f"{amount(metric, limit)}"
        )
    else:
        used = f"{amount(metric, status.consumed[metric])} of {amount(metric, limit)}"
    exhausted = status.state == "exhausted"
    if exhausted:
        state_words = f"exhausted: {action_words(budget)}"
        if per_subject:
            count = len(status.exhausted_subjects)
            state_words = (
                f"{count} {SUBJECT_WORDS[budget.scope]}{'s' if count != 1 else ''} at the "
                f"limit: {action_words(budget)}"
            )
        state_class = "bad"
    elif status.percent >= 80:
        state_words, state_class = "ok, close to the limit", "warn"
    else:
        state_words, state_class = "ok", "ok"
    resets = moment(status.resets_at, zone, with_date=with_date)
    if exhausted and not per_subject:
        forecast = f"resets at {resets}"
    elif status.exhausts_at is not None:
        who = f"the busiest {SUBJECT_WORDS[budget.scope]} " if per_subject else ""
        forecast = (
            f"{who}projected to run out at {moment(status.exhausts_at, zone, with_date=with_date)}"
        )
    elif per_subject:
        forecast = (
            f"no {SUBJECT_WORDS[budget.scope]} projected to reach the limit; resets at {resets}"
        )
    else:
        projected = status.projected[metric]
        forecast = (
            f"projected {amount(metric, projected)} of {amount(metric, limit)} at the window's "
            f"end ({resets})"
        )
    return WindowView(
        budget=budget,
        status=status,
        percent=float(min(status.percent, Decimal(100))),
        used=used,
        state=status.state,
        state_words=state_words,
        state_class=state_class,
        forecast=forecast,
        per_subject=per_subject,
        subject_word=SUBJECT_WORDS.get(budget.scope, ""),
    )
