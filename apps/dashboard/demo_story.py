"""The living demo of ``make run`` (``controlplane/run.py``): what happens by itself in the
first minutes, through the real services, as the system actor ``system:demo``.

The story, on top of the seeded data (``seed_demo``) and the simulated fleet:

1. ``story_prepare`` (at start, idempotent): production gets a rollout plan short enough to
   watch (20% → 50% → 100%, two minutes a step) unless an operator already set one,
   refund-agent gets a small hourly spend budget that only alerts, at 50% and 80%, so the
   fleet's spend crosses its 80% alert within minutes of each hour, and refund-agent is forced
   draft-only in staging (a kill switch, engaged once; no demo runtime runs in staging).
2. ``story_rollout_start`` (once the fleet has served a little): support-bot v2, the
   "friendlier" prompt, is rolled out to production past its failing promotion gate (the
   override is audited, with its reason). Nothing else is arranged: the simulated runtimes
   serve v2 to the canary's sessions, and the simulator reads v2's prompt ("proactively
   offer a refund") as a model would, opening refund tickets for customers who are not owed
   one — wrong actions. The canary analysis (``apps.rollouts.services.analysing``, every
   ``ROLLOUT_ANALYSIS_EVERY_S``) sees the wrong-action rate far above stable's and rolls the
   rollout back by itself, raising its alert.

Restarts: a rollout still running is left to the analysis (the story goes on where it was);
otherwise a fresh demo rollout starts only when none was started in the last
``STORY_REPEAT`` (an hour), so restarting ``make run`` never piles up rollouts, and after an
hour away the story plays again. When an operator made v2 (or a newer version) stable in
production, there is no story to tell and nothing starts.

Operators and other stories: each step is decided under a lock (the tenant's for the
preparation, production's for the rollout), so two stories at once (two ``make run``, a hand
on ``demo_story`` meanwhile) do each thing once; an archived demo tenant or agent is no demo
data; and a step an operator's own change refuses (the same switch already engaged by them,
the budget's name taken) is reported as not done, never raised: the demo must not stop the
product's start."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from apps.audit.models import AuditEvent
from apps.audit.services import SystemActor
from apps.budgets.models import Budget
from apps.budgets.services import budget_create
from apps.bundles.models import BundleVersion
from apps.flags.models import AgentMode, KillSwitch, KillSwitchKind, KillSwitchScope
from apps.flags.services import kill_switch_engage
from apps.rollouts.models import Rollout, RolloutPlan
from apps.rollouts.selectors import deployment_current, rollout_active
from apps.rollouts.services import rollout_plan_set, rollout_start
from apps.tenancy.models import Agent, Environment, Tenant
from apps.tenancy.services import environment_lock, tenant_lock

ACTOR = SystemActor("system:demo")
STORY_AGENT, STORY_VERSION, STORY_ENVIRONMENT = "support-bot", 2, "production"
# No new demo rollout within this long of the last one: restarts do not pile them up.
STORY_REPEAT = timedelta(hours=1)
# Short steps so a newcomer sees a whole rollout move (or fail) in minutes; the metric gates
# stay the default plan's (plans.DEFAULT_PLAN): the wrong-action gate is what catches v2.
DEMO_PLAN: dict[str, Any] = {
    "shadow": {"percentage": 0, "min_dwell_s": 0, "min_requests": 0},
    "steps": [
        {"percentage": 20, "min_dwell_s": 120, "min_requests": 100, "auto_advance": True},
        {"percentage": 50, "min_dwell_s": 120, "min_requests": 200, "auto_advance": True},
    ],
}
# refund-agent's model is the demo's expensive one (about a cent a request): at the demo
# fleet's 1 request/s, $2 an hour crosses 80% about three minutes into the hour.
DEMO_BUDGET: dict[str, Any] = {
    "name": "refund-agent hourly (demo)",
    "scope": "agent",
    "window": "hour",
    "limits": {"cost_usd": "2"},
    "action": "alert",
    "thresholds": [50, 80],
    "description": "Small on purpose: the demo's spend crosses 80% within minutes each hour.",
}
# One engaged switch, so the kill-switch pages and the overview show one from the first minute:
# in staging, where no demo runtime runs, so it changes nothing the story depends on.
DEMO_SWITCH_REASON = (
    "demo: refund-agent drafts refunds only in staging while the payment sandbox is down"
)
OVERRIDE_REASON = (
    "demo: shipping the friendlier tone although its adversarial suite fails the production "
    "gate; the canary analysis is the safety net"
)


def _production(tenant: Tenant) -> Environment | None:
    return Environment.objects.filter(
        tenant=tenant, slug=STORY_ENVIRONMENT, archived_at__isnull=True
    ).first()


def _agent(tenant: Tenant, slug: str) -> Agent | None:
    """The demo agent ``slug`` of ``tenant``; None once archived (no longer demo data)."""
    return Agent.objects.filter(tenant=tenant, slug=slug, archived_at__isnull=True).first()


def _refusal(exc: ValidationError) -> str:
    return " ".join(exc.messages)


@transaction.atomic
def story_prepare(tenant: Tenant) -> list[str]:
    """The demo's rollout plan for production (only where no plan was ever saved: an
    operator's plan wins), its small refund-agent budget (once: one an operator deleted is
    not made again) and its staging kill switch (once). Decided under the tenant's lock, so
    two at once do each step once.
    Returns what it did, one line each (empty on a restart); a step refused by what an
    operator did (the same switch engaged, the budget's name taken) is a line saying so,
    not an error."""
    if tenant_lock(tenant_id=tenant.pk).is_archived:
        return []  # an archived demo tenant is no demo data
    done: list[str] = []
    production = _production(tenant)
    if production is not None and not RolloutPlan.objects.filter(environment=production).exists():
        rollout_plan_set(
            actor=ACTOR,
            environment=production,
            document=DEMO_PLAN,
            reason="demo: short steps, so a rollout moves (or fails) within minutes",
        )
        done.append("demo rollout plan set for production: 20% → 50% → 100%")
    refund = _agent(tenant, "refund-agent")
    if (
        refund is not None
        and not Budget.objects.filter(tenant=tenant, name=DEMO_BUDGET["name"]).exists()
        # once ever: a demo budget an operator deleted stays deleted across restarts
        and not AuditEvent.objects.filter(
            tenant=tenant, actor_label=ACTOR.label, action="budget.created"
        ).exists()
    ):
        try:
            budget_create(
                actor=ACTOR,
                tenant=tenant,
                data={**DEMO_BUDGET, "agent": refund},
                reason="demo: a budget the simulated spend crosses within minutes",
            )
            done.append(f"budget {DEMO_BUDGET['name']} created")
        except ValidationError as exc:  # the name taken in another case, say
            done.append(f"budget {DEMO_BUDGET['name']} not created: {_refusal(exc)}")
    staging = Environment.objects.filter(
        tenant=tenant, slug="staging", archived_at__isnull=True
    ).first()
    if (
        refund is not None
        and staging is not None
        and not KillSwitch.objects.filter(tenant=tenant, engaged_by_label=ACTOR.label).exists()
    ):
        try:
            kill_switch_engage(
                actor=ACTOR,
                kind=KillSwitchKind.AGENT_MODE,
                mode=AgentMode.DRAFT_ONLY,
                scope=KillSwitchScope.ENVIRONMENT,
                tenant=tenant,
                agent=refund,
                environment=staging,
                reason=DEMO_SWITCH_REASON,
            )
            done.append("kill switch engaged: refund-agent draft-only in staging")
        except ValidationError as exc:  # an operator engaged the very same switch
            done.append(f"kill switch not engaged: {_refusal(exc)}")
    return done


@transaction.atomic
def story_rollout_start(tenant: Tenant, *, now: datetime | None = None) -> str:
    """Start the demo rollout of support-bot v2 in production through ``rollout_start``
    (gate overridden with ``OVERRIDE_REASON``), unless one is running, v2 or a newer version
    is stable there, or a demo rollout started within ``STORY_REPEAT`` of ``now``. Decided
    under production's lock: of two at once, the second finds the first's rollout running.
    Returns one line saying what happened. Raises what ``rollout_start`` raises on a
    surprise (``ValidationError``)."""
    now = now or timezone.now()
    production = _production(tenant) if not tenant.is_archived else None
    agent = _agent(tenant, STORY_AGENT)
    candidate = (
        BundleVersion.objects.filter(agent=agent, number=STORY_VERSION).first() if agent else None
    )
    if production is None or agent is None or candidate is None:
        return "demo rollout: no demo data to roll out (seed_demo first)"
    environment_lock(environment_id=production.pk)
    running = rollout_active(agent=agent, environment=production)
    if running is not None:
        return f"demo rollout: rollout #{running.pk} is {running.get_state_display()}; left to it"
    stable = deployment_current(agent=agent, environment=production)
    if stable is not None and stable.version.number >= candidate.number:
        # v2 itself, or an operator's newer version: the demo never rolls production back
        return (
            f"demo rollout: v{stable.version.number} is stable in production; "
            f"no story of v{candidate.number} to tell"
        )
    recent = (
        Rollout.objects.filter(
            agent=agent,
            environment=production,
            started_by_label=ACTOR.label,
            created_at__gte=now - STORY_REPEAT,
        )
        .order_by("-id")
        .first()
    )
    if recent is not None:
        return (
            f"demo rollout: #{recent.pk} started {recent.created_at:%H:%M} UTC, "
            f"{recent.get_state_display()}; the next one after an hour"
        )
    rollout = rollout_start(
        actor=ACTOR,
        agent=agent,
        environment=production,
        candidate=candidate,
        reason="demo: roll out the friendlier support-bot v2 and watch the canary analysis",
        override_reason=OVERRIDE_REASON,
    )
    return (
        f"demo rollout: #{rollout.pk} started, {agent.slug} v{candidate.number} to "
        f"{rollout.percentage:g}% of production"
    )
