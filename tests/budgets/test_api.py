"""/api/v1/budgets/: CRUD with slugs and limits as docs/budgets.md writes them, field errors
from the service under its own keys (nothing stored), the version check, the Viewer's
refusals and tenant isolation; the status of the current window."""

from __future__ import annotations

from typing import Any

import pytest

from apps.audit.models import AuditEvent
from apps.budgets.models import Budget
from apps.tenancy.models import Agent, Tenant

from ..conftest import api_as
from .conftest import ingest, make_budget, roomy_hour

pytestmark = pytest.mark.django_db
URL = "/api/v1/budgets/"


def _body(tenant: Tenant, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "tenant": tenant.pk,
        "name": "support-bot hourly",
        "scope": "agent",
        "agent": "support-bot",
        "window": "hour",
        "limits": {"cost_usd": "5.00", "tokens": None, "requests": None, "tool_calls": 20},
        "action": "block",
        "strict": True,
    }
    body.update(overrides)
    return body


def test_budget_create__operator__201_with_the_definition_and_audited(
    operator: Any, tenant: Tenant, agent: Agent
) -> None:
    response = api_as(operator).post(URL, _body(tenant), format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["agent"] == "support-bot"
    assert body["environment"] is None
    assert body["limits"] == {
        "cost_usd": "5.00",
        "tokens": None,
        "requests": None,
        "tool_calls": 20,
    }
    assert body["thresholds"] == [50, 80, 100]
    assert body["version"] == 1
    assert response["ETag"] == '"1"'
    assert AuditEvent.objects.filter(action="budget.created", target_id=str(body["id"])).exists()


def test_budget_list__filters_by_tenant_scope_and_agent(
    operator: Any, tenant: Tenant, agent: Agent
) -> None:
    whole = make_budget(tenant)
    one = make_budget(tenant, name="bot", scope="agent", agent=agent)
    client = api_as(operator)
    ids = lambda query: [row["id"] for row in client.get(URL + query).json()["results"]]  # noqa: E731
    assert sorted(ids("")) == sorted([whole.pk, one.pk])
    assert ids("?scope=agent") == [one.pk]
    assert ids(f"?agent={agent.pk}") == [one.pk]
    assert sorted(ids(f"?tenant={tenant.pk}")) == sorted([whole.pk, one.pk])
    assert client.get(URL + "?scope=galaxy").status_code == 400
    assert client.get(URL + "?agent=abc").status_code == 400


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"limits": {"cost_usd": "-1"}}, "limits.cost_usd"),
        ({"limits": {"cost_usd": "abc"}}, "limits.cost_usd"),
        ({"limits": {"tokens": 1.5}}, "limits.tokens"),
        ({"limits": {"cost_usd": "1.123456789"}}, "limits.cost_usd"),
        ({"limits": {}}, "limits"),
        ({"limits": {"dollars": 5}}, "limits"),
        ({"scope": "agent", "agent": None}, "agent"),
        ({"agent": "no-such-bot"}, "agent"),
        ({"scope": "tenant"}, "agent"),
        ({"environment": "moon"}, "environment"),
        ({"window": "fortnight"}, "window"),
        ({"thresholds": [0, 120]}, "thresholds"),
        ({"action": "degrade"}, "degrade_mode"),
        ({"action": "degrade", "degrade_mode": "model"}, "degrade_model"),
        ({"name": ""}, "name"),
    ],
)
def test_budget_create__bad_input__400_by_field_and_nothing_stored(
    operator: Any, tenant: Tenant, agent: Agent, overrides: dict[str, Any], field: str
) -> None:
    audited = AuditEvent.objects.count()
    response = api_as(operator).post(URL, _body(tenant, **overrides), format="json")
    assert response.status_code == 400, response.content
    assert field in response.json()["errors"], response.json()
    assert not Budget.objects.exists()
    assert AuditEvent.objects.count() == audited


def test_budget_create__bad_agent_and_bad_limit__both_named(
    operator: Any, tenant: Tenant, agent: Agent
) -> None:
    body = _body(tenant, agent="ghost", limits={"cost_usd": "0"})
    errors = api_as(operator).post(URL, body, format="json").json()["errors"]
    assert {"agent", "limits.cost_usd"} <= set(errors)


def test_budget_create__duplicate_name__400(operator: Any, tenant: Tenant, agent: Agent) -> None:
    make_budget(tenant, name="support-bot hourly")
    response = api_as(operator).post(URL, _body(tenant), format="json")
    assert response.status_code == 400
    assert "name" in response.json()["errors"]


def test_budget_update__put_and_patch__version_moves_and_limits_merge(
    operator: Any, tenant: Tenant, agent: Agent
) -> None:
    budget = make_budget(tenant, limits={"cost_usd": "5", "tool_calls": 10})
    client = api_as(operator)
    patched = client.patch(
        f"{URL}{budget.pk}/",
        {"limits": {"tool_calls": None, "tokens": 1000}},
        format="json",
        HTTP_IF_MATCH='"1"',
    )
    assert patched.status_code == 200, patched.content
    assert patched.json()["limits"] == {
        "cost_usd": "5.00",
        "tokens": 1000,
        "requests": None,
        "tool_calls": None,
    }
    assert patched.json()["version"] == 2
    replaced = client.put(
        f"{URL}{budget.pk}/",
        {
            "name": "daily",
            "scope": "agent",
            "agent": "support-bot",
            "environment": "production",
            "window": "day",
            "limits": {"requests": 100},
            "expected_version": 2,
        },
        format="json",
    )
    assert replaced.status_code == 200, replaced.content
    budget.refresh_from_db()
    assert (budget.name, budget.scope, budget.agent, budget.window) == (
        "daily",
        "agent",
        agent,
        "day",
    )
    assert budget.environment is not None and budget.environment.slug == "production"
    assert budget.limits() == {
        "cost_usd": None,
        "tokens": None,
        "requests": 100,
        "tool_calls": None,
    }
    assert budget.version == 3


def test_budget_update__stale_version__409_and_nothing_changes(
    operator: Any, tenant: Tenant
) -> None:
    budget = make_budget(tenant)
    client = api_as(operator)
    assert client.patch(f"{URL}{budget.pk}/", {"name": "first"}, format="json").status_code == 200
    response = client.patch(
        f"{URL}{budget.pk}/", {"name": "second"}, format="json", HTTP_IF_MATCH='"1"'
    )
    assert response.status_code == 409
    assert response.json()["current_version"] == 2
    budget.refresh_from_db()
    assert budget.name == "first"
    deleted = client.delete(f"{URL}{budget.pk}/", HTTP_IF_MATCH='"1"')
    assert deleted.status_code == 409
    assert Budget.objects.filter(pk=budget.pk).exists()


def test_budget_update__bad_limit__400_and_unchanged(operator: Any, tenant: Tenant) -> None:
    budget = make_budget(tenant)
    response = api_as(operator).patch(
        f"{URL}{budget.pk}/", {"limits": {"cost_usd": "-5"}}, format="json"
    )
    assert response.status_code == 400
    assert "limits.cost_usd" in response.json()["errors"]
    budget.refresh_from_db()
    assert budget.version == 1


def test_budget_delete__operator__204_and_audited(operator: Any, tenant: Tenant) -> None:
    budget = make_budget(tenant)
    response = api_as(operator).delete(f"{URL}{budget.pk}/?reason=gone", HTTP_IF_MATCH='"1"')
    assert response.status_code == 204
    assert not Budget.objects.exists()
    assert AuditEvent.objects.filter(action="budget.deleted", reason="gone").exists()


def test_budget__viewer__reads_but_cannot_write(viewer: Any, tenant: Tenant, agent: Agent) -> None:
    budget = make_budget(tenant)
    client = api_as(viewer)
    assert client.get(URL).status_code == 200
    assert client.get(f"{URL}{budget.pk}/").status_code == 200
    assert client.get(f"{URL}{budget.pk}/status/").status_code == 200
    assert client.post(URL, _body(tenant), format="json").status_code == 403
    assert client.patch(f"{URL}{budget.pk}/", {"name": "x"}, format="json").status_code == 403
    assert client.put(f"{URL}{budget.pk}/", _body(tenant), format="json").status_code == 403
    assert client.delete(f"{URL}{budget.pk}/").status_code == 403
    budget.refresh_from_db()
    assert (Budget.objects.count(), budget.name, budget.version) == (1, "tenant hourly", 1)


def test_budget__other_tenants_budget__invisible(
    operator: Any, tenant: Tenant, other_tenant: Tenant
) -> None:
    theirs = make_budget(other_tenant, name="globex hourly")
    client = api_as(operator)
    assert client.get(URL).json()["results"] == []
    assert client.get(f"{URL}?tenant={other_tenant.pk}").json()["results"] == []
    assert client.get(f"{URL}{theirs.pk}/").status_code == 404
    assert client.get(f"{URL}{theirs.pk}/status/").status_code == 404
    assert client.patch(f"{URL}{theirs.pk}/", {"name": "x"}, format="json").status_code == 404
    assert client.delete(f"{URL}{theirs.pk}/").status_code == 404
    theirs.refresh_from_db()
    assert theirs.name == "globex hourly"


def test_budget_create__into_other_tenant__404(
    operator: Any, tenant: Tenant, other_tenant: Tenant
) -> None:
    body = _body(other_tenant, scope="tenant", agent=None)
    assert api_as(operator).post(URL, body, format="json").status_code == 404
    assert not Budget.objects.exists()


def test_budget_create__agent_of_other_tenant__400(
    operator: Any, tenant: Tenant, other_tenant: Tenant
) -> None:
    response = api_as(operator).post(URL, _body(tenant, agent="secret-agent"), format="json")
    assert response.status_code == 400
    assert "agent" in response.json()["errors"]


def test_budget_status__consumption_of_the_current_window(
    operator: Any, tenant: Tenant, agent: Agent
) -> None:
    roomy_hour(tenant)  # this minute's records and the reads below in one hour window
    ingest(tenant, agent, ["1.00", "2.00"], tool_calls=5)
    budget = make_budget(
        tenant,
        name="bot",
        scope="agent",
        agent=agent,
        limits={"cost_usd": "4.00", "tool_calls": 100},
    )
    body = api_as(operator).get(f"{URL}{budget.pk}/status/").json()
    assert body["consumed"] == {"cost_usd": "3.00", "tokens": 30, "requests": 2, "tool_calls": 10}
    assert body["reserved"]["cost_usd"] == "0.00"
    assert (body["percent"], body["metric"], body["state"]) == ("75.00", "cost_usd", "ok")
    assert body["limits"]["cost_usd"] == "4.00"
    assert body["window_start"] < body["resets_at"]
    assert body["exhausted_subjects"] == []


def test_budget_status__per_agent_budget__names_agents_at_the_limit(
    operator: Any, tenant: Tenant, agent: Agent
) -> None:
    roomy_hour(tenant)  # this minute's records and the reads below in one hour window
    ingest(tenant, agent, ["3.00"])
    budget = make_budget(tenant, name="each", scope="tenant_agent", limits={"cost_usd": "2"})
    body = api_as(operator).get(f"{URL}{budget.pk}/status/").json()
    assert body["exhausted_subjects"] == ["support-bot"]
    assert body["state"] == "exhausted"


def test_patch_scope_to_one_naming_no_agent__the_agent_goes_with_it(
    operator: Any, tenant: Tenant, agent: Agent
) -> None:
    budget = make_budget(tenant, name="bot", scope="agent", agent=agent)
    answer = api_as(operator).patch(
        f"/api/v1/budgets/{budget.pk}/", {"scope": "tenant"}, format="json"
    )
    assert answer.status_code == 200, answer.json()
    budget.refresh_from_db()
    assert budget.scope == "tenant" and budget.agent is None
