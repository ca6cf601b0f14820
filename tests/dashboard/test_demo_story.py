"""The living demo's story steps (``apps.dashboard.demo_story``) on the seeded demo data: what
each does, and that running them again — a restart of ``make run`` — adds nothing. The story
as a whole, the fleet and the analysis included, is tests/project/test_run_demo.py."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.utils import timezone

from apps.audit.models import AuditEvent
from apps.audit.services import SystemActor
from apps.budgets.models import Budget
from apps.budgets.services import budget_create, budget_delete
from apps.bundles.models import BundleVersion
from apps.bundles.services import bundle_version_push
from apps.dashboard import demo_story
from apps.dashboard.demo_story import (
    DEMO_BUDGET,
    STORY_REPEAT,
    story_prepare,
    story_rollout_start,
)
from apps.flags.models import KillSwitch
from apps.flags.services import kill_switch_engage
from apps.rollouts.models import Rollout, RolloutPlan
from apps.rollouts.services import deployment_create, rollout_plan_set, rollout_transition
from apps.tenancy.models import Tenant
from apps.tenancy.services import agent_archive, environment_archive, tenant_archive

from ..races import postgresql_only, race

pytestmark = pytest.mark.django_db


@pytest.fixture
def acme() -> Tenant:
    call_command("seed_demo", stdout=StringIO())
    return Tenant.objects.get(slug="acme")


def test_story_prepare__sets_the_plan_the_budget_and_a_staging_switch_once(acme: Tenant) -> None:
    first = story_prepare(acme)
    second = story_prepare(acme)

    plan = RolloutPlan.objects.get(environment__tenant=acme, environment__slug="production")
    assert [step["percentage"] for step in plan.document["steps"]] == [20, 50]
    budget = Budget.objects.get(tenant=acme, name=DEMO_BUDGET["name"])
    assert (budget.agent.slug, budget.window, budget.action) == ("refund-agent", "hour", "alert")
    assert budget.thresholds == [50, 80]
    switch = KillSwitch.objects.get(tenant=acme, released_at__isnull=True)
    assert (switch.kind, switch.mode, switch.agent.slug, switch.environment.slug) == (
        "agent_mode",
        "draft_only",
        "refund-agent",
        "staging",
    )
    assert len(first) == 3
    assert second == []
    assert set(
        AuditEvent.objects.filter(actor_label="system:demo").values_list("action", flat=True)
    ) == {"rollout_plan.changed", "budget.created", "kill_switch.engaged"}


def test_story_prepare__an_operators_plan__left_alone(acme: Tenant) -> None:
    production = acme.environments.get(slug="production")
    rollout_plan_set(
        actor=SystemActor("operator"),
        environment=production,
        document={"steps": [{"percentage": 5}]},
        reason="ours",
    )

    story_prepare(acme)

    plan = RolloutPlan.objects.get(environment=production)
    assert [step["percentage"] for step in plan.document["steps"]] == [5]


def test_story_rollout_start__starts_v2_in_production_past_the_gate_audited(acme: Tenant) -> None:
    story_prepare(acme)

    line = story_rollout_start(acme)

    rollout = Rollout.objects.get()
    assert (rollout.agent.slug, rollout.environment.slug) == ("support-bot", "production")
    assert (rollout.candidate.number, rollout.baseline.number) == (2, 1)
    assert (rollout.state, rollout.percentage) == ("canary", 20.0)
    assert rollout.started_by_label == "system:demo"
    assert "adversarial" in rollout.gate_override
    assert line == f"demo rollout: #{rollout.pk} started, support-bot v2 to 20% of production"
    event = AuditEvent.objects.get(action="rollout.started")
    assert event.actor_label == "system:demo"
    assert event.after["gate_override"] == rollout.gate_override


def test_story_rollout_start__running__left_to_the_analysis(acme: Tenant) -> None:
    story_prepare(acme)
    story_rollout_start(acme)

    line = story_rollout_start(acme)

    assert Rollout.objects.count() == 1
    assert line.endswith("left to it")


def test_story_rollout_start__rolled_back_within_the_hour__no_new_one(acme: Tenant) -> None:
    story_prepare(acme)
    story_rollout_start(acme)
    rollout = Rollout.objects.get()
    rollout_transition(
        actor=SystemActor("canary analysis"), rollout_id=rollout.pk, event="rollback", reason="bad"
    )

    line = story_rollout_start(acme)

    assert Rollout.objects.count() == 1
    assert line.endswith("the next one after an hour")


def test_story_rollout_start__rolled_back_over_an_hour_ago__the_story_plays_again(
    acme: Tenant,
) -> None:
    story_prepare(acme)
    story_rollout_start(acme)
    first = Rollout.objects.get()
    rollout_transition(
        actor=SystemActor("canary analysis"), rollout_id=first.pk, event="rollback", reason="bad"
    )

    story_rollout_start(acme, now=timezone.now() + STORY_REPEAT + timedelta(minutes=1))

    assert Rollout.objects.count() == 2
    assert Rollout.objects.exclude(pk=first.pk).get().state == "canary"


def test_demo_story_command__without_demo_data__says_so() -> None:
    with pytest.raises(CommandError, match="seed_demo"):
        call_command("demo_story", stdout=StringIO())


def test_demo_story_command__plays_the_story_once(acme: Tenant) -> None:
    out = StringIO()

    call_command("demo_story", stdout=out)
    call_command("demo_story", stdout=out)

    assert Rollout.objects.count() == 1
    assert "started, support-bot v2" in out.getvalue()
    assert "left to it" in out.getvalue()


# ----------------------------------------------------------------- an operator got there first


def test_story_prepare__operator_engaged_the_same_switch__kept_and_the_rest_done(
    acme: Tenant,
) -> None:
    """An operator already forced refund-agent draft-only in staging (an older install, or a
    hand faster than ``make run``): the demo's switch is the operator's; the story neither
    fails nor engages a second one."""
    operator = SystemActor("operator")
    kill_switch_engage(
        actor=operator,
        kind="agent_mode",
        mode="draft_only",
        scope="environment",
        tenant=acme,
        agent=acme.agents.get(slug="refund-agent"),
        environment=acme.environments.get(slug="staging"),
        reason="ours",
    )

    lines = story_prepare(acme)

    switch = KillSwitch.objects.get(tenant=acme, released_at__isnull=True)
    assert switch.engaged_by_label == "operator"
    assert Budget.objects.filter(tenant=acme, name=DEMO_BUDGET["name"]).exists()
    assert any("kill switch not engaged" in line for line in lines)


def test_story_prepare__budget_name_taken_in_another_case__no_failure(acme: Tenant) -> None:
    budget_create(
        actor=SystemActor("operator"),
        tenant=acme,
        data={
            **DEMO_BUDGET,
            "name": DEMO_BUDGET["name"].upper(),
            "agent": acme.agents.get(slug="refund-agent"),
        },
        reason="ours",
    )

    lines = story_prepare(acme)

    assert Budget.objects.filter(tenant=acme, name__iexact=DEMO_BUDGET["name"]).count() == 1
    assert any(line.endswith("(names differing only in case count).") for line in lines)


def test_story__demo_agents_archived__nothing_engaged_started_or_failed(acme: Tenant) -> None:
    acme.agents.filter(slug__in=["refund-agent", "support-bot"]).update(archived_at=timezone.now())
    out = StringIO()

    call_command("demo_story", stdout=out)

    assert not KillSwitch.objects.filter(tenant=acme).exists()
    assert not Budget.objects.filter(tenant=acme, name=DEMO_BUDGET["name"]).exists()
    assert not Rollout.objects.exists()
    assert "no demo data" in out.getvalue()


def test_demo_story_command__a_refusal__a_command_error_not_a_traceback(
    acme: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refused(*args: object, **kwargs: object) -> None:
        raise ValidationError({"candidate": ["A rollout started here meanwhile."]})

    monkeypatch.setattr(demo_story, "rollout_start", refused)

    with pytest.raises(CommandError, match="started here meanwhile"):
        call_command("demo_story", stdout=StringIO())


@pytest.mark.django_db(transaction=True)
def test_demo_story__two_at_once__one_budget_one_switch_one_rollout() -> None:
    postgresql_only()
    call_command("seed_demo", stdout=StringIO())
    acme = Tenant.objects.get(slug="acme")

    def play() -> str:
        out = StringIO()
        call_command("demo_story", stdout=out)
        return out.getvalue()

    results, refusals = race(play, play)

    assert (len(results), refusals) == (2, [])
    assert Budget.objects.filter(tenant=acme, name=DEMO_BUDGET["name"]).count() == 1
    assert KillSwitch.objects.filter(tenant=acme).count() == 1
    assert Rollout.objects.count() == 1


def test_story_prepare__operator_deleted_the_demo_budget__not_made_again(acme: Tenant) -> None:
    story_prepare(acme)
    budget_delete(
        actor=SystemActor("operator"),
        budget=Budget.objects.get(tenant=acme, name=DEMO_BUDGET["name"]),
        reason="noise",
    )

    lines = story_prepare(acme)  # the next make run

    assert not Budget.objects.filter(tenant=acme, name=DEMO_BUDGET["name"]).exists()
    assert lines == []


def test_story_rollout_start__operator_made_a_newer_version_stable__production_not_rolled_back(
    acme: Tenant,
) -> None:
    """An operator shipped support-bot v3 to production meanwhile: the demo's "roll out v2"
    would be a downgrade of production by system:demo. Nothing starts."""
    agent = acme.agents.get(slug="support-bot")
    source = BundleVersion.objects.get(agent=agent, number=2).source
    v3 = bundle_version_push(
        actor=SystemActor("operator"),
        agent=agent,
        message="v3",
        source=source.replace("temperature: 0.7", "temperature: 0.5"),
    ).version
    deployment_create(
        actor=SystemActor("operator"),
        agent=agent,
        environment=acme.environments.get(slug="production"),
        version=v3,
        reason="ours",
        override_reason="tested elsewhere",
    )

    line = story_rollout_start(acme)

    assert not Rollout.objects.exists()
    assert line.endswith("no story of v2 to tell")


def test_story__demo_tenant_archived__nothing_set_created_or_started(acme: Tenant) -> None:
    Tenant.objects.filter(pk=acme.pk).update(archived_at=timezone.now())
    acme.refresh_from_db()
    out = StringIO()

    call_command("demo_story", stdout=out)

    assert not RolloutPlan.objects.filter(environment__tenant=acme).exists()
    assert not Budget.objects.filter(tenant=acme, name=DEMO_BUDGET["name"]).exists()
    assert not Rollout.objects.exists()
    assert "no demo data" in out.getvalue()


@pytest.mark.django_db
@pytest.mark.parametrize("archived", ["tenant", "agent", "environment"])
def test_seed_demo__an_operator_archived_part_of_the_demo__loads_again_without_touching_it(
    archived: str,
) -> None:
    # `make run` seeds on every start: an archived demo (frozen, commands included) must not
    # stop it
    call_command("seed_demo", stdout=StringIO())
    acme = Tenant.objects.get(slug="acme")
    admin = SystemActor("test")
    if archived == "tenant":
        tenant_archive(actor=admin, tenant=acme, reason="done with the demo")
    elif archived == "agent":
        agent_archive(actor=admin, agent=acme.agents.get(slug="support-bot"), reason="retired")
    else:
        staging = acme.environments.get(slug="staging")
        environment_archive(actor=admin, environment=staging, reason="unused")
    audited = AuditEvent.objects.count()
    out = StringIO()
    call_command("seed_demo", stdout=out)
    assert AuditEvent.objects.count() == audited, out.getvalue()
    if archived == "tenant":
        assert "demo tenant acme is archived" in out.getvalue()
