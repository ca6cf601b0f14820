from __future__ import annotations

from typing import Any

import pytest
from django.db.models import Model
from rest_framework.test import APIClient

from apps.audit.models import AuditEvent
from apps.tenancy.models import Agent, Environment, Tenant

from ..api_permissions import APIViewTestCases
from ..conftest import api_as
from ..factories import AgentFactory, EnvironmentFactory

pytestmark = pytest.mark.django_db


def _state() -> tuple[int, int, int, int]:
    return (
        Tenant.objects.count(),
        Agent.objects.count(),
        Environment.objects.count(),
        AuditEvent.objects.count(),
    )


# --------------------------------------------------------------------------- permissions
# The shared suite (tests/api_permissions.py): every role, expectations from apps.core.roles.


class TestTenantAPIPermissions(
    APIViewTestCases.GetObject,
    APIViewTestCases.ListObjects,
    APIViewTestCases.CreateObject,
    APIViewTestCases.UpdateObject,
):
    model = Tenant
    list_url = "/api/v1/tenants/"
    create_is_scoped = False  # a new tenant belongs to no tenant
    update_data = {"name": "Renamed"}

    def make_object(self, tenant: Tenant) -> Tenant:
        return tenant

    def create(self, client: APIClient, tenant: Tenant) -> Any:
        return client.post(self.list_url, {"slug": "initech", "name": "Initech"}, format="json")


class TestAgentAPIPermissions(
    APIViewTestCases.GetObject,
    APIViewTestCases.ListObjects,
    APIViewTestCases.CreateObject,
    APIViewTestCases.UpdateObject,
):
    model = Agent
    list_url = "/api/v1/agents/"
    update_data = {"name": "Renamed"}

    def make_object(self, tenant: Tenant) -> Agent:
        return AgentFactory(tenant=tenant, slug="support-bot")

    def create(self, client: APIClient, tenant: Tenant) -> Any:
        data = {"tenant": tenant.pk, "slug": "new-bot", "name": "New"}
        return client.post(self.list_url, data, format="json")


class TestAgentArchiveAPIPermissions(APIViewTestCases.UpdateObject):
    model = Agent
    list_url = "/api/v1/agents/"

    def make_object(self, tenant: Tenant) -> Agent:
        return AgentFactory(tenant=tenant, slug="support-bot")

    def update(self, client: APIClient, obj: Model) -> Any:
        return client.post(f"{self.detail_url(obj)}archive/", {"reason": "done"}, format="json")


class TestEnvironmentAPIPermissions(
    APIViewTestCases.GetObject,
    APIViewTestCases.ListObjects,
    APIViewTestCases.CreateObject,
    APIViewTestCases.UpdateObject,
):
    model = Environment
    list_url = "/api/v1/environments/"
    update_data = {"name": "Renamed"}

    def make_object(self, tenant: Tenant) -> Environment:
        return tenant.environments.order_by("position")[0]

    def create(self, client: APIClient, tenant: Tenant) -> Any:
        data = {"tenant": tenant.pk, "slug": "qa", "name": "QA"}
        return client.post(self.list_url, data, format="json")


class TestEnvironmentMoveAPIPermissions(APIViewTestCases.UpdateObject):
    model = Environment
    list_url = "/api/v1/environments/"

    def make_object(self, tenant: Tenant) -> Environment:
        EnvironmentFactory(tenant=tenant, slug="neighbour", name="Neighbour", position=99)
        return tenant.environments.order_by("position")[0]

    def update(self, client: APIClient, obj: Model) -> Any:
        return client.post(f"{self.detail_url(obj)}move/", {"direction": "down"}, format="json")


def test_api__anonymous__is_refused(api, tenant: Tenant) -> None:  # type: ignore[no-untyped-def]
    assert api.get("/api/v1/tenants/").status_code in (401, 403)
    assert api.post(
        "/api/v1/agents/", {"tenant": tenant.pk, "slug": "x", "name": "x"}
    ).status_code in (401, 403)


# --------------------------------------------------------------------------- tenant isolation


def test_api_list__other_tenant__not_visible(
    operator, tenant: Tenant, other_tenant: Tenant
) -> None:  # type: ignore[no-untyped-def]
    client = api_as(operator)
    slugs = [t["slug"] for t in client.get("/api/v1/tenants/").json()["results"]]
    assert slugs == ["acme"]
    agents = client.get("/api/v1/agents/").json()["results"]
    assert all(a["tenant_slug"] == "acme" for a in agents)
    environments = client.get("/api/v1/environments/").json()["results"]
    assert {e["tenant_slug"] for e in environments} == {"acme"}


def test_api_detail__other_tenants_objects__are_404(operator, other_tenant: Tenant) -> None:  # type: ignore[no-untyped-def]
    client = api_as(operator)
    foreign_agent = other_tenant.agents.get()
    foreign_env = other_tenant.environments.get()
    before = _state()
    assert client.get(f"/api/v1/tenants/{other_tenant.pk}/").status_code == 404
    assert client.get(f"/api/v1/agents/{foreign_agent.pk}/").status_code == 404
    assert client.get(f"/api/v1/environments/{foreign_env.pk}/").status_code == 404
    assert (
        client.patch(
            f"/api/v1/agents/{foreign_agent.pk}/", {"name": "pwned"}, format="json"
        ).status_code
        == 404
    )
    assert (
        client.post(
            f"/api/v1/agents/{foreign_agent.pk}/archive/", {"reason": "x"}, format="json"
        ).status_code
        == 404
    )
    assert client.get(f"/api/v1/agents/?tenant={other_tenant.slug}").status_code == 404
    # creating into a tenant one cannot see: 404, as if it did not exist
    response = client.post(
        "/api/v1/agents/", {"tenant": other_tenant.pk, "slug": "sneaky", "name": "x"}, format="json"
    )
    assert response.status_code == 404
    assert _state() == before
    assert Agent.objects.get(pk=foreign_agent.pk).name == "Secret agent"


def test_api_detail__unknown_id__is_404(operator) -> None:  # type: ignore[no-untyped-def]
    client = api_as(operator)
    assert client.get("/api/v1/agents/999999/").status_code == 404
    assert client.get("/api/v1/agents/not-a-number/").status_code == 404


def test_api_audit_events__other_tenant__not_visible(
    operator, tenant: Tenant, other_tenant: Tenant, admin
) -> None:  # type: ignore[no-untyped-def]
    api_as(admin).patch(
        f"/api/v1/tenants/{other_tenant.pk}/", {"name": "Globex renamed"}, format="json"
    )
    api_as(operator).patch(f"/api/v1/tenants/{tenant.pk}/", {"name": "Acme renamed"}, format="json")
    events = api_as(operator).get("/api/v1/audit-events/").json()["results"]
    assert [e["tenant_slug"] for e in events] == ["acme"]
    foreign = AuditEvent.objects.get(tenant=other_tenant)
    assert api_as(operator).get(f"/api/v1/audit-events/{foreign.pk}/").status_code == 404


# --------------------------------------------------------------------------- bad input


BAD_INPUT = [
    ("/api/v1/agents/", {"slug": "ok-slug", "name": "x"}, "tenant"),
    ("/api/v1/agents/", {"tenant": "TENANT", "slug": "ok-slug", "name": "x"}, "tenant"),
    ("/api/v1/agents/", {"tenant": None, "slug": "Bad Slug!", "name": "x"}, "slug"),
    ("/api/v1/agents/", {"tenant": None, "slug": "ok", "name": ""}, "name"),
    ("/api/v1/agents/", {"tenant": None, "slug": "support-bot", "name": "dup"}, "slug"),
    ("/api/v1/tenants/", {"slug": "acme", "name": "dup"}, "slug"),
    ("/api/v1/tenants/", {"slug": "new", "name": "x", "time_zone": "Mars/Olympus"}, "time_zone"),
    ("/api/v1/environments/", {"tenant": None, "slug": "staging", "name": "dup"}, "slug"),
    (
        "/api/v1/environments/",
        {"tenant": None, "slug": "qa", "name": "QA", "position": 0},
        "position",
    ),
    (
        "/api/v1/environments/",
        {"tenant": None, "slug": "qa", "name": "QA", "position": -1},
        "position",
    ),
]


@pytest.mark.parametrize(("url", "payload", "field"), BAD_INPUT)
def test_api_create__bad_input__400_with_field_errors_and_nothing_stored(
    operator,
    tenant: Tenant,
    url: str,
    payload: dict,
    field: str,  # type: ignore[no-untyped-def]
) -> None:
    AgentFactory(tenant=tenant, slug="support-bot")
    if payload.get("tenant", "") is None:
        payload = {**payload, "tenant": tenant.pk}
    before = _state()

    response = api_as(operator).post(url, payload, format="json")

    assert response.status_code == 400, response.content
    body = response.json()
    assert body["detail"]
    assert field in body["errors"], body
    assert _state() == before


def test_api_archive__without_reason__400_and_nothing_changes(operator, tenant: Tenant) -> None:  # type: ignore[no-untyped-def]
    agent = AgentFactory(tenant=tenant)
    before = _state()
    response = api_as(operator).post(
        f"/api/v1/agents/{agent.pk}/archive/", {"reason": ""}, format="json"
    )
    assert response.status_code == 400
    assert "reason" in response.json()["errors"]
    assert _state() == before
    assert Agent.objects.get(pk=agent.pk).archived_at is None


def test_api_malformed_json__400(operator) -> None:  # type: ignore[no-untyped-def]
    response = api_as(operator).generic(
        "POST", "/api/v1/agents/", "{not json", content_type="application/json"
    )
    assert response.status_code == 400
    assert response.json()["detail"]


# --------------------------------------------------------------------------- happy paths


def test_api_agent_lifecycle__create_edit_archive__each_audited(operator, tenant: Tenant) -> None:  # type: ignore[no-untyped-def]
    client = api_as(operator)
    created = client.post(
        "/api/v1/agents/",
        {
            "tenant": tenant.pk,
            "slug": "support-bot",
            "name": "Support bot",
            "reason": "new product line",
        },
        format="json",
    )
    assert created.status_code == 201
    agent_id = created.json()["id"]
    assert (
        client.patch(
            f"/api/v1/agents/{agent_id}/", {"description": "helps"}, format="json"
        ).status_code
        == 200
    )
    assert (
        client.post(
            f"/api/v1/agents/{agent_id}/archive/", {"reason": "replaced"}, format="json"
        ).status_code
        == 200
    )

    events = list(
        AuditEvent.objects.filter(target_type="tenancy.agent", target_id=str(agent_id)).order_by(
            "id"
        )
    )
    assert [e.action for e in events] == ["agent.created", "agent.updated", "agent.archived"]
    assert events[0].reason == "new product line"
    assert events[1].before["description"] == "" and events[1].after["description"] == "helps"
    assert events[2].reason == "replaced"
    assert all(e.actor_label == "olivia-operator" and e.tenant_id == tenant.pk for e in events)
    assert client.get("/api/v1/agents/").json()["count"] == 0
    assert client.get("/api/v1/agents/?archived=1").json()["count"] == 1


def test_api_environment_move__swaps_promotion_order(operator, tenant: Tenant) -> None:  # type: ignore[no-untyped-def]
    staging = tenant.environments.get(slug="staging")
    response = api_as(operator).post(
        f"/api/v1/environments/{staging.pk}/move/", {"direction": "down"}, format="json"
    )
    assert response.status_code == 200
    order = list(
        Environment.objects.filter(tenant=tenant)
        .order_by("position")
        .values_list("slug", flat=True)
    )
    assert order == ["development", "production", "staging"]
    response = api_as(operator).post(
        f"/api/v1/environments/{staging.pk}/move/", {"direction": "down"}, format="json"
    )
    assert response.status_code == 400
    assert "direction" in response.json()["errors"]


def test_api_tenant_create__operator__sees_new_tenant_with_default_environments(operator) -> None:  # type: ignore[no-untyped-def]
    client = api_as(operator)
    response = client.post(
        "/api/v1/tenants/",
        {"slug": "initech", "name": "Initech", "time_zone": "Europe/Paris"},
        format="json",
    )
    assert response.status_code == 201
    tenant_id = response.json()["id"]
    assert client.get(f"/api/v1/tenants/{tenant_id}/").status_code == 200
    envs = client.get(f"/api/v1/environments/?tenant={tenant_id}").json()["results"]
    assert [e["slug"] for e in envs] == ["development", "staging", "production"]
    assert [e["is_production"] for e in envs] == [False, False, True]


def test_api_list__query_count_is_bounded(
    operator, tenant: Tenant, django_assert_max_num_queries
) -> None:  # type: ignore[no-untyped-def]
    for i in range(30):
        AgentFactory(tenant=tenant, slug=f"bot-{i}")
    client = api_as(operator)
    with django_assert_max_num_queries(10):
        response = client.get("/api/v1/agents/")
    assert response.json()["count"] == 30
