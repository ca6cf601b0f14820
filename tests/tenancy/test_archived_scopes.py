"""An archived agent or environment is frozen, in an active tenant too: every change to it or
in it is refused (400, a field error on ``agent`` or ``environment``, nothing written, nothing
audited), whoever asks, a person or a command. One check for every service
(``apps.tenancy.services.refuse_archived``), so this walks every kind of change that names an
agent or an environment. What still goes through is what takes something away: a rollout's
candidate taken back, a rejected approval (tests/approvals), a revoked token."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from apps.accounts.runtime_tokens import runtime_token_create
from apps.audit.models import AuditEvent
from apps.bundles.models import BundleVersion
from apps.bundles.services import evaluation_record
from apps.flags.models import KillSwitch
from apps.flags.services import kill_switch_engage, kill_switch_release
from apps.reviews.services import review_grade
from apps.rollouts.models import Deployment, Rollout
from apps.rollouts.services import (
    deployment_create,
    deployment_rollback,
    rollout_start,
    rollout_transition,
)
from apps.rollouts.services.analysing import rollouts_analyse_due
from apps.runtimes.services import served_agent_ids
from apps.tenancy.models import Agent, Environment, Tenant
from apps.tenancy.services import (
    agent_archive,
    agent_update,
    environment_archive,
    environment_move,
    environment_update,
    tenant_archive,
)

from ..conftest import api_as
from ..factories import AgentFactory
from .test_archived_tenant import SYSTEM, _push_v1_and_v2


@dataclass
class World:
    admin: Any
    tenant: Tenant
    agent: Agent
    production: Environment
    staging: Environment
    versions: list[BundleVersion]
    rollout: Rollout
    switch: KillSwitch


@pytest.fixture
def world(tenant: Tenant, admin: Any) -> World:
    """support-bot: v1 then v2 stable in production (so a rollback has somewhere to go), a
    rollout of v2 running in staging over v1, its kill switch engaged in production."""
    agent = AgentFactory(tenant=tenant, slug="support-bot", name="Support bot")
    production = tenant.environments.get(slug="production")
    staging = tenant.environments.get(slug="staging")
    versions = _push_v1_and_v2(agent)
    for version in versions:
        deployment_create(
            actor=SYSTEM, agent=agent, environment=production, version=version, reason="r"
        )
    deployment_create(
        actor=SYSTEM, agent=agent, environment=staging, version=versions[0], reason="r"
    )
    rollout = rollout_start(
        actor=SYSTEM, agent=agent, environment=staging, candidate=versions[1], reason="canary"
    )
    switch = kill_switch_engage(
        actor=SYSTEM,
        kind="agent_stopped",
        scope="environment",
        tenant=tenant,
        agent=agent,
        environment=production,
        reason="incident",
    )
    return World(admin, tenant, agent, production, staging, versions, rollout, switch)


def _archive(world: World, what: str) -> None:
    if what == "agent":
        agent_archive(actor=world.admin, agent=world.agent, reason="retired")
    else:
        for environment in (world.production, world.staging):
            environment_archive(actor=world.admin, environment=environment, reason="moved")
    for row in (world.agent, world.production, world.staging):
        row.refresh_from_db()


# each change, and which archived scopes it names (both unless said)
CHANGES: dict[str, tuple[Callable[[World], object], tuple[str, ...]]] = {
    "rename the agent": (
        lambda w: agent_update(actor=w.admin, agent=w.agent, name="Support bot 2"),
        ("agent",),
    ),
    "rename the environment": (
        lambda w: environment_update(actor=w.admin, environment=w.production, name="Prod"),
        ("environment",),
    ),
    "move the environment": (
        lambda w: environment_move(actor=w.admin, environment=w.staging, direction="up"),
        ("environment",),
    ),
    "record an evaluation": (
        lambda w: evaluation_record(
            actor=w.admin, version=w.versions[1], suite="regression", passed=10, failed=0
        ),
        ("agent",),
    ),
    "grade a session": (
        lambda w: review_grade(
            actor=w.admin, agent=w.agent, environment=w.production, session_id="s-1", grade="good"
        ),
        ("agent", "environment"),
    ),
    "roll back the stable version": (
        lambda w: deployment_rollback(
            actor=w.admin, agent=w.agent, environment=w.production, reason="bad"
        ),
        ("agent", "environment"),
    ),
    "advance the rollout": (
        lambda w: rollout_transition(
            actor=w.admin, rollout_id=w.rollout.pk, event="advance", reason="go"
        ),
        ("agent", "environment"),
    ),
    "complete the rollout": (
        lambda w: rollout_transition(
            actor=w.admin, rollout_id=w.rollout.pk, event="complete", reason="go"
        ),
        ("agent", "environment"),
    ),
    "a command deploys": (
        lambda w: deployment_create(
            actor=SYSTEM,
            agent=w.agent,
            environment=w.production,
            version=w.versions[0],
            reason="cli",
        ),
        ("agent", "environment"),
    ),
}
CASES = [(change, what) for change, (_, scopes) in CHANGES.items() for what in scopes]


@pytest.mark.parametrize(("change", "what"), CASES)
def test_archived_scope__a_change__refused_nothing_written(
    world: World, change: str, what: str
) -> None:
    _archive(world, what)
    audited = AuditEvent.objects.count()
    deployments = list(Deployment.objects.values_list("pk", "state"))
    with pytest.raises(ValidationError) as refused:
        CHANGES[change][0](world)
    assert what in refused.value.message_dict, refused.value.message_dict
    assert "archived" in " ".join(refused.value.message_dict[what])
    assert AuditEvent.objects.count() == audited
    assert list(Deployment.objects.values_list("pk", "state")) == deployments


@pytest.mark.parametrize("what", ["agent", "environment"])
def test_archived_scope__running_rollout__taken_back_never_pushed_further(
    world: World, what: str
) -> None:
    _archive(world, what)

    def move(event: str) -> Rollout:
        return rollout_transition(
            actor=world.admin, rollout_id=world.rollout.pk, event=event, reason="archived"
        ).rollout

    assert move("pause").state == Rollout.State.PAUSED
    with pytest.raises(ValidationError) as refused:
        move("resume")
    assert what in refused.value.message_dict
    assert move("rollback").state == Rollout.State.ROLLED_BACK


@pytest.mark.parametrize("what", ["agent", "environment"])
def test_archived_scope__what_takes_something_away__still_goes_through(
    world: World, what: str
) -> None:
    # an evaluation retried by CI gets the run it recorded; a kill switch of what nothing
    # serves any more is released (there is no restore to wait for)
    def record() -> tuple[Any, bool]:
        return evaluation_record(
            actor=world.admin,
            version=world.versions[1],
            suite="golden",
            passed=9,
            failed=1,
            run_id="r1",
        )

    recorded, created = record()
    assert created
    _archive(world, what)
    again, created = record()
    assert (again.pk, created) == (recorded.pk, False)
    released = kill_switch_release(actor=world.admin, switch=world.switch, reason="retired")
    assert released.released_at is not None


@pytest.mark.parametrize("what", ["nothing", "agent", "environment", "tenant"])
def test_archived_scope__canary_analysis__leaves_its_rollout_alone(world: World, what: str) -> None:
    # the analysis would otherwise move it (or fail each tick, refused)
    if what == "tenant":
        tenant_archive(actor=world.admin, tenant=world.tenant, reason="offboarded")
    elif what != "nothing":
        _archive(world, what)
    report = rollouts_analyse_due(now=timezone.now() + timedelta(minutes=1))
    assert world.rollout.pk not in report.failed
    assert (world.rollout.pk in report.analysed) == (what == "nothing")


def test_archived_tenant__a_command__refused_too(world: World) -> None:
    tenant_archive(actor=world.admin, tenant=world.tenant, reason="offboarded")
    world.tenant.refresh_from_db()  # as a command reads it
    audited = AuditEvent.objects.count()
    with pytest.raises(ValidationError) as refused:
        runtime_token_create(
            actor=SYSTEM, tenant=world.tenant, environment=world.production, name="cli"
        )
    assert refused.value.message_dict == {"tenant": ["This tenant is archived; restore it first."]}
    with pytest.raises(CommandError, match="This tenant is archived"):
        call_command(
            "deploy",
            "--tenant",
            world.tenant.slug,
            "--agent",
            "support-bot",
            "--environment",
            "production",
            "--version",
            "1",
            "--reason",
            "cli",
        )
    assert AuditEvent.objects.count() == audited


def test_archived_agent__heartbeat_naming_it__not_counted_as_served(world: World) -> None:
    token, _ = runtime_token_create(
        actor=SYSTEM, tenant=world.tenant, environment=world.production, name="fleet"
    )
    assert served_agent_ids(token=token, agents=["support-bot"], digests=None) == {world.agent.pk}
    _archive(world, "agent")
    assert served_agent_ids(token=token, agents=["support-bot"], digests=None) is None


def test_archived_scope__api__400_with_the_field_errors(world: World) -> None:
    _archive(world, "agent")
    _archive(world, "environment")
    client = api_as(world.admin)
    renamed = client.patch(
        f"/api/v1/agents/{world.agent.pk}/", {"name": "Support bot 2"}, format="json"
    )
    assert renamed.status_code == 400, renamed.content
    assert renamed.json()["errors"]["agent"] == ["support-bot is archived."]
    rolled_back = client.post(
        "/api/v1/deployments/rollback/",
        {
            "agent": world.agent.pk,
            "environment": world.production.pk,
            "reason": "bad",
            "expected_version": Deployment.objects.get(
                agent=world.agent, environment=world.production, state=Deployment.State.LIVE
            ).sequence,
        },
        format="json",
    )
    assert rolled_back.status_code == 400, rolled_back.content
    assert rolled_back.json()["errors"]["environment"] == ["Production is archived."]
    world.agent.refresh_from_db()
    assert world.agent.name == "Support bot"
