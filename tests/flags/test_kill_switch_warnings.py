"""A kill switch aimed at nothing is still allowed (a pattern may target a future tool), but
the confirmation page and the API's answer say so in words: a typo'd tool, a glob matching
no tool, an agent deployed nowhere. A real tool or glob gets no warning."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from apps.audit.services import SystemActor
from apps.bundles.services import bundle_version_push
from apps.flags.models import KillSwitch
from apps.rollouts.services.deployments import deployment_create
from apps.tenancy.models import Agent, Tenant

from ..approvals.conftest import CONTRACT
from ..conftest import api_as
from ..factories import AgentFactory

ACTOR = SystemActor("test")


@pytest.fixture
def refund_agent(tenant: Tenant) -> Agent:
    agent = AgentFactory(tenant=tenant, slug="refund-agent", name="Refund agent")
    version = bundle_version_push(actor=ACTOR, agent=agent, content=CONTRACT, message="v1").version
    deployment_create(
        actor=ACTOR,
        agent=agent,
        environment=tenant.environments.get(slug="production"),
        version=version,
        reason="first release",
    )
    return agent


@pytest.fixture
def idle_agent(tenant: Tenant) -> Agent:
    """An agent that exists in the tenant but is deployed nowhere."""
    return AgentFactory(tenant=tenant, slug="idle-bot", name="Idle bot")


def _engage(operator: Any, **fields: Any) -> dict[str, Any]:
    response = api_as(operator).post(
        "/api/v1/kill-switches/", {"reason": "incident 42", **fields}, format="json"
    )
    assert response.status_code == 201, response.json()
    return response.json()


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        (
            "issue_refnd",
            "The name issue_refnd matches no tool of refund-agent's deployed versions "
            "(did you mean issue_refund?)",
        ),
        ("wire_*", "The glob wire_* matches no tool of refund-agent's deployed versions"),
    ],
)
def test_api_engage__tool_of_agent_matches_nothing__201_with_warning(
    operator: Any, tenant: Tenant, refund_agent: Agent, pattern: str, expected: str
) -> None:
    body = _engage(
        operator,
        kind="tool_disabled",
        scope="agent",
        tenant=tenant.pk,
        agent=refund_agent.pk,
        tool_pattern=pattern,
    )

    assert len(body["warnings"]) == 1
    assert body["warnings"][0].startswith(expected)
    assert "still allowed" in body["warnings"][0]
    assert KillSwitch.objects.get(pk=body["id"]).is_engaged


def test_api_engage__tenant_wide_glob_matches_nothing__warning_names_the_tenant(
    operator: Any, tenant: Tenant, refund_agent: Agent
) -> None:
    body = _engage(
        operator, kind="tool_disabled", scope="tenant", tenant=tenant.pk, tool_pattern="pay_*"
    )

    assert body["warnings"][0].startswith(
        "The glob pay_* matches no tool of any deployed version of Acme's agents"
    )


@pytest.mark.parametrize("pattern", ["issue_refund", "issue_*", "*_order", "send_emai?"])
def test_api_engage__real_tool_or_matching_glob__no_warning(
    operator: Any, tenant: Tenant, refund_agent: Agent, pattern: str
) -> None:
    for scope in ("agent", "tenant"):
        body = _engage(
            operator,
            kind="tool_disabled",
            scope=scope,
            tenant=tenant.pk,
            agent=refund_agent.pk if scope == "agent" else None,
            tool_pattern=pattern,
        )
        assert body["warnings"] == []


def test_api_engage__tool_in_environment_where_agent_is_not_deployed__warning(
    operator: Any, tenant: Tenant, refund_agent: Agent
) -> None:
    staging = tenant.environments.get(slug="staging")
    body = _engage(
        operator,
        kind="tool_disabled",
        scope="environment",
        tenant=tenant.pk,
        agent=refund_agent.pk,
        environment=staging.pk,
        tool_pattern="issue_refund",
    )

    assert body["warnings"] == [
        "refund-agent has no deployed version in Staging: it runs nowhere there yet, "
        "so this switch stops nothing today."
    ]


@pytest.mark.parametrize(
    ("kind", "extra"),
    [
        ("agent_stopped", {}),
        ("agent_mode", {"mode": "read_only"}),
        ("tool_disabled", {"tool_pattern": "x"}),
    ],
)
def test_api_engage__agent_deployed_nowhere__warning(
    operator: Any, tenant: Tenant, idle_agent: Agent, kind: str, extra: dict[str, Any]
) -> None:
    body = _engage(
        operator, kind=kind, scope="agent", tenant=tenant.pk, agent=idle_agent.pk, **extra
    )

    assert body["warnings"] == [
        "idle-bot has no deployed version: it runs nowhere yet, so this switch stops nothing today."
    ]


def test_api_engage__deployed_agent_stopped__no_warning(
    operator: Any, tenant: Tenant, refund_agent: Agent
) -> None:
    body = _engage(operator, kind="agent_stopped", scope="agent", agent=refund_agent.pk)

    assert body["warnings"] == []


# ------------------------------------------------------------------ the confirmation page


@pytest.fixture
def browser(operator: Any) -> Client:
    client = Client()
    client.force_login(operator)
    return client


@pytest.mark.parametrize(
    ("pattern", "says"),
    [
        ("issue_refnd", "matches no tool of refund-agent&#x27;s deployed versions"),
        ("wire_*", "The glob wire_* matches no tool of refund-agent&#x27;s deployed versions"),
    ],
)
def test_confirmation__tool_matches_nothing__warns_and_still_engages(
    browser: Client, refund_agent: Agent, pattern: str, says: str
) -> None:
    params = {
        "kind": "tool_disabled",
        "scope": "agent",
        "agent": refund_agent.pk,
        "tool_pattern": pattern,
    }
    confirm = browser.get("/flags/kill-switches/engage/", params).content.decode()
    engaged = browser.post("/flags/kill-switches/engage/", {**params, "reason": "typo test"})

    assert 'role="alert"' in confirm and says in confirm
    assert "Engage kill switch" in confirm  # allowed all the same
    assert engaged.status_code == 302
    assert KillSwitch.objects.get().tool_pattern == pattern


def test_confirmation__agent_deployed_nowhere__warns(browser: Client, idle_agent: Agent) -> None:
    params = {"kind": "agent_stopped", "scope": "agent", "agent": idle_agent.pk}
    confirm = browser.get("/flags/kill-switches/engage/", params).content.decode()

    assert "idle-bot has no deployed version: it runs nowhere yet" in confirm


def test_confirmation__real_tool__no_warning(browser: Client, refund_agent: Agent) -> None:
    params = {
        "kind": "tool_disabled",
        "scope": "agent",
        "agent": refund_agent.pk,
        "tool_pattern": "issue_refund",
    }
    confirm = browser.get("/flags/kill-switches/engage/", params).content.decode()

    assert "Effect:" in confirm
    assert 'role="alert"' not in confirm and "matches no tool" not in confirm
