"""The tenancy API lists' query filters (``apps/tenancy/api/filters.py``): what each filter
keeps, and a bad value as a 400 naming the parameter, in the API's error shape."""

from __future__ import annotations

from typing import Any

import pytest

from apps.audit.services import SystemActor
from apps.core.roles import Role
from apps.tenancy.models import Tenant
from apps.tenancy.services import agent_archive, environment_archive, tenant_archive

from ..conftest import api_as
from ..factories import AgentFactory, TenantFactory, make_user

pytestmark = pytest.mark.django_db

SYSTEM = SystemActor("test")


def _slugs(response: Any) -> list[str]:
    assert response.status_code == 200, response.content
    return [row["slug"] for row in response.json()["results"]]


def _bad(response: Any, parameter: str) -> list[str]:
    assert response.status_code == 400, response.content
    body = response.json()
    assert body["detail"] == "Invalid input: see errors by field."
    assert list(body["errors"]) == [parameter]
    return body["errors"][parameter]


def test_agents__tenant_by_id_or_slug__only_that_tenants(tenant: Tenant, admin: Any) -> None:
    globex = TenantFactory(slug="globex", name="Globex")
    AgentFactory(tenant=tenant, slug="support-bot")
    AgentFactory(tenant=globex, slug="secret-agent")
    client = api_as(admin)

    assert sorted(_slugs(client.get("/api/v1/agents/"))) == ["secret-agent", "support-bot"]
    assert _slugs(client.get("/api/v1/agents/", {"tenant": "globex"})) == ["secret-agent"]
    assert _slugs(client.get("/api/v1/agents/", {"tenant": tenant.pk})) == ["support-bot"]
    assert len(_slugs(client.get("/api/v1/agents/", {"tenant": ""}))) == 2


def test_agents__tenant_not_visible_or_unknown__404(tenant: Tenant, other_tenant: Tenant) -> None:
    client = api_as(make_user(Role.OPERATOR, tenant))
    for value in (other_tenant.slug, str(other_tenant.pk), "no-such-tenant", "0", "9" * 30):
        response = client.get("/api/v1/environments/", {"tenant": value})
        assert response.status_code == 404, value
        assert response.json()["errors"] == {}


def test_lists__archived__left_out_unless_asked(tenant: Tenant, admin: Any) -> None:
    AgentFactory(tenant=tenant, slug="support-bot")
    old = AgentFactory(tenant=tenant, slug="old-bot")
    agent_archive(actor=SYSTEM, agent=old, reason="retired")
    gone = TenantFactory(slug="gone", name="Gone")
    tenant_archive(actor=SYSTEM, tenant=gone, reason="left")
    staging = tenant.environments.get(slug="staging")
    environment_archive(actor=SYSTEM, environment=staging, reason="merged")
    client = api_as(admin)

    assert _slugs(client.get("/api/v1/agents/")) == ["support-bot"]
    for value in ("true", "1", "yes", "True"):
        assert sorted(_slugs(client.get("/api/v1/agents/", {"archived": value}))) == [
            "old-bot",
            "support-bot",
        ]
    assert _slugs(client.get("/api/v1/agents/", {"archived": "false"})) == ["support-bot"]
    assert _slugs(client.get("/api/v1/tenants/")) == ["acme"]
    assert _slugs(client.get("/api/v1/tenants/", {"archived": "true"})) == ["acme", "gone"]
    assert "staging" not in _slugs(client.get("/api/v1/environments/", {"tenant": "acme"}))
    assert "staging" in _slugs(
        client.get("/api/v1/environments/", {"tenant": "acme", "archived": "on"})
    )
    # an archived object is still one GET away, whatever the list shows
    assert client.get(f"/api/v1/agents/{old.pk}/").status_code == 200


@pytest.mark.parametrize("url", ["/api/v1/tenants/", "/api/v1/agents/", "/api/v1/environments/"])
@pytest.mark.parametrize("value", ["maybe", "2", "tru", "-"])
def test_lists__archived_not_a_yes_or_no__400(url: str, value: str, admin: Any) -> None:
    assert _bad(api_as(admin).get(url, {"archived": value}), "archived") == ["Use true or false."]


def test_agents__tenant_too_long__400(admin: Any) -> None:
    messages = _bad(api_as(admin).get("/api/v1/agents/", {"tenant": "x" * 501}), "tenant")
    assert messages == ["At most 500 characters."]
