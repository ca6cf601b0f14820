from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

from django.db import connection
from django.db.models import Max, OuterRef, QuerySet, Subquery

from apps.core.authz import AnyUser, get_restricted, restrict
from apps.core.deployed_tools import AgentTools
from apps.tenancy.models import Agent, Environment

from .models import Deployment, Rollout, RolloutAnalysis, RolloutPlan, RolloutTransition
from .plans import default_plan


def deployment_current(*, agent: Agent, environment: Environment) -> Deployment | None:
    """The live deployment of ``agent`` in ``environment`` (what runtimes serve), or None."""
    return (
        Deployment.objects.select_related("version")
        .filter(agent=agent, environment=environment, state=Deployment.State.LIVE)
        .first()
    )


def deployment_sequence(current: Deployment | None) -> int:
    """The release-history version the deploy and rollback forms carry: the live row's
    ``sequence``, 0 when nothing was ever deployed."""
    return current.sequence if current is not None else 0


@dataclass(frozen=True)
class RollbackPlan:
    """What a rollback of one agent in one environment would do now.

    ``current``: the live deployment (None: nothing deployed). ``target``: the last
    known-good deployment before it, whose version the rollback brings back (None: refused,
    ``refusal`` says why)."""

    current: Deployment | None
    target: Deployment | None
    refusal: str = ""


def rollback_plan(*, agent: Agent, environment: Environment) -> RollbackPlan:
    """Where a rollback goes: the newest earlier deployment that was ``superseded`` (it
    served until a deliberate deploy replaced it: known-good), skipping every version that
    was ever rolled back from in this environment and the current version itself. So
    deploy v2, v3, v4; roll back → v3; roll back again → v2, never v4 again; once nothing
    known-good is left, the plan is a refusal."""
    history = list(
        Deployment.objects.select_related("version")
        .filter(agent=agent, environment=environment)
        .order_by("-sequence")
    )
    current = next((d for d in history if d.state == Deployment.State.LIVE), None)
    if current is None:
        return RollbackPlan(
            None, None, f"{agent.name} has nothing deployed in {environment.name} to roll back."
        )
    bad = {d.version_id for d in history if d.state == Deployment.State.ROLLED_BACK}
    bad.add(current.version_id)
    target = next(
        (
            d
            for d in history
            if d.sequence < current.sequence
            and d.state == Deployment.State.SUPERSEDED
            and d.version_id not in bad
        ),
        None,
    )
    if target is None:
        rolled_back = sorted(
            {d.version.number for d in history if d.state == Deployment.State.ROLLED_BACK}
        )
        detail = (
            f" (rolled back from before: {', '.join(f'v{n}' for n in rolled_back)})"
            if rolled_back
            else ""
        )
        return RollbackPlan(
            current,
            None,
            f"{agent.name} in {environment.name} has no known-good version before "
            f"v{current.version.number}{detail}: deploy the version you want explicitly.",
        )
    return RollbackPlan(current, target)


def rollback_targets(*, agent: Agent, environment: Environment) -> list[Deployment]:
    """Every deployment a rollback may bring back, newest first (the first is
    ``rollback_plan``'s target): earlier than the live one, ``superseded`` (known-good), of a
    version never rolled back from here and not the current one; one per version."""
    history = list(
        Deployment.objects.select_related("version")
        .filter(agent=agent, environment=environment)
        .order_by("-sequence")
    )
    current = next((d for d in history if d.state == Deployment.State.LIVE), None)
    if current is None:
        return []
    bad = {d.version_id for d in history if d.state == Deployment.State.ROLLED_BACK}
    bad.add(current.version_id)
    targets: dict[int, Deployment] = {}
    for d in history:
        if (
            d.sequence < current.sequence
            and d.state == Deployment.State.SUPERSEDED
            and d.version_id not in bad
        ):
            targets.setdefault(d.version_id, d)
    return list(targets.values())


def deployment_history(
    *, agent: Agent, environment: Environment | None = None
) -> QuerySet[Deployment]:
    qs = Deployment.objects.select_related("version", "environment", "previous__version").filter(
        agent=agent
    )
    if environment is not None:
        qs = qs.filter(environment=environment)
    return qs.order_by("-id")


def stable_deployments(*, environment_id: int, agent_id: int | None = None) -> list[Deployment]:
    """The current deployment of each active agent in an environment, for the snapshot."""
    history = Deployment.objects.filter(environment_id=environment_id)
    if agent_id is not None:
        history = history.filter(agent_id=agent_id)
    newest_ids = history.order_by().values("agent_id").annotate(newest=Max("id")).values("newest")
    return list(
        Deployment.objects.filter(id__in=newest_ids, agent__archived_at__isnull=True)
        .select_related("agent", "version")
        .order_by("agent__slug")
    )


# --------------------------------------------------------------------------- rollouts


def predecessor_environment(*, environment: Environment) -> Environment | None:
    """The active environment just before ``environment`` in its tenant's promotion order
    (staging for production), or None for the first."""
    return (
        Environment.objects.filter(
            tenant_id=environment.tenant_id,
            archived_at__isnull=True,
            position__lt=environment.position,
        )
        .order_by("-position")
        .first()
    )


def rollout_active(*, agent: Agent, environment: Environment) -> Rollout | None:
    """The rollout of ``agent`` in ``environment`` that has not ended, or None."""
    return (
        Rollout.objects.select_related("candidate", "baseline")
        .filter(agent=agent, environment=environment, state__in=Rollout.ACTIVE)
        .first()
    )


def rollout_plan_document(*, environment: Environment) -> dict[str, Any]:
    """The plan document of ``environment`` (the default when none was saved)."""
    return rollout_plan_of(environment=environment)[0]


def rollout_plan_of(*, environment: Environment) -> tuple[dict[str, Any], int]:
    """(document, version) of the plan of ``environment``; version 1 for the default."""
    plan = RolloutPlan.objects.filter(environment=environment).first()
    if plan is None:
        return default_plan(), 1
    return plan.document, plan.version


def rollouts_serving(*, environment_id: int, agent_id: int | None = None) -> dict[int, Rollout]:
    """agent id -> the rollout whose candidate runtimes of this environment serve now
    (shadowing or canary, paused included), for the snapshot and the Unleash document."""
    rows = Rollout.objects.filter(
        environment_id=environment_id, state__in=Rollout.SERVING, agent__archived_at__isnull=True
    ).select_related("candidate", "agent")
    if agent_id is not None:
        rows = rows.filter(agent_id=agent_id)
    return {rollout.agent_id: rollout for rollout in rows}


def rollout_runtime_document(rollout: Rollout) -> dict[str, Any]:
    """The ``rollout`` object of an agent in the snapshot (docs/runtime-api.md): the
    traffic split a runtime applies with Unleash's flexibleRollout bucketing."""
    return {
        "id": rollout.pk,
        "phase": rollout.phase,
        "percentage": rollout.percentage,
        "shadow_percentage": rollout.shadow_percentage,
        "stickiness": rollout.stickiness,
        "group_id": rollout.group_id,
        "constraints": rollout.constraints,
    }


def rollout_list(
    *, agent: Agent | None = None, environment: Environment | None = None
) -> QuerySet[Rollout]:
    """Rollouts, newest first, with what their rows show."""
    rows = Rollout.objects.select_related("agent", "environment", "candidate", "baseline")
    if agent is not None:
        rows = rows.filter(agent=agent)
    if environment is not None:
        rows = rows.filter(environment=environment)
    return rows.order_by("-id")


# --------------------------------------------------------------------------- rollout pages


def rollout_list_for_user(
    *,
    user: AnyUser,
    agent_id: int | None = None,
    environment_id: int | None = None,
    state: str = "",
) -> QuerySet[Rollout]:
    """Rollouts the user may see (their tenants'), newest first, with what a list row shows;
    optionally of one agent, one environment, or in one state ("active" for any state that
    has not ended)."""
    rows = restrict(
        Rollout.objects.select_related("agent", "environment", "candidate", "baseline"), user
    )
    if agent_id is not None:
        rows = rows.filter(agent_id=agent_id)
    if environment_id is not None:
        rows = rows.filter(environment_id=environment_id)
    if state == "active":
        rows = rows.filter(state__in=Rollout.ACTIVE)
    elif state:
        rows = rows.filter(state=state)
    return rows.order_by("-id")


def rollout_get_for_user(*, user: AnyUser, pk: int) -> Rollout:
    """One rollout of the user's tenants; ``Http404`` otherwise (never a 403)."""
    return get_restricted(
        Rollout.objects.select_related(
            "agent__tenant", "environment__tenant", "candidate", "baseline"
        ),
        user,
        pk=pk,
    )


def rollout_transitions(*, rollout: Rollout) -> list[RolloutTransition]:
    """The timeline of ``rollout``, oldest first."""
    return list(rollout.transitions.order_by("id"))


def rollout_analyses(*, rollout: Rollout, limit: int = 20) -> list[RolloutAnalysis]:
    """The newest ``limit`` analysis ticks of ``rollout`` (the decision log), newest first."""
    return list(rollout.analyses.order_by("-tick")[:limit])


def rollout_analyses_failing(
    *, agent: Agent, environment: Environment, limit: int = 5
) -> list[RolloutAnalysis]:
    """The newest ``limit`` analysis ticks of any rollout of ``agent`` in ``environment`` with
    a failing verdict (``"FAIL"`` in ``verdicts``), newest first: what the incident panel
    shows under "investigate" and quotes in its prefilled reason. Ticks that failed only
    dry-run metrics are kept (they still say what went wrong)."""
    ticks = RolloutAnalysis.objects.select_related("rollout__candidate").filter(
        rollout__agent=agent, rollout__environment=environment
    )
    if connection.features.supports_json_field_contains:
        failing = ticks.filter(verdicts__contains=[{"verdict": "FAIL"}])
        return list(failing.order_by("-tick")[:limit])
    # SQLite (make run's embedded database) has no JSON containment: newest first, in pages,
    # until ``limit`` failing ones are found
    found: list[RolloutAnalysis] = []
    for analysis in ticks.order_by("-tick").iterator(chunk_size=200):
        if any(isinstance(v, dict) and v.get("verdict") == "FAIL" for v in analysis.verdicts):
            found.append(analysis)
            if len(found) >= limit:
                break
    return found


@dataclass(frozen=True)
class StepView:
    """One stop on a rollout's way, for the step progress: ``label`` ("shadow 5%", "10%"),
    ``state`` done | current | next | skipped (after the rollout ended short of it)."""

    label: str
    state: str


def rollout_steps(rollout: Rollout) -> list[StepView]:
    """shadow? → each canary step → 100%, each marked done, current, next or skipped."""
    plan = rollout.plan
    serving = rollout.phase
    # Position on the way: shadow -1, canary step i, completed len(steps).
    steps = plan["steps"]
    if rollout.state == Rollout.State.COMPLETED:
        here = len(steps)
    elif serving == Rollout.State.SHADOW or (
        serving == Rollout.State.PENDING and plan["shadow"]["percentage"]
    ):
        here = -1
    else:
        here = max(rollout.step_index, 0)
    ended_short = rollout.state in (Rollout.State.ABORTED, Rollout.State.ROLLED_BACK)
    stops: list[tuple[int, str]] = []
    if plan["shadow"]["percentage"]:
        stops.append((-1, f"shadow {plan['shadow']['percentage']:g}%"))
    stops += [(i, f"{step['percentage']:g}%") for i, step in enumerate(steps)]
    stops.append((len(steps), "100%"))
    views = []
    for position, label in stops:
        if position < here:
            state = "done"
        elif position == here:
            state = "stopped" if ended_short else "current"
        else:
            state = "skipped" if ended_short else "next"
        views.append(StepView(label, state))
    return views


def rollouts_active_by_environment(*, agent: Agent) -> dict[int, Rollout]:
    """environment id -> the rollout of ``agent`` that has not ended there (one query)."""
    rows = Rollout.objects.select_related("candidate", "baseline").filter(
        agent=agent, state__in=Rollout.ACTIVE
    )
    return {rollout.environment_id: rollout for rollout in rows}


def deployed_tools_of(
    tenant_id: int | None, agent_id: int | None, environment_id: int | None
) -> list[AgentTools]:
    """The provider of ``apps.core.deployed_tools``: each active agent (of ``tenant_id``, or
    every tenant; narrowed to ``agent_id``) with the tool names declared by the versions it
    serves: the live deployment of each environment (or of ``environment_id`` only) and the
    candidate of a rollout serving there. Two queries plus one per distinct version."""
    agents = Agent.objects.filter(archived_at__isnull=True)
    if tenant_id is not None:
        agents = agents.filter(tenant_id=tenant_id)
    if agent_id is not None:
        agents = agents.filter(pk=agent_id)
    live = Deployment.objects.filter(
        agent__in=agents, state=Deployment.State.LIVE, environment__archived_at__isnull=True
    ).select_related("version", "environment")
    serving = Rollout.objects.filter(
        agent__in=agents, state__in=Rollout.SERVING, environment__archived_at__isnull=True
    ).select_related("candidate", "environment")
    if environment_id is not None:
        live = live.filter(environment_id=environment_id)
        serving = serving.filter(environment_id=environment_id)
    found: dict[int, tuple[set[str], set[str]]] = {}
    for agent_of, version, environment in [
        *((d.agent_id, d.version, d.environment) for d in live),
        *((r.agent_id, r.candidate, r.environment) for r in serving),
    ]:
        tools, places = found.setdefault(agent_of, (set(), set()))
        places.add(environment.name)
        for spec in version.content.get("tools") or []:
            if isinstance(spec, dict) and isinstance(spec.get("name"), str):
                tools.add(spec["name"])
    return [
        AgentTools(
            agent_id=agent.pk,
            agent_slug=agent.slug,
            tools=frozenset(found.get(agent.pk, (set(), set()))[0]),
            environments=tuple(sorted(found.get(agent.pk, (set(), set()))[1])),
        )
        for agent in agents.order_by("slug")
    ]


# --------------------------------------------------------------------------- the overview


class CurrentDeployment(NamedTuple):
    """What an agent runs in an environment as the Overview shows it: the version's number
    and how it got there (``Deployment.Kind``: deploy, rollback, rollout...)."""

    version_number: int
    kind: str


def deployments_current_for(
    *, environment_ids: list[int]
) -> dict[tuple[int, int], CurrentDeployment]:
    """(agent id, environment id) -> the current (newest) deployment's version number and
    kind, for every agent in the given environments, in one query (the overview's stable
    column; plain values: 150 rows built as model instances cost more than the query)."""
    newest = (
        Deployment.objects.filter(environment_id__in=environment_ids)
        .order_by()
        .values("agent_id", "environment_id")
        .annotate(newest=Max("id"))
        .values("newest")
    )
    rows = Deployment.objects.filter(id__in=newest).values_list(
        "agent_id", "environment_id", "version__number", "kind"
    )
    return {
        (agent_id, environment_id): CurrentDeployment(number, kind)
        for agent_id, environment_id, number, kind in rows
    }


# A bundle version's large columns (its canonical content, its source, its signing data), read
# by nothing that lists versions by number: 150 rows of an overview would parse every bundle.
_VERSION_BULK = ("canonical", "source", "signature", "message", "warnings")


@dataclass(frozen=True)
class RolloutSummary:
    """An active rollout and its newest analysis tick (None before the first tick):
    ``verdict`` is that tick's decision (advance, hold, pause, rollback, complete)."""

    rollout: Rollout
    latest: RolloutAnalysis | None

    @property
    def verdict(self) -> str:
        return self.latest.decision if self.latest is not None else ""

    @property
    def step_label(self) -> str:
        """Where the candidate is: "shadow 5%", "canary 10%", "pending", "paused at 25%"."""
        rollout = self.rollout
        if rollout.state == Rollout.State.PENDING:
            return "pending"
        if rollout.phase == Rollout.State.SHADOW:
            label = f"shadow {rollout.shadow_percentage:g}%"
        else:
            label = f"canary {rollout.percentage:g}%"
        return f"paused at {label}" if rollout.state == Rollout.State.PAUSED else label


def rollouts_active_for(*, environment_ids: list[int]) -> dict[tuple[int, int], RolloutSummary]:
    """(agent id, environment id) -> its active rollout with the newest analysis tick, for
    every agent of the given environments: two queries (the rollouts with the id of their
    newest tick, a correlated subquery; then those ticks). Portable SQL: ``make run``'s
    SQLite has no ``DISTINCT ON``."""
    newest = (
        RolloutAnalysis.objects.filter(rollout=OuterRef("pk")).order_by("-tick", "-id").values("id")
    )
    rollouts = list(
        Rollout.objects.filter(environment_id__in=environment_ids, state__in=Rollout.ACTIVE)
        .select_related("candidate")  # its number; the baseline is not shown
        .defer(*(f"candidate__{name}" for name in _VERSION_BULK))
        .annotate(newest_analysis_id=Subquery(newest[:1]))
    )
    wanted = [r.newest_analysis_id for r in rollouts if r.newest_analysis_id is not None]
    latest = {
        a.rollout_id: a
        for a in RolloutAnalysis.objects.filter(pk__in=wanted).only(
            "rollout_id", "decision", "reason"
        )
    }
    return {(r.agent_id, r.environment_id): RolloutSummary(r, latest.get(r.pk)) for r in rollouts}
