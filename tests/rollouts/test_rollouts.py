"""Rollouts: the state machine (every allowed and forbidden move), gates and their Admin
override, one rollout at a time, the snapshot's traffic split, the one rollback button, and
promote racing rollback on PostgreSQL (issue 12)."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest
from django.core.exceptions import PermissionDenied, ValidationError

from apps.audit.models import AuditEvent
from apps.audit.services import SystemActor
from apps.bundles.models import BundleVersion
from apps.bundles.services import bundle_version_push, evaluation_record, promotion_gate_set
from apps.core.concurrency import StaleVersion
from apps.core.roles import Role
from apps.rollouts.models import Deployment, Rollout, RolloutTransition
from apps.rollouts.plans import default_plan
from apps.rollouts.selectors import deployment_current, rollout_active
from apps.rollouts.services import (
    deployment_create,
    release_rollback,
    rollout_plan_set,
    rollout_start,
    rollout_transition,
    transition_allowed,
)
from apps.runtimes.snapshot import snapshot_content
from apps.tenancy.models import Agent, Environment, Tenant

from ..factories import AgentFactory, make_user
from ..races import postgresql_only, race

DEMO = Path(__file__).resolve().parents[2] / "apps" / "bundles" / "demo"
SYSTEM = SystemActor("test")
State, Event = Rollout.State, Rollout.Event


@pytest.fixture
def agent(tenant: Tenant) -> Agent:
    return AgentFactory(tenant=tenant, slug="support-bot", name="Support bot")


@pytest.fixture
def staging(tenant: Tenant) -> Environment:
    return tenant.environments.get(slug="staging")


@pytest.fixture
def production(tenant: Tenant) -> Environment:
    return tenant.environments.get(slug="production")


@pytest.fixture
def versions(agent: Agent) -> tuple[BundleVersion, BundleVersion]:
    pushed = [
        bundle_version_push(
            actor=SYSTEM, agent=agent, message=name, source=(DEMO / f"{name}.yaml").read_text()
        ).version
        for name in ("support-bot-v1", "support-bot-v2")
    ]
    return pushed[0], pushed[1]


@pytest.fixture
def running(
    agent: Agent, staging: Environment, versions: tuple[BundleVersion, BundleVersion]
) -> Rollout:
    v1, v2 = versions
    deployment_create(actor=SYSTEM, agent=agent, environment=staging, version=v1, reason="launch")
    return rollout_start(
        actor=SYSTEM, agent=agent, environment=staging, candidate=v2, reason="friendlier tone"
    )


# --------------------------------------------------------------------------- the table


def test_transition_table__every_pair_of_states_and_events_allowed_or_forbidden() -> None:
    """Exhaustive: the table says, for each (state, event, target), whether the move exists;
    ended rollouts never move; nothing leads back to pending."""
    allowed = {
        (State.PENDING, Event.START, State.SHADOW),
        (State.PENDING, Event.START, State.CANARY),
        (State.PENDING, Event.ABORT, State.ABORTED),
        (State.PENDING, Event.ROLLBACK, State.ROLLED_BACK),
        (State.SHADOW, Event.ADVANCE, State.CANARY),
        (State.SHADOW, Event.PAUSE, State.PAUSED),
        (State.SHADOW, Event.ABORT, State.ABORTED),
        (State.SHADOW, Event.ROLLBACK, State.ROLLED_BACK),
        (State.CANARY, Event.ADVANCE, State.CANARY),
        (State.CANARY, Event.COMPLETE, State.COMPLETED),
        (State.CANARY, Event.PAUSE, State.PAUSED),
        (State.CANARY, Event.ABORT, State.ABORTED),
        (State.CANARY, Event.ROLLBACK, State.ROLLED_BACK),
        (State.PAUSED, Event.RESUME, State.SHADOW),
        (State.PAUSED, Event.RESUME, State.CANARY),
        (State.PAUSED, Event.COMPLETE, State.COMPLETED),
        (State.PAUSED, Event.ABORT, State.ABORTED),
        (State.PAUSED, Event.ROLLBACK, State.ROLLED_BACK),
        (State.CANARY, Event.SHRINK, State.PAUSED),
        (State.PAUSED, Event.SHRINK, State.PAUSED),
    }
    for state, event, target in itertools.product(State, Event, State):
        assert transition_allowed(state, event, target) == ((state, event, target) in allowed), (
            state,
            event,
            target,
        )


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("path", "event", "expected"),
    [
        ([], "advance", ("canary", 1, 10.0)),
        ([], "pause", ("paused", 0, 1.0)),
        (["pause"], "resume", ("canary", 0, 1.0)),
        ([], "abort", ("aborted", 0, 0.0)),
        ([], "rollback", ("rolled_back", 0, 0.0)),
        (["advance", "advance"], "advance", ("completed", 2, 100.0)),
        (["pause"], "complete", ("completed", 0, 100.0)),
        ([], "complete", ("completed", 0, 100.0)),
    ],
)
def test_rollout_transition__allowed_moves__state_step_traffic_revision_timeline_audit(
    running: Rollout, path: list[str], event: str, expected: tuple[str, int, float]
) -> None:
    for earlier in path:
        rollout_transition(actor=SYSTEM, rollout_id=running.pk, event=earlier, reason="step")
    running.refresh_from_db()
    revision = running.environment.revision
    sequence = running.sequence
    result = rollout_transition(
        actor=SYSTEM,
        rollout_id=running.pk,
        event=event,
        reason="because",
        expected_version=sequence,
    )
    rollout = result.rollout
    assert (rollout.state, rollout.step_index, rollout.percentage) == expected
    assert rollout.sequence == sequence + 1
    running.environment.refresh_from_db()
    assert result.transition.revision == running.environment.revision > revision
    assert AuditEvent.objects.filter(action__startswith="rollout.").latest("id").reason == "because"
    if expected[0] == "completed":
        live = deployment_current(agent=rollout.agent, environment=rollout.environment)
        assert live is not None and live.version == rollout.candidate
        assert rollout.finished_at is not None


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("path", "event"),
    [
        ([], "resume"),
        (["pause"], "pause"),
        (["pause"], "advance"),
        (["abort"], "rollback"),
        (["abort"], "resume"),
        (["rollback"], "advance"),
        (["rollback"], "complete"),
        (["complete"], "rollback"),
        (["complete"], "pause"),
        ([], "start"),
        ([], "explode"),
    ],
)
def test_rollout_transition__forbidden_moves__refused_and_nothing_changes(
    running: Rollout, path: list[str], event: str
) -> None:
    for earlier in path:
        rollout_transition(actor=SYSTEM, rollout_id=running.pk, event=earlier, reason="step")
    running.refresh_from_db()
    before = (running.state, running.step_index, running.sequence, running.environment.revision)
    transitions = RolloutTransition.objects.count()
    events = AuditEvent.objects.count()

    with pytest.raises(ValidationError) as refused:
        rollout_transition(actor=SYSTEM, rollout_id=running.pk, event=event, reason="no")

    assert "event" in refused.value.message_dict
    running.refresh_from_db()
    running.environment.refresh_from_db()
    after = (running.state, running.step_index, running.sequence, running.environment.revision)
    assert after == before
    assert (RolloutTransition.objects.count(), AuditEvent.objects.count()) == (transitions, events)


@pytest.mark.django_db
def test_rollout_transition__stale_expected_version__refused(running: Rollout) -> None:
    rollout_transition(actor=SYSTEM, rollout_id=running.pk, event="advance", reason="go")
    with pytest.raises(StaleVersion):
        rollout_transition(
            actor=SYSTEM, rollout_id=running.pk, event="pause", reason="x", expected_version=1
        )


@pytest.mark.django_db
def test_rollout_transition__viewer_refused__operator_allowed(
    tenant: Tenant, running: Rollout
) -> None:
    viewer = make_user(Role.VIEWER, tenant, username="vic")
    with pytest.raises(PermissionDenied):
        rollout_transition(actor=viewer, rollout_id=running.pk, event="pause", reason="x")
    operator = make_user(Role.OPERATOR, tenant, username="ola")
    rollout_transition(actor=operator, rollout_id=running.pk, event="pause", reason="x")


# --------------------------------------------------------------------------- start


@pytest.mark.django_db
def test_rollout_start__shadow_plan__starts_in_shadow_then_canary(
    agent: Agent, staging: Environment, versions: tuple[BundleVersion, BundleVersion]
) -> None:
    v1, v2 = versions
    plan = default_plan()
    plan["shadow"]["percentage"] = 20
    rollout_plan_set(actor=SYSTEM, environment=staging, document=plan, reason="shadow first")
    deployment_create(actor=SYSTEM, agent=agent, environment=staging, version=v1, reason="go")

    rollout = rollout_start(
        actor=SYSTEM, agent=agent, environment=staging, candidate=v2, reason="try"
    )

    assert (rollout.state, rollout.percentage, rollout.shadow_percentage) == ("shadow", 0, 20)
    content = snapshot_content(environment=staging, agent_id=None)
    assert content["agents"]["support-bot"]["rollout"]["phase"] == "shadow"
    moved = rollout_transition(actor=SYSTEM, rollout_id=rollout.pk, event="advance", reason="ok")
    assert (moved.rollout.state, moved.rollout.percentage) == ("canary", 1.0)
    # Editing the plan later does not touch the running rollout.
    rollout_plan_set(actor=SYSTEM, environment=staging, document=default_plan(), reason="x")
    moved.rollout.refresh_from_db()
    assert moved.rollout.plan["shadow"]["percentage"] == 20


@pytest.mark.django_db
def test_rollout_start__refusals__field_errors_and_nothing_stored(
    agent: Agent,
    staging: Environment,
    versions: tuple[BundleVersion, BundleVersion],
    other_tenant: Tenant,
) -> None:
    v1, v2 = versions
    with pytest.raises(ValidationError) as no_stable:
        rollout_start(actor=SYSTEM, agent=agent, environment=staging, candidate=v2, reason="x")
    assert "no stable version" in str(no_stable.value.message_dict["candidate"])
    deployment_create(actor=SYSTEM, agent=agent, environment=staging, version=v1, reason="go")
    cases: list[tuple[dict[str, Any], str]] = [
        ({"candidate": v1}, "candidate"),
        ({"reason": "  "}, "reason"),
        ({"environment": other_tenant.environments.get()}, "environment"),
        ({"stickiness": "shoeSize"}, "stickiness"),
        (
            {"constraints": [{"contextName": "tenantId", "operator": "LT", "values": ["a"]}]},
            "constraints.0.operator",
        ),
        ({"constraints": "tenantId"}, "constraints"),
        (
            {"constraints": [{"contextName": "tenantId", "operator": "IN", "values": []}]},
            "constraints.0.values",
        ),
        (
            {"constraints": [{"contextName": "tenantId", "operator": "IN", "values": "a"}]},
            "constraints.0.values",
        ),
        (
            {
                "constraints": [
                    {"contextName": "tenantId", "operator": "IN", "values": ["a"], "inverted": True}
                ]
            },
            "constraints.0",
        ),
        (
            {"constraints": [{"contextName": " ", "operator": "IN", "values": ["a"]}]},
            "constraints.0.contextName",
        ),
        (
            {"constraints": [{"contextName": "t", "operator": "IN", "values": ["a"]}] * 11},
            "constraints",
        ),
        ({"constraints": [7]}, "constraints.0"),
    ]
    for change, field in cases:
        arguments = {"agent": agent, "environment": staging, "candidate": v2, "reason": "r"}
        arguments.update(change)
        with pytest.raises(ValidationError) as refused:
            rollout_start(actor=SYSTEM, **arguments)
        assert field in refused.value.message_dict, (change, refused.value)
    assert not Rollout.objects.exists()

    first = rollout_start(actor=SYSTEM, agent=agent, environment=staging, candidate=v2, reason="a")
    with pytest.raises(ValidationError) as twice:
        rollout_start(actor=SYSTEM, agent=agent, environment=staging, candidate=v2, reason="b")
    assert f"#{first.pk}" in str(twice.value.message_dict["candidate"])
    # A deploy past a running rollout is refused too.
    with pytest.raises(ValidationError):
        deployment_create(actor=SYSTEM, agent=agent, environment=staging, version=v2, reason="x")


@pytest.mark.django_db
def test_rollout_start__gates__evaluation_and_predecessor_enforced__admin_overrides_with_reason(
    tenant: Tenant,
    agent: Agent,
    staging: Environment,
    production: Environment,
    versions: tuple[BundleVersion, BundleVersion],
) -> None:
    v1, v2 = versions
    operator = make_user(Role.OPERATOR, tenant, username="ola")
    admin = make_user(Role.ADMIN, username="ada")
    for environment in (staging, production):
        deployment_create(
            actor=SYSTEM, agent=agent, environment=environment, version=v1, reason="go"
        )
    promotion_gate_set(
        actor=SYSTEM,
        environment=production,
        requirements=[{"suite": "golden", "min_pass_rate": "0.9"}],
        reason="gate",
    )

    with pytest.raises(ValidationError) as refused:
        rollout_start(actor=operator, agent=agent, environment=production, candidate=v2, reason="r")
    failures = " ".join(refused.value.message_dict["candidate"])
    assert "Promotion gate of Production" in failures
    assert "has not completed a rollout in Staging" in failures
    with pytest.raises(PermissionDenied):
        rollout_start(
            actor=operator,
            agent=agent,
            environment=production,
            candidate=v2,
            reason="r",
            override_reason="urgent fix",
        )
    assert not Rollout.objects.exists()

    overridden = rollout_start(
        actor=admin,
        agent=agent,
        environment=production,
        candidate=v2,
        reason="hotfix",
        override_reason="incident 42: the fix cannot wait for staging",
    )
    assert overridden.gate_override.startswith("incident 42")
    event = AuditEvent.objects.get(action="rollout.started")
    assert event.after["gate_override"].startswith("incident 42")
    assert len(event.after["gate_failures"]) == 2
    rollout_transition(actor=SYSTEM, rollout_id=overridden.pk, event="abort", reason="x")

    # With the evidence and a completed staging rollout, the operator needs no override.
    evaluation_record(actor=SYSTEM, version=v2, suite="golden", passed=95, failed=5)
    in_staging = rollout_start(
        actor=operator, agent=agent, environment=staging, candidate=v2, reason="r"
    )
    rollout_transition(actor=SYSTEM, rollout_id=in_staging.pk, event="complete", reason="done")
    assert (
        rollout_start(
            actor=operator, agent=agent, environment=production, candidate=v2, reason="r"
        ).state
        == "canary"
    )


# --------------------------------------------------------------------------- runtimes


@pytest.mark.django_db
def test_snapshot__carries_candidate_and_split__group_id_survives_a_restart(
    running: Rollout, staging: Environment, versions: tuple[BundleVersion, BundleVersion]
) -> None:
    v1, v2 = versions
    agent_doc = snapshot_content(environment=staging, agent_id=None)["agents"]["support-bot"]
    assert agent_doc["stable"]["digest"] == v1.digest
    assert agent_doc["candidate"]["digest"] == v2.digest
    assert agent_doc["rollout"] == {
        "id": running.pk,
        "phase": "canary",
        "percentage": 1.0,
        "shadow_percentage": 0.0,
        "stickiness": "sessionId",
        "group_id": f"support-bot:staging:rollout-{running.pk}",
        "constraints": [],
    }
    json.dumps(agent_doc)
    rollout_transition(actor=SYSTEM, rollout_id=running.pk, event="abort", reason="later")
    agent_doc = snapshot_content(environment=staging, agent_id=None)["agents"]["support-bot"]
    assert (agent_doc["candidate"], agent_doc["rollout"]) == (None, None)

    again = rollout_start(
        actor=SYSTEM, agent=running.agent, environment=staging, candidate=v2, reason="again"
    )
    assert again.pk != running.pk and again.group_id == running.group_id


@pytest.mark.django_db
def test_release_rollback__rolls_back_the_rollout__else_reverts_stable(
    running: Rollout, staging: Environment, versions: tuple[BundleVersion, BundleVersion]
) -> None:
    v1, v2 = versions
    first = release_rollback(actor=SYSTEM, agent=running.agent, environment=staging, reason="bad")
    assert first.rollout is not None and first.rollout.state == "rolled_back"
    assert "returns to v1" in first.summary
    assert rollout_active(agent=running.agent, environment=staging) is None
    assert deployment_current(agent=running.agent, environment=staging).version == v1

    # No rollout now: the button reverts the stable version to the previous known-good one.
    deployment_create(
        actor=SYSTEM, agent=running.agent, environment=staging, version=v2, reason="x"
    )
    second = release_rollback(actor=SYSTEM, agent=running.agent, environment=staging, reason="bad")
    assert second.deployment is not None and second.deployment.version == v1


@pytest.mark.django_db(transaction=True)
def test_promote_racing_rollback__one_consistent_final_state(
    running: Rollout, staging: Environment, versions: tuple[BundleVersion, BundleVersion]
) -> None:
    postgresql_only()
    v1, v2 = versions
    for _ in range(2):
        rollout_transition(actor=SYSTEM, rollout_id=running.pk, event="advance", reason="up")

    results, refusals = race(
        lambda: rollout_transition(
            actor=SYSTEM, rollout_id=running.pk, event="advance", reason="promote"
        ),
        lambda: release_rollback(
            actor=SYSTEM, agent=running.agent, environment=staging, reason="roll back"
        ),
    )

    assert len(results) == 2 or len(refusals) == 1
    running.refresh_from_db()
    live = Deployment.objects.get(agent=running.agent, environment=staging, state="live")
    if running.state == "completed":
        # Promotion won; the rollback came second and reverted stable to v1, or was refused.
        assert live.version in (v1, v2)
        if live.version == v1:
            assert live.kind == "rollback"
    else:
        assert running.state == "rolled_back"
        assert live.version == v1
    assert (
        Deployment.objects.filter(agent=running.agent, environment=staging, state="live").count()
        == 1
    )
    assert Rollout.objects.filter(state__in=Rollout.ACTIVE).count() == 0


# --------------------------------------------------------------------------- review fixes


@pytest.mark.django_db
def test_paused_in_shadow__cannot_complete__paused_in_canary_can(
    agent: Agent, staging: Environment, versions: tuple[BundleVersion, BundleVersion]
) -> None:
    v1, v2 = versions
    plan = default_plan()
    plan["shadow"]["percentage"] = 10
    rollout_plan_set(actor=SYSTEM, environment=staging, document=plan, reason="shadow")
    deployment_create(actor=SYSTEM, agent=agent, environment=staging, version=v1, reason="go")
    rollout = rollout_start(
        actor=SYSTEM, agent=agent, environment=staging, candidate=v2, reason="r"
    )
    rollout_transition(actor=SYSTEM, rollout_id=rollout.pk, event="pause", reason="look")
    with pytest.raises(ValidationError) as refused:
        rollout_transition(actor=SYSTEM, rollout_id=rollout.pk, event="complete", reason="x")
    assert "served no live traffic" in str(refused.value)
    assert deployment_current(agent=agent, environment=staging).version == v1
    rollout_transition(actor=SYSTEM, rollout_id=rollout.pk, event="resume", reason="go")
    rollout_transition(actor=SYSTEM, rollout_id=rollout.pk, event="advance", reason="canary")
    rollout_transition(actor=SYSTEM, rollout_id=rollout.pk, event="pause", reason="look")
    done = rollout_transition(actor=SYSTEM, rollout_id=rollout.pk, event="complete", reason="ok")
    assert done.rollout.state == "completed"


@pytest.mark.django_db
def test_resume__restarts_the_failure_count(running: Rollout) -> None:
    Rollout.objects.filter(pk=running.pk).update(consecutive_failures=3)
    rollout_transition(actor=SYSTEM, rollout_id=running.pk, event="pause", reason="look")
    resumed = rollout_transition(actor=SYSTEM, rollout_id=running.pk, event="resume", reason="go")
    assert resumed.rollout.consecutive_failures == 0


@pytest.mark.django_db
def test_plain_rollback_of_stable__refused_while_a_rollout_runs(
    running: Rollout, staging: Environment
) -> None:
    from apps.rollouts.services import deployment_rollback

    with pytest.raises(ValidationError) as refused:
        deployment_rollback(actor=SYSTEM, agent=running.agent, environment=staging, reason="x")
    assert f"#{running.pk}" in str(refused.value)
    running.refresh_from_db()
    assert running.state == "canary"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"metrics": [{"metric": ["error_rate"]}]}, "metrics.0.metric"),
        ({"metrics": [{"metric": {"a": 1}}]}, "metrics.0.metric"),
        ({"steps": [{"percentage": 0.5}]}, "steps.0.percentage"),
        ({"steps": [{"percentage": 2.5}]}, "steps.0.percentage"),
        ({"steps": [{"percentage": 100}]}, "steps.0.percentage"),
        ({"shadow": {"percentage": 12.5}}, "shadow.percentage"),
        ({"steps": [{"percentage": "10"}]}, "steps.0.percentage"),
        ({"alpha": 0}, "alpha"),
        ({"alpha": 0.5}, "alpha"),
        ({"alpha": "0.01"}, "alpha"),
        ({"alpha": True}, "alpha"),
        ({"alpha": [0.01]}, "alpha"),
    ],
)
def test_plan_validate__unhashable_and_fractional_values__field_errors_not_exceptions(
    change: dict[str, Any], field: str
) -> None:
    from apps.rollouts.plans import plan_validate

    document = {**default_plan(), **change}
    assert field in plan_validate(document)


@pytest.mark.parametrize("alpha", [0.0001, 0.001, 0.05, 0.2])
def test_plan_alpha__in_range__valid_and_kept(alpha: float) -> None:
    from apps.rollouts.plans import plan_normalised, plan_validate

    assert plan_validate({"alpha": alpha}) == {}
    assert plan_normalised({"alpha": alpha})["alpha"] == alpha
    assert plan_normalised({})["alpha"] == 0.01


@pytest.mark.django_db
@pytest.mark.parametrize("name", ["environment", "appName", "currentTime", "remoteAddress"])
def test_rollout_start__constraint_on_a_field_runtimes_cannot_see__refused(
    agent: Agent, staging: Environment, versions: tuple[BundleVersion, BundleVersion], name: str
) -> None:
    v1, v2 = versions
    deployment_create(actor=SYSTEM, agent=agent, environment=staging, version=v1, reason="go")
    constraint = {"contextName": name, "operator": "IN", "values": ["x"]}
    with pytest.raises(ValidationError) as refused:
        rollout_start(
            actor=SYSTEM,
            agent=agent,
            environment=staging,
            candidate=v2,
            reason="r",
            constraints=[constraint],
        )
    assert "constraints.0.contextName" in refused.value.message_dict


@pytest.mark.django_db
def test_archived_agent__its_rollout_served_nowhere(running: Rollout, staging: Environment) -> None:
    from apps.rollouts.selectors import rollouts_serving

    assert running.agent_id in rollouts_serving(environment_id=staging.pk)
    Agent.objects.filter(pk=running.agent_id).update(archived_at=running.created_at)
    assert rollouts_serving(environment_id=staging.pk) == {}


# --------------------------------------------------------------------------- shrink


@pytest.mark.django_db
def test_shrink__back_one_canary_step_paused_there_audited_and_served(running: Rollout) -> None:
    rollout_transition(actor=SYSTEM, rollout_id=running.pk, event="advance", reason="looks ok")
    grown = Rollout.objects.get(pk=running.pk)
    assert grown.step_index == 1
    smaller = grown.plan["steps"][0]["percentage"]

    result = rollout_transition(
        actor=SYSTEM, rollout_id=running.pk, event="shrink", reason="refund complaints"
    )

    shrunk = result.rollout
    assert (shrunk.state, shrunk.paused_from, shrunk.step_index) == ("paused", "canary", 0)
    assert shrunk.percentage == smaller < grown.percentage
    assert (result.transition.event, result.transition.percentage) == ("shrink", smaller)
    event = AuditEvent.objects.get(action="rollout.shrunk")
    assert event.reason == "refund complaints"
    assert (event.before["percentage"], event.after["percentage"]) == (grown.percentage, smaller)
    # the runtimes are told the smaller share
    agent_doc = snapshot_content(environment=shrunk.environment, agent_id=None)["agents"][
        "support-bot"
    ]
    assert agent_doc["rollout"]["percentage"] == smaller
    # resumed, it goes on from the smaller step
    resumed = rollout_transition(actor=SYSTEM, rollout_id=running.pk, event="resume", reason="ok")
    assert (resumed.rollout.state, resumed.rollout.step_index) == ("canary", 0)


@pytest.mark.django_db
def test_shrink__paused_at_a_later_step__shrinks_and_stays_paused(running: Rollout) -> None:
    rollout_transition(actor=SYSTEM, rollout_id=running.pk, event="advance", reason="ok")
    rollout_transition(actor=SYSTEM, rollout_id=running.pk, event="pause", reason="look")

    shrunk = rollout_transition(actor=SYSTEM, rollout_id=running.pk, event="shrink", reason="x")

    assert (shrunk.rollout.state, shrunk.rollout.paused_from) == ("paused", "canary")
    assert shrunk.rollout.step_index == 0


@pytest.mark.django_db
@pytest.mark.parametrize("where", ["first step", "paused at the first step", "rolled back"])
def test_shrink__nothing_smaller__refused_and_nothing_changed(running: Rollout, where: str) -> None:
    if where == "paused at the first step":
        rollout_transition(actor=SYSTEM, rollout_id=running.pk, event="pause", reason="look")
    elif where == "rolled back":
        rollout_transition(actor=SYSTEM, rollout_id=running.pk, event="rollback", reason="bad")
    before = Rollout.objects.get(pk=running.pk)

    with pytest.raises(ValidationError) as refused:
        rollout_transition(actor=SYSTEM, rollout_id=running.pk, event="shrink", reason="x")

    assert "event" in refused.value.message_dict
    after = Rollout.objects.get(pk=running.pk)
    assert (after.state, after.step_index, after.sequence) == (
        before.state,
        before.step_index,
        before.sequence,
    )
    assert not AuditEvent.objects.filter(action="rollout.shrunk").exists()


@pytest.mark.django_db
def test_shrink_to__one_rule__what_the_service_accepts_the_pages_offer(running: Rollout) -> None:
    """``Rollout.shrink_to`` is the rule the service, the rollout page and the incident panel
    share: None exactly where the service refuses a shrink, else the share it goes to."""
    from apps.rollouts.views.rollouts import _live_context

    def offered(rollout: Rollout) -> bool:
        actions = _live_context(None, rollout)["actions"]  # type: ignore[arg-type]
        return any(a == "shrink" for a, _ in actions)

    assert running.shrink_to is None and not offered(running)  # the first canary step
    with pytest.raises(ValidationError):
        rollout_transition(actor=SYSTEM, rollout_id=running.pk, event="shrink", reason="less")
    moved = rollout_transition(
        actor=SYSTEM, rollout_id=running.pk, event="advance", reason="next"
    ).rollout
    assert moved.shrink_to == float(moved.plan["steps"][0]["percentage"]) and offered(moved)
    shrunk = rollout_transition(
        actor=SYSTEM, rollout_id=running.pk, event="shrink", reason="less"
    ).rollout
    assert shrunk.percentage == moved.shrink_to
    assert shrunk.shrink_to is None and not offered(shrunk)
