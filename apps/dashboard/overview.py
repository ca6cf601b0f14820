"""What the Overview shows, composed from the owning apps' selectors (the dashboard owns no
data and nothing imports it): one row per agent x environment and the incident timeline.

Every read is a fixed number of queries for all rows together (no per-row query: the count
is asserted in tests/dashboard/test_overview.py), and telemetry comes from rollups only
(minute sums in SQL, hour sketches for p95; never raw records)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, cast

from django.core.cache import cache
from django.db.models import Q
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.utils.safestring import SafeString, mark_safe

from apps.alerts.selectors import alert_list_for_user
from apps.approvals.selectors import PendingSummary, pending_by_agent_environment
from apps.budgets.selectors import BudgetBurn, budget_burn_for
from apps.core.authz import AnyUser, user_may, visible_tenants_once
from apps.flags.models import KillSwitch
from apps.flags.selectors import kill_switch_list_for_user, kill_switch_reaches
from apps.rollouts.selectors import (
    CurrentDeployment,
    RolloutSummary,
    deployments_current_for,
    rollouts_active_for,
)
from apps.runtimes.selectors import convergence_for, nack_storms
from apps.telemetry.selectors import Health, overview_health
from apps.tenancy.models import Agent, Environment, Tenant
from apps.tenancy.selectors import agent_list_for_user, environment_list_for_user

from .rows import row_html
from .sparklines import sparkline

TELEMETRY_PERMISSION = "telemetry.view_requestrecord"
HEALTH_CACHE_S = 90  # keys carry the minute: a new minute computes afresh
TIMELINE_WINDOW = timedelta(hours=24)
TIMELINE_LIMIT = 40
# Alerts the timeline shows: what the analysis did on its own, budgets crossing a threshold,
# approvals nobody decided in time (each alert links to its cause).
TIMELINE_ALERT_KINDS = {
    "rollout.rolled_back": ("Automatic rollback", "bad"),
    "rollout.paused": ("Rollout paused", "warn"),
    "budget.exhausted": ("Budget exhausted", "bad"),
    "budget.threshold": ("Budget alert", "warn"),
    "approval.expired": ("Approval expired", "warn"),
}


def _fmt(value: float | Decimal | None, pattern: str) -> str:
    return "no traffic" if value is None else pattern.format(value)


@dataclass
class HealthView:
    """The four health metrics of a row, each a headline value (text) and a sparkline: only
    strings, so the minute's cached copy is small to load."""

    cells: list[tuple[str, str, SafeString]] = field(default_factory=list)  # name, text, svg


def health_view(health: Health, *, subject: str) -> HealthView:
    """The request rate, error rate, p95 latency and cost per request of ``health`` as text
    and sparklines (5-minute steps over the hour). The latency line is the mean per step:
    the p95 beside it comes from the hour sketches (see ``overview_health``)."""
    points = health.points
    rate = [p.requests / (health.step.total_seconds() / 60) for p in points]
    errors = [p.error_rate for p in points]
    latency = [p.latency_mean_ms for p in points]
    cost = [float(p.cost_per_request) if p.cost_per_request is not None else None for p in points]
    steps = f"{int(health.step.total_seconds() // 60)}-minute steps over the last hour"

    def listing(values: Sequence[float | None], pattern: str) -> str:
        return ", ".join("none" if v is None else pattern.format(v) for v in values)

    view = HealthView()
    view.cells = [
        (
            "Requests",
            f"{health.request_rate_per_min:.1f}/min",
            sparkline(
                rate,
                label=f"Requests per minute of {subject}, {steps}",
                summary=listing(rate, "{:.1f}"),
            ),
        ),
        (
            "Errors",
            _fmt(health.error_rate * 100 if health.error_rate is not None else None, "{:.1f}%"),
            sparkline(
                errors,
                label=f"Error rate of {subject}, {steps}",
                summary=listing([e * 100 if e is not None else None for e in errors], "{:.1f}%"),
            ),
        ),
        (
            "p95",
            _fmt(health.p95_ms, "{:.0f} ms"),
            sparkline(
                latency,
                label=f"Mean latency of {subject}, {steps}",
                summary=listing(latency, "{:.0f} ms"),
            ),
        ),
        (
            "Cost/request",
            _fmt(health.cost_per_request, "${:.4f}"),
            sparkline(
                cost,
                label=f"Cost per request of {subject} in USD, {steps}",
                summary=listing(cost, "${:.4f}"),
            ),
        ),
    ]
    return view


def health_views(
    *, tenant: Tenant, agents: list[Agent], environments: list[Environment], now: datetime
) -> dict[tuple[int, int], HealthView]:
    """(agent id, environment id) -> its ``HealthView``, computed once a minute per tenant
    and set of rows and kept in the cache for ``HEALTH_CACHE_S``: every open Overview polls
    every ``LIVE_SECONDS`` and the sums change by the minute, so one computation serves them
    all (the figures are at most a minute behind; the page says as of when). A cache that
    does not answer (Redis down) only costs the computation."""
    rows = sorted((a.pk, e.pk) for a in agents for e in environments)
    digest = hashlib.sha256(repr(rows).encode()).hexdigest()[:16]
    key = f"dashboard:health:{tenant.pk}:{now:%Y%m%d%H%M}:{digest}"
    cached = cache.get(key)
    if cached is not None:
        return cast("dict[tuple[int, int], HealthView]", cached)
    found = overview_health(
        tenant=tenant,
        agent_ids=[a.pk for a in agents],
        environment_ids=[e.pk for e in environments],
        now=now,
    )
    names = {(a.pk, e.pk): f"{a.name} in {e.name}" for a in agents for e in environments}
    views = {pair: health_view(h, subject=names[pair]) for pair, h in found.items()}
    cache.set(key, views, HEALTH_CACHE_S)
    return views


@dataclass
class Row:
    """One agent in one environment, everything its Overview row shows."""

    agent: Agent
    environment: Environment
    stable: CurrentDeployment | None
    rollout: RolloutSummary | None
    health: HealthView | None  # None: the user may not read telemetry
    burn: BudgetBurn | None
    pending: PendingSummary | None
    kill_switches: list[str]  # the engaged kill switches reaching the row, by name
    convergence: str  # the environment's convergence badge (HTML)


@dataclass(frozen=True)
class TimelineEntry:
    """One thing that happened: when, what (``kind`` in the operator's words, ``tone`` for
    the badge: bad, warn, neutral), a title, and the page of its cause."""

    at: datetime
    kind: str
    tone: str
    title: str
    link: str


def kill_switches_recent(*, user: AnyUser, tenant: Tenant, now: datetime) -> list[KillSwitch]:
    """The tenant's (and global) kill switches engaged now or within ``TIMELINE_WINDOW``,
    newest first: one query for both the rows (engaged ones) and the timeline."""
    return list(
        kill_switch_list_for_user(user=user, tenant_id=tenant.pk).filter(
            Q(released_at__isnull=True) | Q(engaged_at__gte=now - TIMELINE_WINDOW)
        )
    )


def overview_rows(
    *,
    user: AnyUser,
    tenant: Tenant,
    now: datetime | None = None,
    switches: list[KillSwitch] | None = None,
) -> tuple[list[Row], list[Agent], list[Environment]]:
    """The rows of the Overview (agents by name, then environments in promotion order), the
    agents and the environments; a fixed number of queries for any number of rows.
    ``switches``: from ``kill_switches_recent`` when the caller has them already."""
    now = now or timezone.now()
    if switches is None:
        switches = kill_switches_recent(user=user, tenant=tenant, now=now)
    engaged = [s for s in switches if s.released_at is None]
    agents = list(agent_list_for_user(user=user, tenant=tenant).order_by("name", "pk"))
    environments = list(environment_list_for_user(user=user, tenant=tenant))
    if not agents or not environments:
        return [], agents, environments
    agent_ids = [a.pk for a in agents]
    environment_ids = [e.pk for e in environments]
    stable = deployments_current_for(environment_ids=environment_ids)
    rollouts = rollouts_active_for(environment_ids=environment_ids)
    health = (
        health_views(tenant=tenant, agents=agents, environments=environments, now=now)
        if user_may(user, TELEMETRY_PERMISSION)
        else {}
    )
    burns = budget_burn_for(
        user=user,
        tenant_id=tenant.pk,
        agent_ids=agent_ids,
        environment_ids=environment_ids,
        now=now,
    )
    pending = pending_by_agent_environment(user, tenant_id=tenant.pk)
    # the badge is the same on every row of an environment: drawn once per environment
    convergence = {
        c.environment.pk: render_to_string("runtimes/_convergence_badge.html", {"c": c})
        for c in convergence_for(environments=environments)
    }
    switch_names = {s.pk: str(s) for s in engaged}  # worded once, shown on many rows
    rows = []
    for agent in agents:
        for environment in environments:
            key = (agent.pk, environment.pk)
            rows.append(
                Row(
                    agent=agent,
                    environment=environment,
                    stable=stable.get(key),
                    rollout=rollouts.get(key),
                    health=health.get(key),
                    burn=burns.get(key),
                    pending=pending.get(key),
                    kill_switches=[
                        switch_names[s.pk]
                        for s in engaged
                        if kill_switch_reaches(s, agent_id=agent.pk, environment=environment)
                    ],
                    convergence=mark_safe(convergence.get(environment.pk, "")),  # noqa: S308 - rendered by a template
                )
            )
    return rows, agents, environments


def incident_timeline(
    *,
    user: AnyUser,
    tenant: Tenant,
    environments: list[Environment],
    now: datetime | None = None,
    switches: list[KillSwitch] | None = None,
) -> list[TimelineEntry]:
    """What went wrong in the tenant over the last ``TIMELINE_WINDOW``, newest first, at most
    ``TIMELINE_LIMIT``: automatic rollbacks and pauses, budget alerts and expired approvals
    (their alerts, which link to the rollout, budget or request), kill switches engaged
    (linked to the kill switch page) and NACK storms (linked to the environment's runtimes).
    Read from the records those events already leave (alerts, kill switches, the audit log):
    three queries at most (four without ``switches``)."""
    now = now or timezone.now()
    since = now - TIMELINE_WINDOW
    entries: list[TimelineEntry] = []
    alerts = alert_list_for_user(user=user, tenant_ids=[tenant.pk]).filter(
        kind__in=list(TIMELINE_ALERT_KINDS), created_at__gte=since
    )[:TIMELINE_LIMIT]
    for alert in alerts:
        kind, tone = TIMELINE_ALERT_KINDS[alert.kind]
        entries.append(
            TimelineEntry(alert.created_at, kind, tone, alert.title, alert.link or _alerts_url())
        )
    if switches is None:
        switches = kill_switches_recent(user=user, tenant=tenant, now=now)
    engaged = [s for s in switches if s.engaged_at >= since][:TIMELINE_LIMIT]
    kill_page = reverse("flags:kill_switch_list")
    for switch in engaged:
        still = " (still engaged)" if switch.released_at is None else " (released since)"
        entries.append(
            TimelineEntry(
                switch.engaged_at,
                "Kill switch engaged",
                "bad" if switch.released_at is None else "neutral",
                f"{switch}{still}: {switch.reason}",
                f"{kill_page}#kill-switch-{switch.pk}" if switch.released_at is None else kill_page,
            )
        )
    names = {e.pk: e for e in environments}
    runtimes_page = reverse("runtimes:overview")
    for storm in nack_storms(tenant_id=tenant.pk, since=since):
        environment = names.get(storm.environment_id)
        if environment is None:  # an environment this user does not see
            continue
        entries.append(
            TimelineEntry(
                storm.last_at,
                "NACK storm",
                "bad",
                f"{storm.runtimes} runtimes in {environment.name} refused revision "
                f"{storm.revision}" + (f": {storm.error[:120]}" if storm.error else ""),
                f"{runtimes_page}#environment-{environment.pk}",
            )
        )
    entries.sort(key=lambda e: e.at, reverse=True)
    return entries[:TIMELINE_LIMIT]


def _alerts_url() -> str:
    return reverse("alerts:list")


def overview_context(*, user: AnyUser, tenant: Tenant) -> dict[str, Any]:
    """Everything the Overview's live part renders: rows, timeline, when it was read."""
    with visible_tenants_once():  # one user, a dozen selectors: their tenants worked out once
        return _overview_context(user=user, tenant=tenant)


def _overview_context(*, user: AnyUser, tenant: Tenant) -> dict[str, Any]:
    now = timezone.now()
    switches = kill_switches_recent(user=user, tenant=tenant, now=now)
    rows, agents, environments = overview_rows(user=user, tenant=tenant, now=now, switches=switches)
    inbox_url, kill_switches_url = reverse("approvals:inbox"), reverse("flags:kill_switch_list")
    show_health = user_may(user, TELEMETRY_PERMISSION)
    return {
        "rows": rows,
        "row_html": [
            row_html(
                row,
                show_health=show_health,
                inbox_url=inbox_url,
                kill_switches_url=kill_switches_url,
                read_at=now,
            )
            for row in rows
        ],
        "agents": agents,
        "environments": environments,
        "timeline": incident_timeline(
            user=user, tenant=tenant, environments=environments, now=now, switches=switches
        ),
        "read_at": now,
        "show_health": show_health,
    }
