"""The Budgets pages: the list with its window, state and forecast (and the empty state), the
form with field errors and the live preview, delete with confirmation, the budget page with
and without data; the Viewer sees no edit buttons and is refused writes; another tenant's
budgets are not found."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from apps.budgets.models import Budget
from apps.tenancy.models import Agent, Tenant

from .conftest import ingest, make_budget, roomy_hour

pytestmark = pytest.mark.django_db


def _client(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _form(agent: str = "support-bot", **overrides: Any) -> dict[str, Any]:
    data = {
        "name": "support-bot hourly",
        "scope": "agent",
        "agent": agent,
        "environment": "",
        "window": "hour",
        "limit_cost_usd": "5.00",
        "limit_tokens": "",
        "limit_requests": "",
        "limit_tool_calls": "2000",
        "action": "block",
        "degrade_mode": "",
        "degrade_model": "",
        "strict": "on",
        "thresholds": "50, 80, 100",
        "description": "",
        "reason": "cap the bot",
    }
    data.update(overrides)
    return data


def test_budget_list__no_budgets__empty_state_says_how(operator: User, tenant: Tenant) -> None:
    html = _client(operator).get("/budgets/").content.decode()
    assert "No budgets yet for Acme." in html
    assert 'href="/budgets/new/"' in html
    assert "POST /api/v1/budgets/" in html
    assert "./manage.py budget create --tenant acme" in html


def test_budget_list__with_budgets__progress_state_and_forecast(
    operator: User, tenant: Tenant, agent: Agent
) -> None:
    roomy_hour(tenant)  # this minute's records and the reads below in one hour window
    ingest(tenant, agent, ["1.00", "2.00"])
    spent = make_budget(tenant, name="bot", scope="agent", agent=agent, limits={"cost_usd": "2"})
    calm = make_budget(tenant, name="calm", limits={"cost_usd": "100"})
    html = _client(operator).get("/budgets/").content.decode()
    assert f'data-testid="budget-{spent.pk}"' in html
    assert "exhausted: alerts only" in html
    assert "$3.00 of $2.00" in html
    assert f'data-testid="budget-{calm.pk}"' in html
    assert "of $100.00 at the window&#x27;s end" in html or "projected to run out" in html
    assert "<progress" in html
    assert f'href="/budgets/{spent.pk}/edit/"' in html


def test_budget_create__valid_form__created_and_shown(
    operator: User, tenant: Tenant, agent: Agent
) -> None:
    response = _client(operator).post("/budgets/new/", _form())
    budget = Budget.objects.get()
    assert response.status_code == 302
    assert response["Location"] == f"/budgets/{budget.pk}/"
    assert (budget.agent, budget.action, budget.strict) == (agent, "block", True)
    assert budget.limit_cost_usd == Decimal("5")
    page = _client(operator).get(f"/budgets/{budget.pk}/").content.decode()
    assert "support-bot hourly" in page
    assert "Nothing consumed in this window yet." in page


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"limit_cost_usd": "-3", "limit_tool_calls": ""}, "limit_cost_usd"),
        ({"limit_cost_usd": "", "limit_tool_calls": ""}, "limit_cost_usd"),
        ({"limit_tool_calls": "1.5"}, "limit_tool_calls"),
        ({"agent": ""}, "agent"),
        ({"thresholds": "0, 200"}, "thresholds"),
        ({"action": "degrade"}, "degrade_mode"),
        ({"name": ""}, "name"),
    ],
)
def test_budget_create__bad_form__errors_next_to_fields_and_nothing_stored(
    operator: User, tenant: Tenant, agent: Agent, overrides: dict[str, Any], field: str
) -> None:
    response = _client(operator).post("/budgets/new/", _form(**overrides))
    assert response.status_code == 200
    assert f'id="id_{field}_error"' in response.content.decode()
    assert not Budget.objects.exists()


def test_budget_form__preview__what_the_scope_consumed_this_window(
    operator: User, tenant: Tenant, agent: Agent
) -> None:
    roomy_hour(tenant)  # this minute's records and the reads below in one hour window
    ingest(tenant, agent, ["1.25", "2.00"])
    # dated 4 minutes ahead (ingest allows clock skew), still this hour: counted as the budget
    # would count it
    ingest(tenant, agent, ["0.50"], when=timezone.now() + timedelta(minutes=4), prefix="ahead")
    client = _client(operator)
    html = client.get("/budgets/preview/?scope=agent&agent=support-bot&window=hour").content
    assert b"$3.75" in html
    per_agent = client.get("/budgets/preview/?scope=tenant_agent&window=day").content
    assert b"support-bot" in per_agent
    assert b"Choose the agent." in client.get("/budgets/preview/?scope=agent&window=hour").content
    page = client.get("/budgets/new/").content.decode()
    assert 'hx-get="/budgets/preview/"' in page


def test_budget_edit__changes_and_version_checked(operator: User, tenant: Tenant) -> None:
    budget = make_budget(tenant)
    client = _client(operator)
    form = client.get(f"/budgets/{budget.pk}/edit/").content.decode()
    assert 'name="expected_version" value="1"' in form
    data = _form(agent="", scope="tenant", name="renamed", expected_version="1")
    assert client.post(f"/budgets/{budget.pk}/edit/", data).status_code == 302
    budget.refresh_from_db()
    assert (budget.name, budget.version) == ("renamed", 2)
    stale = client.post(f"/budgets/{budget.pk}/edit/", {**data, "name": "again"})
    assert stale.status_code == 200
    assert "after you loaded it" in stale.content.decode()
    budget.refresh_from_db()
    assert budget.name == "renamed"


def test_budget_delete__confirmation_then_deleted(operator: User, tenant: Tenant) -> None:
    budget = make_budget(tenant)
    client = _client(operator)
    page = client.get(f"/budgets/{budget.pk}/delete/").content.decode()
    assert "Delete budget tenant hourly?" in page
    response = client.post(
        f"/budgets/{budget.pk}/delete/", {"reason": "no longer needed", "expected_version": 1}
    )
    assert response.status_code == 302
    assert not Budget.objects.exists()


def test_budget_detail__with_data__charts_subjects_and_outliers(
    operator: User, tenant: Tenant, agent: Agent
) -> None:
    roomy_hour(tenant)  # this minute's records and the reads below in one hour window
    costs = ["0.01"] * 120 + ["5.00"]
    ingest(tenant, agent, costs, model="gpt-4o")
    budget = make_budget(tenant, name="each", scope="tenant_agent", limits={"cost_usd": "3"})
    html = _client(operator).get(f"/budgets/{budget.pk}/").content.decode()
    assert 'data-testid="burn-down"' in html
    assert "data-plotly-figure" in html
    assert 'data-testid="by-agent"' in html
    assert 'data-testid="by-model"' in html
    assert "at the limit" in html
    assert 'data-testid="outliers"' in html
    assert "r-120" in html  # the 5.00 request
    assert "trace-120" in html
    assert "Top sessions" in html


def test_budget_pages__viewer__no_edit_buttons_and_writes_refused(
    viewer: User, tenant: Tenant, agent: Agent
) -> None:
    budget = make_budget(tenant)
    client = _client(viewer)
    listing = client.get("/budgets/").content.decode()
    assert "tenant hourly" in listing
    assert "/budgets/new/" not in listing
    assert f"/budgets/{budget.pk}/edit/" not in listing
    detail = client.get(f"/budgets/{budget.pk}/").content.decode()
    assert f"/budgets/{budget.pk}/edit/" not in detail
    assert f"/budgets/{budget.pk}/delete/" not in detail
    assert client.post("/budgets/new/", _form()).status_code == 403
    assert client.post(f"/budgets/{budget.pk}/edit/", _form(name="x")).status_code == 403
    assert client.post(f"/budgets/{budget.pk}/delete/", {"reason": "x"}).status_code == 403
    budget.refresh_from_db()
    assert (Budget.objects.count(), budget.name) == (1, "tenant hourly")


def test_budget_pages__other_tenants_budget__not_found(
    operator: User, tenant: Tenant, other_tenant: Tenant
) -> None:
    theirs = make_budget(other_tenant, name="globex secret")
    client = _client(operator)
    assert "globex secret" not in client.get("/budgets/").content.decode()
    for path in ("", "edit/", "delete/"):
        assert client.get(f"/budgets/{theirs.pk}/{path}").status_code == 404
    assert client.post(f"/budgets/{theirs.pk}/delete/", {"reason": "x"}).status_code == 404
    assert client.get(f"/budgets/preview/?budget={theirs.pk}&scope=tenant").status_code == 404
    assert Budget.objects.filter(pk=theirs.pk).exists()
