"""Deploy and roll back over the API: the release version is required, a stale one is a
409 naming who changed the stable version, rollback walks back through known-good
versions only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.db.models import Model
from rest_framework.test import APIClient

from apps.audit.models import AuditEvent
from apps.audit.services import SystemActor
from apps.bundles.models import BundleVersion
from apps.bundles.services import bundle_version_push
from apps.core.roles import Role
from apps.rollouts.models import Deployment
from apps.rollouts.services import deployment_create
from apps.tenancy.models import Agent, Environment, Tenant

from ..api_permissions import APIViewTestCases
from ..conftest import api_as
from ..factories import AgentFactory, make_user

DEMO = Path(__file__).resolve().parents[2] / "apps" / "bundles" / "demo"
ACTOR = SystemActor("test")


@pytest.fixture
def agent(tenant: Tenant) -> Agent:
    agent = AgentFactory(tenant=tenant, slug="support-bot", name="Support bot")
    source = (DEMO / "support-bot-v1.yaml").read_text()
    for n in range(1, 5):
        bundle_version_push(
            actor=ACTOR,
            agent=agent,
            message=f"build {n}",
            source=source.replace("Answers customer", f"Answers (build {n}) customer"),
        )
    assert BundleVersion.objects.filter(agent=agent).count() == 4
    return agent


def _url(agent: Agent, environment_id: int, action: str = "") -> str:
    return f"/api/v1/agents/{agent.pk}/releases/{environment_id}/{action}"


@pytest.mark.django_db
def test_release_api__deploy_v2_v3_v4_then_rollbacks__walk_back_then_refuse(
    tenant: Tenant, agent: Agent
) -> None:
    alice = api_as(make_user(Role.OPERATOR, tenant, username="alice"))
    production = tenant.environments.get(slug="production")
    for n in (2, 3, 4):
        seen = alice.get(_url(agent, production.pk)).json()["version"]
        response = alice.post(
            _url(agent, production.pk, "deploy/"),
            {"version": n, "reason": f"ship v{n}", "expected_version": seen},
            format="json",
        )
        assert response.status_code == 201, response.content
        assert response.json()["stable_version"] == n
    for target in (3, 2):
        release = alice.get(_url(agent, production.pk))
        assert release.json()["rollback_target"] == target
        assert release["ETag"] == f'"{release.json()["version"]}"'
        response = alice.post(
            _url(agent, production.pk, "rollback/"),
            {"reason": "bad"},
            format="json",
            headers={"If-Match": release["ETag"]},
        )
        assert response.status_code == 201, response.content
        assert (response.json()["stable_version"], response.json()["kind"]) == (target, "rollback")
    refused = alice.post(
        _url(agent, production.pk, "rollback/"),
        {
            "reason": "bad",
            "expected_version": alice.get(_url(agent, production.pk)).json()["version"],
        },
        format="json",
    )
    assert refused.status_code == 400
    assert "no known-good version before v2" in refused.json()["errors"]["version"][0]
    listed = {
        r["environment_slug"]: r for r in alice.get(f"/api/v1/agents/{agent.pk}/releases/").json()
    }
    assert listed["production"]["stable_version"] == 2 and listed["staging"]["version"] == 0


@pytest.mark.django_db
@pytest.mark.parametrize("action", ["deploy/", "rollback/"])
def test_release_api__missing_or_stale_version__refused_and_nothing_changes(
    tenant: Tenant, agent: Agent, action: str
) -> None:
    staging = tenant.environments.get(slug="staging")
    alice = make_user(Role.OPERATOR, tenant, username="alice")
    for n in (1, 2):
        deployment_create(
            actor=alice,
            agent=agent,
            environment=staging,
            version=BundleVersion.objects.get(agent=agent, number=n),
            reason="ship",
        )
    bob = api_as(make_user(Role.OPERATOR, tenant, username="bob"))
    body = {"reason": "r", "version": 3}
    before = (Deployment.objects.count(), AuditEvent.objects.count())
    missing = bob.post(_url(agent, staging.pk, action), body, format="json")
    assert missing.status_code == 400 and "expected_version" in missing.json()["errors"]
    for stale in ({"expected_version": 1}, {"expected_version": 0}, {"expected_version": 9}):
        response = bob.post(_url(agent, staging.pk, action), {**body, **stale}, format="json")
        assert response.status_code == 409, response.content
        assert response.json()["changed_by"] == "alice"
        assert response.json()["current_version"] == 2
        assert "was changed by alice" in response.json()["detail"]
    assert (Deployment.objects.count(), AuditEvent.objects.count()) == before


@pytest.mark.django_db
def test_release_api__unknown_version__400_nothing_deployed(tenant: Tenant, agent: Agent) -> None:
    production = tenant.environments.get(slug="production")
    body = {"version": 99, "reason": "r", "expected_version": 0}
    operator = api_as(make_user(Role.OPERATOR, tenant))
    unknown = operator.post(_url(agent, production.pk, "deploy/"), body, format="json")
    assert unknown.status_code == 400 and "version" in unknown.json()["errors"]
    assert Deployment.objects.count() == 0


def _release_agent(tenant: Tenant) -> Agent:
    agent = AgentFactory(tenant=tenant, slug="release-bot", name="Release bot")
    source = (DEMO / "support-bot-v1.yaml").read_text()
    bundle_version_push(actor=ACTOR, agent=agent, message="build 1", source=source)
    return agent


@pytest.mark.django_db
class TestReleaseAPIPermissions(APIViewTestCases.GetObject, APIViewTestCases.CreateObject):
    """Shared suite (tests/api_permissions.py). A release is reached as an agent's
    environment, by the deployment permissions; deploying creates a deployment."""

    model = Deployment
    id_key = "environment"

    def make_object(self, tenant: Tenant) -> Environment:
        _release_agent(tenant)
        return tenant.environments.order_by("position")[0]

    def detail_url(self, obj: Model) -> str:
        assert isinstance(obj, Environment)
        return _url(obj.tenant.agents.get(slug="release-bot"), obj.pk)

    def prepare_create(self, tenant: Tenant) -> None:
        _release_agent(tenant)

    def create(self, client: APIClient, tenant: Tenant) -> Any:
        environment = self.make_object_environment(tenant)
        body = {"version": 1, "reason": "r", "expected_version": 0}
        return client.post(f"{self.detail_url(environment)}deploy/", body, format="json")

    def make_object_environment(self, tenant: Tenant) -> Environment:
        return tenant.environments.order_by("position")[0]


@pytest.mark.django_db
def test_release_api__if_match_compared_strongly__weak_or_foreign_tags_412_nothing_changes(
    tenant: Tenant, agent: Agent
) -> None:
    alice = api_as(make_user(Role.OPERATOR, tenant, username="alice"))
    production = tenant.environments.get(slug="production")
    for n in (2, 3):
        seen = alice.get(_url(agent, production.pk)).json()["version"]
        deployed = alice.post(
            _url(agent, production.pk, "deploy/"),
            {"version": n, "reason": f"ship v{n}", "expected_version": seen},
            format="json",
        )
        assert deployed.status_code == 201, deployed.content
    etag = alice.get(_url(agent, production.pk))["ETag"]
    events = AuditEvent.objects.count()
    for header in (f"W/{etag}", f'W/{etag}, W/"0"', '"v3"', '"not-a-version"'):
        for action, body in (
            ("rollback/", {"reason": "bad"}),
            ("deploy/", {"version": 1, "reason": "r"}),
        ):
            response = alice.post(
                _url(agent, production.pk, action),
                body,
                format="json",
                headers={"If-Match": header},
            )
            assert response.status_code == 412, (header, action, response.content)
            assert response["Content-Type"].startswith("application/json")
            assert "If-Match" in response.json()["detail"]
    assert AuditEvent.objects.count() == events
    assert alice.get(_url(agent, production.pk)).json()["stable_version"] == 3
    # the same version in a list with a weak copy of itself matches: the strong one does
    response = alice.post(
        _url(agent, production.pk, "rollback/"),
        {"reason": "bad"},
        format="json",
        headers={"If-Match": f"W/{etag}, {etag}"},
    )
    assert response.status_code == 201, response.content
    assert response.json()["stable_version"] == 2
