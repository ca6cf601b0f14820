"""``/api/v1/deployments/``: the release history listed (filtered, scoped to the caller's
tenants), deploy (bad input 400 by field, a promotion gate not met 422 naming each missing or
short evaluation, an Admin's override with a reason audited, an Operator's refused 403) and
rollback (expected version required, never gated, optional earlier known-good target)."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from django.db.models import Model
from rest_framework.test import APIClient

from apps.audit.models import AuditEvent
from apps.audit.services import SystemActor
from apps.bundles.models import BundleVersion
from apps.bundles.services import bundle_version_push, evaluation_record, promotion_gate_set
from apps.core.roles import Role
from apps.rollouts.models import Deployment
from apps.rollouts.services import deployment_create
from apps.tenancy.models import Agent, Tenant

from ..api_permissions import APIViewTestCases
from ..conftest import api_as
from ..factories import AgentFactory, make_user
from ..races import postgresql_only, race
from ..tables import row_counts

DEMO = Path(__file__).resolve().parents[2] / "apps" / "bundles" / "demo"
ACTOR = SystemActor("test")
URL = "/api/v1/deployments/"


def _agent(tenant: Tenant, slug: str = "support-bot", versions: int = 4) -> Agent:
    agent = AgentFactory(tenant=tenant, slug=slug, name=slug.replace("-", " ").title())
    source = (DEMO / "support-bot-v1.yaml").read_text()
    for n in range(1, versions + 1):
        bundle_version_push(
            actor=ACTOR,
            agent=agent,
            message=f"build {n}",
            source=source.replace("Answers customer", f"Answers (build {n}) customer"),
        )
    return agent


def _gated(tenant: Tenant) -> Agent:
    """Production's gate: golden ≥ 95%, adversarial ≥ 90%. v1 and v4 meet it, v2 is short
    on adversarial (82%), v3 has no results at all."""
    agent = _agent(tenant)
    promotion_gate_set(
        actor=ACTOR,
        environment=tenant.environments.get(slug="production"),
        requirements=[
            {"suite": "golden", "min_pass_rate": Decimal("0.95")},
            {"suite": "adversarial", "min_pass_rate": Decimal("0.9")},
        ],
    )
    results = {1: [(98, 2), (47, 3)], 2: [(97, 3), (41, 9)], 4: [(99, 1), (48, 2)]}
    for number, ((gp, gf), (ap, af)) in results.items():
        version = BundleVersion.objects.get(agent=agent, number=number)
        evaluation_record(actor=ACTOR, version=version, suite="golden", passed=gp, failed=gf)
        evaluation_record(actor=ACTOR, version=version, suite="adversarial", passed=ap, failed=af)
    return agent


def _body(agent: Agent, environment_slug: str, version: int, **extra: Any) -> dict[str, Any]:
    environment = agent.tenant.environments.get(slug=environment_slug)
    return {
        "agent": agent.pk,
        "environment": environment.pk,
        "version": version,
        "reason": "ship it",
        **extra,
    }


def _state() -> tuple[dict[str, int], int]:
    return row_counts(), AuditEvent.objects.count()


@pytest.mark.django_db
def test_deployments_api__deploy_then_list__filtered_by_agent_and_environment(
    tenant: Tenant,
) -> None:
    agent = _gated(tenant)
    other = _agent(tenant, slug="refund-agent", versions=1)
    alice = api_as(make_user(Role.OPERATOR, tenant, username="alice"))
    first = alice.post(URL, _body(agent, "production", 1, expected_version=0), format="json")
    assert first.status_code == 201, first.content
    assert first["ETag"] == '"1"'
    body = first.json()
    assert (body["bundle_version"], body["state"], body["kind"], body["sequence"]) == (
        1,
        "live",
        "deploy",
        1,
    )
    assert body["deployed_by"] == "alice" and body["gate_override"] == ""
    second = alice.post(URL, _body(agent, "production", 4, expected_version=1), format="json")
    assert second.status_code == 201, second.content
    assert second.json()["previous_bundle_version"] == 1
    assert alice.post(URL, _body(other, "staging", 1), format="json").status_code == 201
    production = tenant.environments.get(slug="production")

    listed = alice.get(URL, {"agent": agent.pk, "environment": production.pk}).json()
    assert [(d["bundle_version"], d["state"]) for d in listed["results"]] == [
        (4, "live"),
        (1, "superseded"),
    ]
    live = alice.get(URL, {"state": "live"}).json()["results"]
    assert sorted((d["agent_slug"], d["environment_slug"]) for d in live) == [
        ("refund-agent", "staging"),
        ("support-bot", "production"),
    ]
    one = alice.get(f"{URL}{second.json()['id']}/")
    assert one.status_code == 200 and one.json()["bundle_version"] == 4
    event = AuditEvent.objects.filter(action="deployment.deployed").order_by("-id")[1]
    assert event.reason == "ship it" and event.after["stable_version"].endswith("v4")


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("query", "field"),
    [({"agent": "x"}, "agent"), ({"environment": "-1"}, "environment"), ({"state": "on"}, "state")],
)
def test_deployments_api__bad_filter__400_by_field(
    tenant: Tenant, query: dict[str, str], field: str
) -> None:
    response = api_as(make_user(Role.VIEWER, tenant)).get(URL, query)
    assert response.status_code == 400, response.content
    assert field in response.json()["errors"]


@pytest.mark.django_db
def test_deployments_api__other_tenant__not_listed_and_not_reachable(
    tenant: Tenant, other_tenant: Tenant
) -> None:
    agent = _agent(tenant, versions=1)
    secret = other_tenant.agents.get(slug="secret-agent")
    source = (DEMO / "support-bot-v1.yaml").read_text()
    bundle_version_push(actor=ACTOR, agent=secret, message="b", source=source)
    theirs = deployment_create(
        actor=ACTOR,
        agent=secret,
        environment=other_tenant.environments.get(slug="production"),
        version=BundleVersion.objects.get(agent=secret),
        reason="theirs",
    )
    ours = deployment_create(
        actor=ACTOR,
        agent=agent,
        environment=tenant.environments.get(slug="staging"),
        version=BundleVersion.objects.get(agent=agent),
        reason="ours",
    )
    olivia = api_as(make_user(Role.OPERATOR, tenant))
    assert [d["id"] for d in olivia.get(URL).json()["results"]] == [ours.pk]
    assert olivia.get(f"{URL}{theirs.pk}/").status_code == 404
    assert olivia.get(URL, {"agent": secret.pk}).status_code == 404
    before = _state()
    body = _body(secret, "production", 1)
    assert olivia.post(URL, body, format="json").status_code == 404
    rollback = {**body, "expected_version": 1}
    assert olivia.post(f"{URL}rollback/", rollback, format="json").status_code == 404
    # our agent into their environment: not reachable either
    mixed = {**_body(agent, "staging", 1), "environment": body["environment"]}
    assert olivia.post(URL, mixed, format="json").status_code == 404
    assert _state() == before
    admin = api_as(make_user(Role.ADMIN))
    assert {d["id"] for d in admin.get(URL).json()["results"]} == {ours.pk, theirs.pk}


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"reason": ""}, "reason"),
        ({"reason": None}, "reason"),
        ({"version": 0}, "version"),
        ({"version": "v2"}, "version"),
        ({"version": 99}, "version"),
        ({"agent": None}, "agent"),
        ({"environment": "production"}, "environment"),
        ({"expected_version": -1}, "expected_version"),
        ({"override_gate": True}, "override_reason"),
        ({"override_gate": True, "override_reason": "   "}, "override_reason"),
        ({"override_reason": "hotfix"}, "override_gate"),
        ({"override_gate": "maybe"}, "override_gate"),
    ],
)
def test_deployments_api__bad_input__400_by_field_and_nothing_changes(
    tenant: Tenant, change: dict[str, Any], field: str
) -> None:
    agent = _gated(tenant)
    admin = api_as(make_user(Role.ADMIN, username="ada"))
    before = _state()
    response = admin.post(URL, {**_body(agent, "staging", 2), **change}, format="json")
    assert response.status_code == 400, response.content
    assert field in response.json()["errors"], response.json()
    assert _state() == before


@pytest.mark.django_db
def test_deployments_api__stale_expected_version__409_naming_who_and_nothing_changes(
    tenant: Tenant,
) -> None:
    agent = _gated(tenant)
    deployment_create(
        actor=make_user(Role.OPERATOR, tenant, username="alice"),
        agent=agent,
        environment=tenant.environments.get(slug="staging"),
        version=BundleVersion.objects.get(agent=agent, number=1),
        reason="first",
    )
    bob = api_as(make_user(Role.OPERATOR, tenant, username="bob"))
    before = _state()
    stale = bob.post(URL, _body(agent, "staging", 2, expected_version=0), format="json")
    assert stale.status_code == 409, stale.content
    assert stale.json()["changed_by"] == "alice" and stale.json()["current_version"] == 1
    again = bob.post(URL, _body(agent, "staging", 1), format="json")
    assert again.status_code == 400 and "already the stable version" in str(again.json())
    assert _state() == before


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("version", "lines"),
    [
        (3, ["adversarial: no results yet (needs 90.0%)", "golden: no results yet (needs 95.0%)"]),
        (2, ["adversarial: 82.0% < 90.0% required (9 of 50 failed)"]),
    ],
)
def test_deployments_api__gate_not_met__422_names_each_missing_or_short_suite(
    tenant: Tenant, version: int, lines: list[str]
) -> None:
    agent = _gated(tenant)
    operator = api_as(make_user(Role.OPERATOR, tenant))
    before = _state()
    refused = operator.post(URL, _body(agent, "production", version), format="json")
    assert refused.status_code == 422, refused.content
    body = refused.json()
    assert body["errors"] == {"version": lines}
    assert f"v{version} in Production" in body["detail"] and "Admin may override" in body["detail"]
    assert body["gate"]["met"] is False
    assert {c["suite"]: c["met"] for c in body["gate"]["checks"]} == {
        "adversarial": False,
        "golden": version == 2,
    }
    assert _state() == before
    # staging has no gate: the same version deploys there
    assert operator.post(URL, _body(agent, "staging", version), format="json").status_code == 201


@pytest.mark.django_db
def test_deployments_api__override__operator_403_admin_201_reason_audited(
    tenant: Tenant,
) -> None:
    agent = _gated(tenant)
    override = {"override_gate": True, "override_reason": "security hotfix, evals run tonight"}
    body = _body(agent, "production", 3, **override)
    operator = api_as(make_user(Role.OPERATOR, tenant))
    before = _state()
    refused = operator.post(URL, body, format="json")
    assert refused.status_code == 403, refused.content
    assert "ask an Admin" in refused.json()["detail"]
    assert _state() == before
    admin = api_as(make_user(Role.ADMIN, username="ada"))
    deployed = admin.post(URL, body, format="json")
    assert deployed.status_code == 201, deployed.content
    assert deployed.json()["gate_override"] == "security hotfix, evals run tonight"
    event = AuditEvent.objects.get(action="deployment.deployed")
    assert event.actor_label == "ada" and event.reason == "ship it"
    assert event.after["gate_override"] == "security hotfix, evals run tonight"
    assert event.after["gate_failures"] == [
        "adversarial: no results yet (needs 90.0%)",
        "golden: no results yet (needs 95.0%)",
    ]
    # a met gate needs no override, and records none
    met = admin.post(URL, _body(agent, "production", 4, **override), format="json")
    assert met.status_code == 201 and met.json()["gate_override"] == ""


@pytest.mark.django_db
def test_deployments_api__rollback__never_gated_walks_back_and_needs_the_version_read(
    tenant: Tenant,
) -> None:
    agent = _gated(tenant)
    production = tenant.environments.get(slug="production")
    admin = make_user(Role.ADMIN, username="ada")
    for number, override in ((1, ""), (3, "hotfix"), (4, "")):
        deployment_create(
            actor=admin,
            agent=agent,
            environment=production,
            version=BundleVersion.objects.get(agent=agent, number=number),
            reason="ship",
            override_reason=override,
        )
    operator = api_as(make_user(Role.OPERATOR, tenant, username="olivia"))
    body = {"agent": agent.pk, "environment": production.pk, "reason": "errors spiking"}
    rollback = f"{URL}rollback/"
    before = _state()
    missing = operator.post(rollback, body, format="json")
    assert missing.status_code == 400 and "expected_version" in missing.json()["errors"]
    stale = operator.post(rollback, {**body, "expected_version": 2}, format="json")
    assert stale.status_code == 409 and stale.json()["current_version"] == 3
    never_served = operator.post(rollback, {**body, "expected_version": 3, "version": 2})
    assert never_served.status_code == 400, never_served.content
    assert "may go to: v3, v1" in never_served.json()["errors"]["version"][0]
    assert _state() == before

    # v3 never met production's gate, yet a rollback to it is not refused: it served here
    back = operator.post(rollback, {**body, "expected_version": 3}, format="json")
    assert back.status_code == 201, back.content
    assert back.json()["rolled_back"] == "stable" and back.json()["rollout"] is None
    assert back.json()["deployment"]["bundle_version"] == 3
    assert back.json()["deployment"]["kind"] == "rollback"
    event = AuditEvent.objects.filter(action="deployment.rolled_back").get()
    assert event.actor_label == "olivia" and event.reason == "errors spiking"
    # the second, stale click of the same rollback goes nowhere
    assert operator.post(rollback, {**body, "expected_version": 3}).status_code == 409
    # further back, by name: v1 (v4 was rolled back from and is never a target)
    further = operator.post(rollback, {**body, "version": 1}, headers={"If-Match": '"4"'})
    assert further.status_code == 201, further.content
    assert further.json()["deployment"]["bundle_version"] == 1
    assert further.json()["summary"] == "Rolled back to v1."
    listed = api_as(admin).get(URL, {"agent": agent.pk, "environment": production.pk})
    assert [(d["bundle_version"], d["state"]) for d in listed.json()["results"]] == [
        (1, "live"),
        (3, "rolled_back"),
        (4, "rolled_back"),
        (3, "superseded"),
        (1, "superseded"),
    ]


def _release_agent(tenant: Tenant) -> Agent:
    agent = AgentFactory(tenant=tenant, slug="release-bot", name="Release bot")
    source = (DEMO / "support-bot-v1.yaml").read_text()
    bundle_version_push(actor=ACTOR, agent=agent, message="build 1", source=source)
    return agent


@pytest.mark.django_db
class TestDeploymentAPIPermissions(
    APIViewTestCases.GetObject, APIViewTestCases.ListObjects, APIViewTestCases.CreateObject
):
    """Shared suite (tests/api_permissions.py): reads by rollouts.view_deployment, deploys by
    rollouts.add_deployment, only in the caller's tenants."""

    model = Deployment
    list_url = URL

    def make_object(self, tenant: Tenant) -> Model:
        agent = _release_agent(tenant)
        return deployment_create(
            actor=ACTOR,
            agent=agent,
            environment=tenant.environments.order_by("position")[0],
            version=BundleVersion.objects.get(agent=agent),
            reason="r",
        )

    def prepare_create(self, tenant: Tenant) -> None:
        _release_agent(tenant)

    def create(self, client: APIClient, tenant: Tenant) -> Any:
        agent = tenant.agents.get(slug="release-bot")
        body = {
            "agent": agent.pk,
            "environment": tenant.environments.order_by("position")[0].pk,
            "version": 1,
            "reason": "r",
        }
        return client.post(URL, body, format="json")


@pytest.mark.django_db
def test_release_deploy_endpoint__same_gate__422_then_admin_override(tenant: Tenant) -> None:
    agent = _gated(tenant)
    production = tenant.environments.get(slug="production")
    url = f"/api/v1/agents/{agent.pk}/releases/{production.pk}/deploy/"
    body = {"version": 3, "reason": "r", "expected_version": 0}
    refused = api_as(make_user(Role.OPERATOR, tenant)).post(url, body, format="json")
    assert refused.status_code == 422, refused.content
    assert refused.json()["errors"]["version"] == [
        "adversarial: no results yet (needs 90.0%)",
        "golden: no results yet (needs 95.0%)",
    ]
    admin = api_as(make_user(Role.ADMIN))
    deployed = admin.post(url, {**body, "override_reason": "hotfix"}, format="json")
    assert deployed.status_code == 201, deployed.content
    assert Deployment.objects.get().gate_override == "hotfix"


@pytest.mark.django_db(transaction=True)
def test_deployments_api__same_deploy_twice_at_once__postgresql__applied_once(
    tenant: Tenant,
) -> None:
    """A pipeline retrying a deploy while the first is in flight: one 201, one 400 (already
    stable), one deployment and one audit event."""
    postgresql_only()
    agent = _gated(tenant)
    alice = make_user(Role.OPERATOR, tenant, username="alice")
    body = _body(agent, "production", 4)
    results, _ = race(*[(lambda: api_as(alice).post(URL, body, format="json")) for _ in range(2)])
    assert sorted(r.status_code for r in results) == [201, 400]
    assert Deployment.objects.count() == 1
    assert AuditEvent.objects.filter(action="deployment.deployed").count() == 1


@pytest.mark.django_db(transaction=True)
def test_deployments_api__two_rollbacks_at_once__postgresql__one_wins_one_409(
    tenant: Tenant,
) -> None:
    postgresql_only()
    agent = _gated(tenant)
    production = tenant.environments.get(slug="production")
    for number in (1, 2, 4):
        deployment_create(
            actor=ACTOR,
            agent=agent,
            environment=production,
            version=BundleVersion.objects.get(agent=agent, number=number),
            reason="ship",
            override_reason="test history",
        )
    body = {"agent": agent.pk, "environment": production.pk, "reason": "bad", "expected_version": 3}
    users = [make_user(Role.OPERATOR, tenant, username=name) for name in ("alice", "bob")]
    results, _ = race(
        *[(lambda u=u: api_as(u).post(f"{URL}rollback/", body, format="json")) for u in users]
    )
    assert sorted(r.status_code for r in results) == [201, 409]
    assert Deployment.objects.get(state="live").version.number == 2
