"""Budgets in a real headless Chromium: an operator creates a budget in the form, sees the
live preview of what the agent already spent this window, saves, finds it on the list and
sees the budget page's charts drawn, with no console error and no CSP violation."""

from __future__ import annotations

from django.contrib.auth.models import User
from playwright.sync_api import Page, expect

from apps.budgets.models import Budget
from apps.tenancy.models import Tenant

from ..budgets.conftest import ingest
from ..factories import AgentFactory
from .conftest import log_in
from .test_csp import RECORD_VIOLATIONS, Problems


def test_budgets__create_with_preview_list_and_charts(
    asgi_server: str, page: Page, operator: User, tenant: Tenant
) -> None:
    agent = AgentFactory(tenant=tenant, slug="support-bot", name="Support bot")
    ingest(tenant, agent, ["1.25", "2.00"], model="gpt-4o")
    page.add_init_script(RECORD_VIOLATIONS)
    problems = Problems(page)
    log_in(page, asgi_server, operator.username)

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Budgets").click()
    expect(page.get_by_text("No budgets yet for Acme.")).to_be_visible()
    page.get_by_role("link", name="New budget").click()
    page.get_by_label("Name", exact=True).fill("support-bot hourly")
    page.get_by_label("Scope", exact=True).select_option("agent")
    page.locator("#id_agent").select_option("support-bot")
    page.get_by_label("Window", exact=True).select_option("hour")
    preview = page.locator("#budget-preview")
    expect(preview).to_contain_text("$3.25")
    page.locator("#id_limit_cost_usd").fill("5")
    page.get_by_label("At the limit").select_option("block")
    page.get_by_role("button", name="Save").click()

    expect(page.get_by_role("heading", name="support-bot hourly")).to_be_visible()
    budget = Budget.objects.get()
    assert budget.limit_cost_usd == 5 and budget.action == "block"
    expect(page.get_by_test_id("burn-down").locator(".main-svg").first).to_be_visible()
    expect(page.get_by_test_id("by-agent").locator(".main-svg").first).to_be_visible()
    expect(page.get_by_test_id("by-model").locator(".main-svg").first).to_be_visible()
    expect(page.get_by_text("65.00%").first).to_be_visible()

    page.get_by_role("link", name="← all budgets").click()
    row = page.get_by_test_id(f"budget-{budget.pk}")
    expect(row).to_contain_text("support-bot hourly")
    expect(row).to_contain_text("$3.25 of $5.00")
    assert problems.check("budgets") == [], problems.check("budgets")
