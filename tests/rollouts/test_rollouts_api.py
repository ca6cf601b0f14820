"""Rollouts over the API: start (gates, bad input as 400 by field), read, move with the
version read (409 when stale), the one-click release rollback of a running rollout, and the
rollout plan (errors keyed by the plan's dotted paths)."""

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
from apps.rollouts.models import Deployment, Rollout, RolloutPlan
from apps.rollouts.services import deployment_create, rollout_start
from apps.tenancy.models import Agent, Environment, Tenant

from ..api_permissions import APIViewTestCases
from ..conftest import api_as
from ..factories import AgentFactory, make_user

DEMO = Path(__file__).resolve().parents[2] / "apps" / "bundles" / "demo"
ACTOR = SystemActor("test")


def _agent(tenant: Tenant, slug: str = "support-bot") -> Agent:
    agent = AgentFactory(tenant=tenant, slug=slug, name=slug)
    source = (DEMO / "support-bot-v1.yaml").read_text()
    for n in (1, 2, 3):
        bundle_version_push(
            actor=ACTOR,
            agent=agent,
            message=f"build {n}",
            source=source.replace("Answers customer", f"Answers (build {n}) customer"),
        )
    return agent


def _first_environment(tenant: Tenant) -> Environment:
    return tenant.environments.order_by("position")[0]


def _with_stable(tenant: Tenant, slug: str = "support-bot") -> tuple[Agent, Environment]:
    agent = _agent(tenant, slug)
    environment = _first_environment(tenant)
    deployment_create(
        actor=ACTOR,
        agent=agent,
        environment=environment,
        version=BundleVersion.objects.get(agent=agent, number=1),
        reason="first",
    )
    return agent, environment


def _running(tenant: Tenant, slug: str = "support-bot") -> Rollout:
    agent, environment = _with_stable(tenant, slug)
    return rollout_start(
        actor=ACTOR,
        agent=agent,
        environment=environment,
        candidate=BundleVersion.objects.get(agent=agent, number=2),
        reason="try v2",
    )


@pytest.mark.django_db
def test_rollout_api__start_advance_pause_resume__each_move_bumps_version_and_stale_is_409(
    tenant: Tenant,
) -> None:
    agent, environment = _with_stable(tenant)
    alice = api_as(make_user(Role.OPERATOR, tenant, username="alice"))
    started = alice.post(
        "/api/v1/rollouts/",
        {
            "agent": agent.pk,
            "environment": environment.pk,
            "version": 2,
            "reason": "friendlier prompt",
            "stickiness": "tenantId",
            "constraints": [{"contextName": "tenantId", "operator": "IN", "values": ["acme"]}],
        },
        format="json",
    )
    assert started.status_code == 201, started.content
    body = started.json()
    assert (body["state"], body["step"], body["percentage"]) == ("canary", 0, 1.0)
    assert (body["candidate_version"], body["baseline_version"]) == (2, 1)
    assert body["stickiness"] == "tenantId" and body["constraints"][0]["values"] == ["acme"]
    assert [t["to_state"] for t in body["transitions"]] == ["canary"]
    assert body["latest_analysis"] is None and body["steps"] == 3
    url = f"/api/v1/rollouts/{body['id']}/"
    seen = alice.get(url)
    assert seen["ETag"] == f'"{body["version"]}"'
    advanced = alice.post(
        f"{url}advance/", {"reason": "looks fine", "expected_version": body["version"]}
    )
    assert advanced.status_code == 200, advanced.content
    assert (advanced.json()["step"], advanced.json()["percentage"]) == (1, 10.0)
    events = AuditEvent.objects.count()
    stale = alice.post(f"{url}pause/", {"reason": "wait", "expected_version": body["version"]})
    assert stale.status_code == 409, stale.content
    assert stale.json()["current_version"] == advanced.json()["version"]
    assert AuditEvent.objects.count() == events
    paused = alice.post(f"{url}pause/", {"reason": "wait"}, headers={"If-Match": advanced["ETag"]})
    assert paused.status_code == 200 and paused.json()["state"] == "paused"
    assert paused.json()["percentage"] == 10.0  # a pause keeps the traffic where it was
    resumed = alice.post(f"{url}resume/", {"reason": "go on"})
    assert resumed.json()["state"] == "canary" and resumed.json()["step"] == 1
    shrunk = alice.post(f"{url}shrink/", {"reason": "refund complaints"})
    assert shrunk.status_code == 200, shrunk.content
    assert (shrunk.json()["state"], shrunk.json()["step"], shrunk.json()["percentage"]) == (
        "paused",
        0,
        1.0,
    )
    at_first = alice.post(f"{url}shrink/", {"reason": "smaller still"})
    assert at_first.status_code == 400 and "first step" in at_first.json()["errors"]["event"][0]
    resumed = alice.post(f"{url}resume/", {"reason": "go on"})
    assert resumed.json()["state"] == "canary" and resumed.json()["step"] == 0
    listed = alice.get("/api/v1/rollouts/", {"agent": agent.pk, "state": "active"}).json()
    assert [r["id"] for r in listed["results"]] == [body["id"]]
    assert alice.get("/api/v1/rollouts/", {"state": "completed"}).json()["results"] == []


@pytest.mark.django_db
def test_rollout_api__forbidden_move_and_missing_reason__400_nothing_changes(
    tenant: Tenant,
) -> None:
    rollout = _running(tenant)
    alice = api_as(make_user(Role.OPERATOR, tenant))
    url = f"/api/v1/rollouts/{rollout.pk}/"
    before = (AuditEvent.objects.count(), Rollout.objects.get().sequence)
    no_reason = alice.post(f"{url}abort/", {"reason": ""}, format="json")
    assert no_reason.status_code == 400 and "reason" in no_reason.json()["errors"]
    forbidden = alice.post(f"{url}resume/", {"reason": "x"}, format="json")
    assert forbidden.status_code == 400 and "event" in forbidden.json()["errors"]
    assert (AuditEvent.objects.count(), Rollout.objects.get().sequence) == before
    aborted = alice.post(f"{url}abort/", {"reason": "not today"}, format="json")
    assert aborted.json()["state"] == "aborted" and aborted.json()["finished_at"]
    again = alice.post(f"{url}advance/", {"reason": "x"}, format="json")
    assert again.status_code == 400


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"version": 99}, "version"),
        ({"version": 1}, "candidate"),  # already stable
        ({"stickiness": "cookie"}, "stickiness"),
        ({"constraints": [{"contextName": "tenantId", "operator": "GT", "values": ["a"]}]},
         "constraints[0].operator"),
        ({"constraints": [{"contextName": "tenantId", "operator": "IN", "values": []}]},
         "constraints[0].values"),
        ({"constraints": "acme"}, "constraints"),
        ({"constraints": [{"contextName": "tenantId", "operator": "IN", "values": ["a"]}] * 11},
         "constraints"),
        ({"reason": ""}, "reason"),
        ({"agent": "x"}, "agent"),
    ],
)  # fmt: skip
def test_rollout_api__bad_start__400_by_field_and_nothing_starts(
    tenant: Tenant, change: dict[str, Any], field: str
) -> None:
    agent, environment = _with_stable(tenant)
    body = {"agent": agent.pk, "environment": environment.pk, "version": 2, "reason": "r"}
    alice = api_as(make_user(Role.OPERATOR, tenant))
    response = alice.post("/api/v1/rollouts/", {**body, **change}, format="json")
    assert response.status_code == 400, response.content
    assert field in response.json()["errors"], response.json()
    assert not Rollout.objects.exists()


@pytest.mark.django_db
def test_rollout_api__second_rollout_same_agent_environment__400(tenant: Tenant) -> None:
    rollout = _running(tenant)
    alice = api_as(make_user(Role.OPERATOR, tenant))
    response = alice.post(
        "/api/v1/rollouts/",
        {"agent": rollout.agent_id, "environment": rollout.environment_id, "version": 3,
         "reason": "r"},
        format="json",
    )  # fmt: skip
    assert response.status_code == 400
    assert "already" in response.json()["errors"]["candidate"][0]


@pytest.mark.django_db
def test_rollout_api__failing_gate__operator_refused_admin_overrides_with_reason(
    tenant: Tenant,
) -> None:
    agent = _agent(tenant)
    staging = tenant.environments.get(slug="staging")  # has a predecessor: development
    for environment in (tenant.environments.get(slug="development"), staging):
        # Released in development too, so staging's gate asks for a rollout there first.
        deployment_create(
            actor=ACTOR,
            agent=agent,
            environment=environment,
            version=BundleVersion.objects.get(agent=agent, number=1),
            reason="first",
        )
    body = {"agent": agent.pk, "environment": staging.pk, "version": 2, "reason": "r"}
    operator = api_as(make_user(Role.OPERATOR, tenant))
    refused = operator.post("/api/v1/rollouts/", body, format="json")
    assert refused.status_code == 422  # a gate's refusal (docs/releases.md)
    assert "roll it out there first" in refused.json()["errors"]["candidate"][0]
    not_admin = operator.post(
        "/api/v1/rollouts/", {**body, "override_reason": "hotfix"}, format="json"
    )
    assert not_admin.status_code == 403
    admin = api_as(make_user(Role.ADMIN, tenant))
    started = admin.post("/api/v1/rollouts/", {**body, "override_reason": "hotfix"}, format="json")
    assert started.status_code == 201, started.content
    assert started.json()["gate_override"] == "hotfix"


@pytest.mark.django_db
def test_release_rollback__rollout_running__rolls_back_the_rollout_then_stable(
    tenant: Tenant,
) -> None:
    rollout = _running(tenant)
    alice = api_as(make_user(Role.OPERATOR, tenant))
    url = f"/api/v1/agents/{rollout.agent_id}/releases/{rollout.environment_id}/"
    release = alice.get(url).json()
    assert release["rollout"]["id"] == rollout.pk and release["stable_version"] == 1
    stale = alice.post(
        f"{url}rollback/", {"reason": "bad", "expected_version": release["version"] + 50}
    )
    assert stale.status_code == 409
    response = alice.post(
        f"{url}rollback/", {"reason": "bad", "expected_version": release["rollout"]["version"]}
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["rolled_back"], body["rolled_back_rollout"]) == ("rollout", rollout.pk)
    assert body["stable_version"] == 1 and body["rollout"] is None
    assert body["rollback_revision"] >= 1 and "rolled back" in body["summary"]
    assert Rollout.objects.get().state == "rolled_back"
    assert Deployment.objects.count() == 1  # stable untouched


@pytest.mark.django_db
def test_release_rollback__second_click_naming_the_rollout__409_stable_not_reverted(
    tenant: Tenant,
) -> None:
    agent, environment = _with_stable(tenant)
    deployment_create(
        actor=ACTOR,
        agent=agent,
        environment=environment,
        version=BundleVersion.objects.get(agent=agent, number=2),
        reason="v2",
    )
    rollout = rollout_start(
        actor=ACTOR,
        agent=agent,
        environment=environment,
        candidate=BundleVersion.objects.get(agent=agent, number=3),
        reason="try v3",
    )
    alice = api_as(make_user(Role.OPERATOR, tenant, username="alice"))
    bob = api_as(make_user(Role.OPERATOR, tenant, username="bob"))
    url = f"/api/v1/agents/{agent.pk}/releases/{environment.pk}/"
    seen = alice.get(url).json()
    click = {"reason": "bad", "expected_version": seen["rollout"]["version"], "rollout": rollout.pk}
    first = alice.post(f"{url}rollback/", click, format="json")
    assert first.status_code == 201 and first.json()["rolled_back"] == "rollout"
    events = AuditEvent.objects.count()
    second = bob.post(f"{url}rollback/", click, format="json")
    assert second.status_code == 409, second.content
    assert "no longer running" in second.json()["detail"]
    assert second.json()["changed_by"] == "alice"
    assert AuditEvent.objects.count() == events
    live = Deployment.objects.get(agent=agent, environment=environment, state="live")
    assert live.version.number == 2  # the stable version was not reverted by the second click
    # naming "no rollout" reverts stable, as the release version says
    stable = alice.post(
        f"{url}rollback/",
        {"reason": "v2 too", "expected_version": second.json()["current_version"],
         "rollout": None},
        format="json",
    )  # fmt: skip
    assert stable.status_code == 201, stable.content
    assert (stable.json()["rolled_back"], stable.json()["stable_version"]) == ("stable", 1)


@pytest.mark.django_db
def test_rollout_plan_api__default_then_replace__bad_plan_400_keyed_by_dotted_path(
    tenant: Tenant,
) -> None:
    environment = _first_environment(tenant)
    alice = api_as(make_user(Role.OPERATOR, tenant, username="alice"))
    url = f"/api/v1/environments/{environment.pk}/rollout-plan/"
    plan = alice.get(url).json()
    assert plan["is_default"] and plan["version"] == 1
    assert [s["percentage"] for s in plan["plan"]["steps"]] == [1, 10, 50]
    document = {**plan["plan"], "steps": [{"percentage": 5}, {"percentage": 2}]}
    bad = alice.put(url, {"plan": document, "reason": "r"}, format="json")
    assert bad.status_code == 400, bad.content
    assert "plan.steps.1.percentage" in bad.json()["errors"]
    for alpha in (0, 0.9, "0.01"):
        noisy = alice.put(url, {"plan": {**plan["plan"], "alpha": alpha}, "reason": "r"},
                          format="json")  # fmt: skip
        assert noisy.status_code == 400 and "plan.alpha" in noisy.json()["errors"], alpha
    not_object = alice.put(url, {"plan": [1], "reason": "r"}, format="json")
    assert not_object.status_code == 400 and "plan" in not_object.json()["errors"]
    assert not RolloutPlan.objects.exists()
    document["steps"] = [{"percentage": 5}, {"percentage": 25}]
    saved = alice.put(url, {"plan": document, "reason": "faster", "expected_version": 1},
                      format="json")  # fmt: skip
    assert saved.status_code == 200, saved.content
    assert saved.json()["version"] == 2 and not saved.json()["is_default"]
    assert saved.json()["plan"]["steps"][1]["min_dwell_s"] == 0
    assert saved.json()["plan"]["alpha"] == 0.01  # the default, filled in
    stale = alice.put(url, {"plan": document, "reason": "again", "expected_version": 1},
                      format="json")  # fmt: skip
    assert stale.status_code == 409 and stale.json()["changed_by"] == "alice"


@pytest.mark.django_db
class TestRolloutAPIPermissions(
    APIViewTestCases.GetObject, APIViewTestCases.ListObjects, APIViewTestCases.CreateObject
):
    """Shared suite (tests/api_permissions.py): rollouts by the rollout permissions."""

    model = Rollout
    list_url = "/api/v1/rollouts/"

    def make_object(self, tenant: Tenant) -> Model:
        return _running(tenant, slug=f"bot-{tenant.slug}")

    def prepare_create(self, tenant: Tenant) -> None:
        _with_stable(tenant, slug=f"new-{tenant.slug}")

    def create(self, client: APIClient, tenant: Tenant) -> Any:
        agent = tenant.agents.get(slug=f"new-{tenant.slug}")
        body = {
            "agent": agent.pk,
            "environment": _first_environment(tenant).pk,
            "version": 2,
            "reason": "r",
        }
        return client.post(self.list_url, body, format="json")


@pytest.mark.django_db
class TestRolloutMovePermissions(APIViewTestCases.UpdateObject):
    """A move (here: pause) needs rollouts.change_rollout."""

    model = Rollout
    list_url = "/api/v1/rollouts/"

    def make_object(self, tenant: Tenant) -> Model:
        return _running(tenant, slug=f"bot-{tenant.slug}")

    def update(self, client: APIClient, obj: Model) -> Any:
        return client.post(f"{self.detail_url(obj)}pause/", {"reason": "r"}, format="json")


@pytest.mark.django_db
class TestRolloutPlanPermissions(APIViewTestCases.GetObject, APIViewTestCases.UpdateObject):
    """A plan is reached as its environment, by the rollout plan permissions."""

    model = RolloutPlan
    id_key = "environment"

    def make_object(self, tenant: Tenant) -> Model:
        return _first_environment(tenant)

    def detail_url(self, obj: Model) -> str:
        return f"/api/v1/environments/{obj.pk}/rollout-plan/"

    def update(self, client: APIClient, obj: Model) -> Any:
        body = {"plan": {"steps": [{"percentage": 5}]}, "reason": "r"}
        return client.put(self.detail_url(obj), body, format="json")
