"""The flags API lists' query filters (``apps/flags/api/filters.py``): flags and segments by
environment, kill switches by tenant and status; a bad value is a 400 naming the parameter,
an environment the caller may not see a 404."""

from __future__ import annotations

from typing import Any

import pytest

from apps.core.roles import Role
from apps.flags.services import kill_switch_engage, kill_switch_release, segment_create
from apps.tenancy.models import Environment, Tenant

from ..conftest import api_as
from ..factories import AgentFactory, make_user
from .conftest import SYSTEM, make_flag

pytestmark = pytest.mark.django_db


def _names(response: Any, key: str = "name") -> list[Any]:
    assert response.status_code == 200, response.content
    return [row[key] for row in response.json()["results"]]


def _bad(response: Any, parameter: str) -> list[str]:
    assert response.status_code == 400, response.content
    body = response.json()
    assert body["detail"] == "Invalid input: see errors by field."
    assert list(body["errors"]) == [parameter]
    return body["errors"][parameter]


def test_flags_and_segments__by_environment(
    development: Environment, production: Environment, admin: Any
) -> None:
    make_flag(development, "dev-only")
    make_flag(production, "prod-only")
    for environment in (development, production):
        segment_create(
            actor=SYSTEM,
            environment=environment,
            name=f"beta-{environment.slug}",
            constraints=[{"contextName": "userId", "operator": "IN", "values": ["1"]}],
            reason="test setup",
        )
    client = api_as(admin)

    assert sorted(_names(client.get("/api/v1/flags/"))) == ["dev-only", "prod-only"]
    assert _names(client.get("/api/v1/flags/", {"environment": development.pk})) == ["dev-only"]
    assert _names(client.get("/api/v1/segments/", {"environment": production.pk})) == [
        "beta-production"
    ]


@pytest.mark.parametrize("url", ["/api/v1/flags/", "/api/v1/segments/"])
def test_flags_and_segments__bad_environment__400(url: str, admin: Any) -> None:
    client = api_as(admin)
    assert _bad(client.get(url, {"environment": "dev"}), "environment") == ["An environment id."]
    assert _bad(client.get(url, {"environment": "-3"}), "environment") == [
        "An environment id: at least 1."
    ]
    assert _bad(client.get(url, {"environment": "9" * 20}), "environment") == [
        f"An environment id: at most {2**63 - 1}."
    ]


def test_flags__environment_not_visible__404(tenant: Tenant, other_tenant: Tenant) -> None:
    client = api_as(make_user(Role.VIEWER, tenant))
    foreign = other_tenant.environments.get()
    make_flag(foreign, "theirs")
    for value in (foreign.pk, 999_999):
        response = client.get("/api/v1/flags/", {"environment": value})
        assert response.status_code == 404
        assert response.json()["errors"] == {}


def test_kill_switches__by_status_and_tenant(
    tenant: Tenant, other_tenant: Tenant, admin: Any
) -> None:
    agent = AgentFactory(tenant=tenant, slug="support-bot")
    stopped = kill_switch_engage(
        actor=SYSTEM, kind="agent_stopped", scope="agent", tenant=tenant, agent=agent, reason="r"
    )
    released = kill_switch_engage(
        actor=SYSTEM,
        kind="agent_stopped",
        scope="agent",
        tenant=other_tenant,
        agent=other_tenant.agents.get(),
        reason="r",
    )
    kill_switch_release(actor=SYSTEM, switch=released, reason="fixed")
    client = api_as(admin)
    url = "/api/v1/kill-switches/"

    assert sorted(_names(client.get(url), "id")) == sorted([stopped.pk, released.pk])
    assert _names(client.get(url, {"status": "engaged"}), "id") == [stopped.pk]
    assert _names(client.get(url, {"status": "released"}), "id") == [released.pk]
    assert _names(client.get(url, {"tenant": tenant.pk}), "id") == [stopped.pk]
    assert _names(client.get(url, {"tenant": other_tenant.pk, "status": "engaged"}), "id") == []


def test_kill_switches__tenant_filter_keeps_global_switches(tenant: Tenant, admin: Any) -> None:
    switch = kill_switch_engage(
        actor=SYSTEM, kind="tool_disabled", scope="global", tool_pattern="shell.*", reason="r"
    )
    assert _names(api_as(admin).get("/api/v1/kill-switches/", {"tenant": tenant.pk}), "id") == [
        switch.pk
    ]


@pytest.mark.parametrize(
    ("parameter", "value", "message"),
    [
        ("status", "on", "Use one of: engaged, released."),
        ("status", "ENGAGED", "Use one of: engaged, released."),
        ("tenant", "acme", "A tenant id."),
        ("tenant", "0", "A tenant id: at least 1."),
    ],
)
def test_kill_switches__bad_value__400(
    admin: Any, parameter: str, value: str, message: str
) -> None:
    response = api_as(admin).get("/api/v1/kill-switches/", {parameter: value})
    assert _bad(response, parameter) == [message]
