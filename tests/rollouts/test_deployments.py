from __future__ import annotations

from decimal import Decimal
from io import StringIO
from pathlib import Path

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.management import CommandError, call_command

from apps.audit.models import AuditEvent
from apps.audit.services import SystemActor
from apps.bundles.models import BundleVersion
from apps.bundles.services import bundle_version_push, evaluation_record, promotion_gate_set
from apps.core.refusals import GateNotMet
from apps.core.roles import Role
from apps.rollouts.models import Deployment
from apps.rollouts.selectors import deployment_current, stable_deployments
from apps.rollouts.services import deployment_create, deployment_rollback
from apps.tenancy.models import Agent, Environment, Tenant

from ..factories import AgentFactory, make_user

DEMO = Path(__file__).resolve().parents[2] / "apps" / "bundles" / "demo"
ACTOR = SystemActor("test")


@pytest.fixture
def agent(tenant: Tenant) -> Agent:
    return AgentFactory(tenant=tenant, slug="support-bot", name="Support bot")


@pytest.fixture
def versions(agent: Agent):  # type: ignore[no-untyped-def]
    v1 = bundle_version_push(
        actor=ACTOR,
        agent=agent,
        message="baseline",
        source=(DEMO / "support-bot-v1.yaml").read_text(),
    ).version
    v2 = bundle_version_push(
        actor=ACTOR,
        agent=agent,
        message="friendlier",
        source=(DEMO / "support-bot-v2.yaml").read_text(),
    ).version
    return v1, v2


@pytest.mark.django_db
def test_deploy_then_rollback__stable_version_walks_back_and_revision_grows(
    tenant: Tenant, agent: Agent, versions
) -> None:  # type: ignore[no-untyped-def]
    v1, v2 = versions
    production = tenant.environments.get(slug="production")
    first = deployment_create(
        actor=ACTOR, agent=agent, environment=production, version=v1, reason="launch"
    )
    second = deployment_create(
        actor=ACTOR, agent=agent, environment=production, version=v2, reason="friendlier tone"
    )
    assert second.revision == first.revision + 1
    assert deployment_current(agent=agent, environment=production).version == v2

    back = deployment_rollback(
        actor=ACTOR, agent=agent, environment=production, reason="refunds spiked"
    )

    assert (back.version, back.kind, back.previous) == (v1, "rollback", second)
    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.state, second.state, back.state) == ("superseded", "rolled_back", "live")
    assert back.revision == second.revision + 1
    production.refresh_from_db()
    assert production.revision == back.revision
    assert [d.version for d in stable_deployments(environment_id=production.pk)] == [v1]
    actions = list(
        AuditEvent.objects.filter(action__startswith="deployment.")
        .order_by("id")
        .values_list("action", "reason")
    )
    assert actions == [
        ("deployment.deployed", "launch"),
        ("deployment.deployed", "friendlier tone"),
        ("deployment.rolled_back", "refunds spiked"),
    ]


@pytest.mark.django_db
def test_deploy__bad_requests__refused_and_nothing_changes(
    tenant: Tenant, agent: Agent, other_tenant: Tenant, versions
) -> None:  # type: ignore[no-untyped-def]
    v1, _ = versions
    production = tenant.environments.get(slug="production")
    deployment_create(actor=ACTOR, agent=agent, environment=production, version=v1, reason="launch")
    revision = Environment.objects.get(pk=production.pk).revision
    other_agent = AgentFactory(tenant=tenant, slug="other")
    cases = [
        (
            {"environment": production, "version": v1, "reason": "again"},
            "version",
        ),  # already stable
        ({"environment": production, "version": v1, "reason": " "}, "reason"),
        (
            {"environment": other_tenant.environments.get(), "version": v1, "reason": "x"},
            "environment",
        ),
    ]
    for kwargs, field in cases:
        with pytest.raises(ValidationError) as exc:
            deployment_create(actor=ACTOR, agent=agent, **kwargs)
        assert field in exc.value.message_dict
    with pytest.raises(ValidationError) as exc:
        deployment_create(
            actor=ACTOR, agent=other_agent, environment=production, version=v1, reason="x"
        )
    assert "version" in exc.value.message_dict
    with pytest.raises(ValidationError):
        deployment_rollback(
            actor=ACTOR, agent=agent, environment=production, reason="nothing earlier"
        )
    assert Deployment.objects.count() == 1
    assert Environment.objects.get(pk=production.pk).revision == revision


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("role", "allowed"),
    [(Role.ADMIN, True), (Role.OPERATOR, True), (Role.APPROVER, False), (Role.VIEWER, False)],
)
def test_deploy_page__by_role__deploys_or_refuses(
    client, tenant: Tenant, agent: Agent, versions, role: Role, allowed: bool
) -> None:  # type: ignore[no-untyped-def]
    v1, _ = versions
    production = tenant.environments.get(slug="production")
    client.force_login(make_user(role, tenant))
    response = client.post(
        f"/agents/{agent.pk}/deploy/",
        {
            "environment": production.pk,
            "version": v1.pk,
            "reason": "launch",
            "seen": f"{production.pk}:0",
        },
    )
    assert response.status_code == (302 if allowed else 403)
    assert Deployment.objects.count() == (1 if allowed else 0)


@pytest.mark.django_db
def test_agent_releases_and_rollback_pages__operator_sees_and_confirms(
    client, operator, tenant: Tenant, agent: Agent, versions
) -> None:  # type: ignore[no-untyped-def]
    v1, v2 = versions
    production = tenant.environments.get(slug="production")
    deployment_create(actor=ACTOR, agent=agent, environment=production, version=v1, reason="launch")
    deployment_create(
        actor=ACTOR, agent=agent, environment=production, version=v2, reason="friendlier"
    )
    client.force_login(operator)
    releases = client.get(f"/agents/{agent.pk}/releases/").content.decode()
    assert "v2" in releases and "Roll back to v1" in releases
    confirm = client.get(
        f"/agents/{agent.pk}/environments/{production.pk}/rollback/"
    ).content.decode()
    assert "goes back from v2 to v1" in confirm
    assert (
        client.post(
            f"/agents/{agent.pk}/environments/{production.pk}/rollback/",
            {"reason": "", "expected_version": 2},
        ).status_code
        == 200
    )
    assert Deployment.objects.count() == 2  # a rollback without a reason does nothing
    client.post(
        f"/agents/{agent.pk}/environments/{production.pk}/rollback/",
        {"reason": "bad refunds", "expected_version": 2},
    )
    assert deployment_current(agent=agent, environment=production).version == v1


@pytest.mark.django_db
def test_deploy_page__other_tenant_agent__404(client, operator, other_tenant: Tenant) -> None:  # type: ignore[no-untyped-def]
    client.force_login(operator)
    foreign = other_tenant.agents.get()
    assert client.get(f"/agents/{foreign.pk}/deploy/").status_code == 404
    assert client.get(f"/agents/{foreign.pk}/releases/").status_code == 404


@pytest.mark.django_db
def test_deploy_command__deploys_and_reports_revision(
    tenant: Tenant, agent: Agent, versions, capsys
) -> None:  # type: ignore[no-untyped-def]
    call_command("deploy", agent="support-bot", environment="staging", version=2, reason="try it")
    assert "v2 is stable" in capsys.readouterr().out
    assert (
        deployment_current(
            agent=agent, environment=tenant.environments.get(slug="staging")
        ).version.number
        == 2
    )


@pytest.fixture
def four_versions(agent: Agent) -> None:
    source = (DEMO / "support-bot-v1.yaml").read_text()
    for n in range(1, 5):
        bundle_version_push(
            actor=ACTOR,
            agent=agent,
            message=f"build {n}",
            source=source.replace("Answers customer", f"Answers (build {n}) customer"),
        )


def _stable(tenant: Tenant, agent: Agent) -> int:
    production = tenant.environments.get(slug="production")
    return deployment_current(agent=agent, environment=production).version.number


@pytest.mark.django_db
@pytest.mark.parametrize("first_rollback_by", ["cli", "service"])
def test_deploy_command__rollback__same_walk_as_ui_and_api_never_into_a_rollback(
    tenant: Tenant, agent: Agent, four_versions: None, capsys, first_rollback_by: str
) -> None:  # type: ignore[no-untyped-def]
    production = tenant.environments.get(slug="production")
    for n in (2, 3, 4):
        call_command("deploy", agent="support-bot", environment="production", version=n, reason="r")
    capsys.readouterr()
    if first_rollback_by == "cli":
        call_command(
            "deploy", agent="support-bot", environment="production", rollback=True, reason="bad"
        )
        assert "rolled back to v3 from v4" in capsys.readouterr().out
    else:
        deployment_rollback(actor=ACTOR, agent=agent, environment=production, reason="bad")
    assert _stable(tenant, agent) == 3

    call_command(
        "deploy", agent="support-bot", environment="production", rollback=True, reason="bad too"
    )
    assert "rolled back to v2 from v3" in capsys.readouterr().out
    assert _stable(tenant, agent) == 2
    events = AuditEvent.objects.count()
    with pytest.raises(CommandError, match="no known-good version"):
        call_command(
            "deploy", agent="support-bot", environment="production", rollback=True, reason="again"
        )
    assert _stable(tenant, agent) == 2 and AuditEvent.objects.count() == events
    kinds = list(
        Deployment.objects.filter(agent=agent, environment=production)
        .order_by("sequence")
        .values_list("version__number", "kind", "state")
    )
    assert kinds[-2:] == [(3, "rollback", "rolled_back"), (2, "rollback", "live")]


@pytest.mark.django_db
def test_deploy_command__version_or_rollback__exactly_one(
    tenant: Tenant, agent: Agent, four_versions: None
) -> None:
    for options in ({}, {"version": 2, "rollback": True}):
        with pytest.raises(CommandError):
            call_command(
                "deploy",
                "--agent=support-bot",
                "--environment=production",
                "--reason=r",
                *(["--version=2", "--rollback"] if options else []),
            )
    assert not Deployment.objects.exists()


def _production_gate(tenant: Tenant) -> None:
    promotion_gate_set(
        actor=ACTOR,
        environment=tenant.environments.get(slug="production"),
        requirements=[
            {"suite": "golden", "min_pass_rate": Decimal("0.95")},
            {"suite": "adversarial", "min_pass_rate": Decimal("0.9")},
        ],
    )


@pytest.mark.django_db
def test_deploy_command__gate_not_met__refused_naming_each_suite_then_overridden(
    tenant: Tenant, agent: Agent, four_versions: None, capsys
) -> None:  # type: ignore[no-untyped-def]
    _production_gate(tenant)
    v3 = BundleVersion.objects.get(agent=agent, number=3)
    evaluation_record(actor=ACTOR, version=v3, suite="golden", passed=91, failed=9)
    events = AuditEvent.objects.count()
    with pytest.raises(CommandError) as refused:
        call_command("deploy", agent="support-bot", environment="production", version=3, reason="r")
    message = str(refused.value)
    assert "Not allowed to deploy v3 in Production yet" in message
    assert "  adversarial: no results yet (needs 90.0%)" in message
    assert "  golden: 91.0% < 95.0% required (9 of 100 failed)" in message
    assert "--override-gate" in message
    assert AuditEvent.objects.count() == events and not Deployment.objects.exists()

    call_command(
        "deploy",
        agent="support-bot",
        environment="production",
        version=3,
        reason="r",
        override_gate="hotfix for the outage",
    )
    assert "v3 is stable" in capsys.readouterr().out
    deployment = Deployment.objects.get()
    assert deployment.gate_override == "hotfix for the outage"
    event = AuditEvent.objects.get(action="deployment.deployed")
    assert event.after["gate_override"] == "hotfix for the outage"
    assert len(event.after["gate_failures"]) == 2


@pytest.mark.django_db
def test_deployment_create__gate_not_met__operator_refused_admin_overrides(
    tenant: Tenant, agent: Agent, four_versions: None
) -> None:

    _production_gate(tenant)
    production = tenant.environments.get(slug="production")
    v2 = BundleVersion.objects.get(agent=agent, number=2)
    operator = make_user(Role.OPERATOR, tenant)
    with pytest.raises(GateNotMet) as refused:
        deployment_create(
            actor=operator, agent=agent, environment=production, version=v2, reason="r"
        )
    assert refused.value.lines == [
        "adversarial: no results yet (needs 90.0%)",
        "golden: no results yet (needs 95.0%)",
    ]
    with pytest.raises(PermissionDenied, match="ask an Admin"):
        deployment_create(
            actor=operator,
            agent=agent,
            environment=production,
            version=v2,
            reason="r",
            override_reason="trust me",
        )
    assert not Deployment.objects.exists()
    admin = make_user(Role.ADMIN)
    deployment = deployment_create(
        actor=admin,
        agent=agent,
        environment=production,
        version=v2,
        reason="r",
        override_reason="trust me",
    )
    assert deployment.gate_override == "trust me"
    # staging has no gate: nothing to override, nothing recorded
    staging = tenant.environments.get(slug="staging")
    plain = deployment_create(
        actor=operator, agent=agent, environment=staging, version=v2, reason="r"
    )
    assert plain.gate_override == ""


@pytest.mark.django_db
def test_seed_demo__deploys_into_gated_environments_on_recorded_evidence_no_override() -> None:
    call_command("seed_demo", stdout=StringIO())
    production = Deployment.objects.filter(environment__slug="production")
    assert production.count() == 2  # support-bot and refund-agent v1
    assert not Deployment.objects.exclude(gate_override="").exists()
    assert not AuditEvent.objects.filter(after__has_key="gate_override").exists()
