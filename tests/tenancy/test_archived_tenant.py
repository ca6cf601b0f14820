"""An archived tenant is frozen: a person's change in it is refused (400, a field error on
``tenant``, nothing written, nothing audited) until it is restored. What still goes through is
what takes something away from it (a runtime token revoked, an alert acknowledged, an alert
channel removed, a rollout's candidate taken back) and the restore itself. One check for every
service (``apps.core.authz.authorize``), so this walks several kinds of change."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from django.core.exceptions import ValidationError

from apps.accounts.models import RuntimeToken
from apps.accounts.runtime_tokens import runtime_token_create, runtime_token_revoke
from apps.alerts.models import AlertChannel
from apps.alerts.services import alert_channel_create, alert_channel_delete
from apps.approvals.services import queue_create
from apps.audit.models import AuditEvent
from apps.audit.services import SystemActor
from apps.budgets.services import budget_create
from apps.bundles.models import BundleVersion
from apps.bundles.services import bundle_version_push
from apps.flags.services import flag_create
from apps.reviews.services import review_policy_set
from apps.rollouts.models import Rollout
from apps.rollouts.plans import default_plan
from apps.rollouts.services import (
    deployment_create,
    rollout_plan_set,
    rollout_start,
    rollout_transition,
)
from apps.tenancy.models import Agent, Environment, Tenant
from apps.tenancy.services import (
    agent_archive,
    agent_create,
    environment_archive,
    environment_create,
    tenant_archive,
    tenant_restore,
    tenant_update,
)

from ..conftest import api_as
from ..factories import AgentFactory

DEMO = Path(__file__).resolve().parents[2] / "apps" / "bundles" / "demo"
SYSTEM = SystemActor("test")
FROZEN = {"tenant": ["This tenant is archived; restore it first."]}
HOOK = "http://127.0.0.1:9/alerts"  # never called: loopback, allowed for the test (below)


@dataclass
class World:
    admin: Any
    tenant: Tenant
    agent: Agent
    production: Environment
    versions: list[BundleVersion]
    token: RuntimeToken
    channel: AlertChannel


def _push_v1_and_v2(agent: Agent) -> list[BundleVersion]:
    """The demo's support-bot v1 and v2, pushed as versions of ``agent``."""
    return [
        bundle_version_push(
            actor=SYSTEM,
            agent=agent,
            message=f"v{n}",
            source=(DEMO / f"support-bot-v{n}.yaml").read_text(),
        ).version
        for n in (1, 2)
    ]


@pytest.fixture
def world(tenant: Tenant, admin: Any, settings: Any) -> World:
    settings.RUNTIME_PUSH_ALLOWED_CIDRS = ["127.0.0.0/8"]  # the alert channels' receiver
    agent = AgentFactory(tenant=tenant, slug="support-bot", name="Support bot")
    production = tenant.environments.get(slug="production")
    versions = _push_v1_and_v2(agent)
    deployment_create(
        actor=SYSTEM, agent=agent, environment=production, version=versions[0], reason="first"
    )
    token, _ = runtime_token_create(
        actor=SYSTEM, tenant=tenant, environment=production, name="fleet"
    )
    channel, _ = alert_channel_create(actor=SYSTEM, tenant=tenant, name="on-call", url=HOOK)
    tenant_archive(actor=admin, tenant=tenant, reason="offboarded")
    tenant.refresh_from_db()
    return World(admin, tenant, agent, production, versions, token, channel)


CHANGES: dict[str, Callable[[World], object]] = {
    "deploy": lambda w: deployment_create(
        actor=w.admin,
        agent=w.agent,
        environment=w.production,
        version=w.versions[1],
        reason="hotfix",
    ),
    "start a rollout": lambda w: rollout_start(
        actor=w.admin,
        agent=w.agent,
        environment=w.production,
        candidate=w.versions[1],
        reason="canary",
    ),
    "set the rollout plan": lambda w: rollout_plan_set(
        actor=w.admin, environment=w.production, document=default_plan(), reason="slower"
    ),
    "create a budget": lambda w: budget_create(
        actor=w.admin,
        tenant=w.tenant,
        data={
            "name": "hourly",
            "scope": "tenant",
            "window": "hour",
            "limits": {"cost_usd": "5.00"},
        },
    ),
    "create a flag": lambda w: flag_create(
        actor=w.admin, environment=w.production, name="new-checkout", reason="launch"
    ),
    "create a runtime token": lambda w: runtime_token_create(
        actor=w.admin, tenant=w.tenant, environment=w.production, name="another"
    ),
    "create an alert channel": lambda w: alert_channel_create(
        actor=w.admin, tenant=w.tenant, name="pager", url=HOOK
    ),
    "create an approval queue": lambda w: queue_create(
        actor=w.admin, tenant=w.tenant, data={"name": "refunds"}
    ),
    "create an agent": lambda w: agent_create(
        actor=w.admin, tenant=w.tenant, slug="refund-agent", name="Refund agent"
    ),
    "create an environment": lambda w: environment_create(
        actor=w.admin, tenant=w.tenant, slug="qa", name="QA"
    ),
    "rename the tenant": lambda w: tenant_update(actor=w.admin, tenant=w.tenant, name="Acme Ltd"),
}


@pytest.mark.parametrize("change", CHANGES)
def test_archived_tenant__a_change__refused_nothing_written(world: World, change: str) -> None:
    audited = AuditEvent.objects.count()
    with pytest.raises(ValidationError) as refused:
        CHANGES[change](world)
    assert refused.value.message_dict == FROZEN
    assert AuditEvent.objects.count() == audited


def test_archived_tenant__restored__the_same_changes_go_through(world: World) -> None:
    tenant_restore(actor=world.admin, tenant=world.tenant, reason="back")
    world.tenant.refresh_from_db()
    for change in ("start a rollout", "create a budget", "create an agent"):
        CHANGES[change](world)
    assert Rollout.objects.filter(agent=world.agent).count() == 1


def test_archived_tenant__what_takes_something_away__still_goes_through(world: World) -> None:
    # a leaked token must not wait for a restore, which would make it valid again
    revoked = runtime_token_revoke(actor=world.admin, token=world.token, reason="leaked")
    assert revoked.revoked_at is not None
    alert_channel_delete(actor=world.admin, channel=world.channel, reason="gone")
    assert not AlertChannel.objects.filter(pk=world.channel.pk).exists()


def test_archived_tenant__a_running_rollout__taken_back_never_pushed_further(
    tenant: Tenant, admin: Any
) -> None:
    agent = AgentFactory(tenant=tenant, slug="support-bot", name="Support bot")
    production = tenant.environments.get(slug="production")
    v1, v2 = _push_v1_and_v2(agent)
    deployment_create(actor=SYSTEM, agent=agent, environment=production, version=v1, reason="r")
    rollout = rollout_start(
        actor=SYSTEM, agent=agent, environment=production, candidate=v2, reason="canary"
    )
    tenant_archive(actor=admin, tenant=tenant, reason="offboarded")
    for event in ("advance", "complete"):
        with pytest.raises(ValidationError) as refused:
            rollout_transition(actor=admin, rollout_id=rollout.pk, event=event, reason="go")
        assert refused.value.message_dict == FROZEN
    result = rollout_transition(
        actor=admin, rollout_id=rollout.pk, event="rollback", reason="tenant offboarded"
    )
    assert result.rollout.state == Rollout.State.ROLLED_BACK


def test_archived_tenant__api__400_with_the_field_error(world: World, admin: Any) -> None:
    budgets = AuditEvent.objects.filter(action="budget.created").count()
    response = api_as(admin).post(
        "/api/v1/budgets/",
        {
            "tenant": world.tenant.pk,
            "name": "hourly",
            "scope": "tenant",
            "window": "hour",
            "limits": {"cost_usd": "5.00"},
        },
        format="json",
    )
    assert response.status_code == 400, response.content
    assert response.json()["errors"]["tenant"] == FROZEN["tenant"]
    assert AuditEvent.objects.filter(action="budget.created").count() == budgets


def test_archived_environment_or_agent__in_an_active_tenant__their_settings_frozen(
    tenant: Tenant, admin: Any
) -> None:
    # the same kind one level down: an archived environment keeps its rollout plan, an
    # archived agent its review sampling
    staging = tenant.environments.get(slug="staging")
    agent = AgentFactory(tenant=tenant, slug="support-bot", name="Support bot")
    environment_archive(actor=admin, environment=staging, reason="unused")
    agent_archive(actor=admin, agent=agent, reason="retired")
    audited = AuditEvent.objects.count()
    with pytest.raises(ValidationError) as refused:
        rollout_plan_set(actor=admin, environment=staging, document=default_plan(), reason="r")
    assert refused.value.message_dict == {"environment": ["Staging is archived."]}
    with pytest.raises(ValidationError) as refused:
        review_policy_set(actor=admin, agent=agent, share=Decimal("0.1"))
    assert refused.value.message_dict == {"agent": ["support-bot is archived."]}
    assert AuditEvent.objects.count() == audited
