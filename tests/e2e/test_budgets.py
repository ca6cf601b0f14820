"""Budgets in a real headless Chromium: an operator creates a budget in the form, sees the
live preview of what the agent already spent this window, saves, finds it on the list and
sees the budget page's charts drawn, with no console error and no CSP violation."""

from __future__ import annotations

from pathlib import Path

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
    # the header's (the empty state links there too)
    page.get_by_role("link", name="New budget").first.click()
    page.get_by_label("Name", exact=True).fill("support-bot monthly")
    page.get_by_label("Scope", exact=True).select_option("agent")
    page.locator("#id_agent").select_option("support-bot")
    # a month, not an hour: the records are this minute's, and a test running across an hour's
    # end would see them leave the window between the preview and the list
    page.get_by_label("Window", exact=True).select_option("month")
    preview = page.locator("#budget-preview")
    expect(preview).to_contain_text("$3.25")
    page.locator("#id_limit_cost_usd").fill("5")
    page.get_by_label("At the limit").select_option("block")
    page.get_by_role("button", name="Save").click()

    expect(page.get_by_role("heading", name="support-bot monthly")).to_be_visible()
    budget = Budget.objects.get()
    assert budget.limit_cost_usd == 5 and budget.action == "block"
    expect(page.get_by_test_id("burn-down").locator(".main-svg").first).to_be_visible()
    expect(page.get_by_test_id("by-agent").locator(".main-svg").first).to_be_visible()
    expect(page.get_by_test_id("by-model").locator(".main-svg").first).to_be_visible()
    expect(page.get_by_text("65.00%").first).to_be_visible()

    page.get_by_role("link", name="← all budgets").click()
    row = page.get_by_test_id(f"budget-{budget.pk}")
    expect(row).to_contain_text("support-bot monthly")
    expect(row).to_contain_text("$3.25 of $5.00")
    assert problems.check("budgets") == [], problems.check("budgets")


def test_budget_page__a_day_of_spending_drawn(
    asgi_server: str, page: Page, operator: User, tenant: Tenant
) -> None:
    """The budget page over a day of real ingested traffic: burn-down with the limit and the
    forecast, spend by agent and model, subjects, alerts, outliers (the README's screenshot,
    saved under var/test/screenshots/)."""
    import random
    from datetime import timedelta

    from django.utils import timezone

    from apps.budgets.windows import window_bounds

    now = timezone.now()
    # a zone where the day is well under way, so the chart has a history and a forecast
    tenant.time_zone = min(
        ZONES, key=lambda zone: abs((now - window_bounds("day", now, zone)[0]).seconds - 15 * 3600)
    )
    tenant.save()
    start, _ = window_bounds("day", now, tenant.time_zone)
    support = AgentFactory(tenant=tenant, slug="support-bot", name="Support bot")
    refunds = AgentFactory(tenant=tenant, slug="refund-agent", name="Refund agent")
    rng = random.Random(13)
    moment, batch = start + timedelta(minutes=5), 0
    while moment < now - timedelta(minutes=1):
        for agent, model, scale in ((support, "gpt-4o", 1.0), (refunds, "claude-3-5-sonnet", 0.6)):
            costs = [f"{rng.uniform(0.02, 0.09) * scale:.4f}" for _ in range(rng.randint(4, 9))]
            if rng.random() < 0.03:
                costs.append(f"{rng.uniform(1.5, 3.5):.4f}")  # a runaway loop
            ingest(tenant, agent, costs, model=model, when=moment, prefix=f"b{batch}")
            batch += 1
        moment += timedelta(minutes=30)
    from apps.budgets.services import budget_create

    from ..budgets.conftest import ACTOR

    budget = budget_create(
        actor=ACTOR,
        tenant=tenant,
        data={
            "name": "acme daily spend",
            "scope": "tenant",
            "window": "day",
            "limits": {"cost_usd": "40"},
            "action": "block",
            "strict": True,
        },
    )
    page.add_init_script(RECORD_VIOLATIONS)
    problems = Problems(page)
    page.set_viewport_size({"width": 1400, "height": 900})
    log_in(page, asgi_server, operator.username)
    page.goto(f"{asgi_server}/budgets/{budget.pk}/")
    expect(page.get_by_test_id("burn-down").locator(".main-svg").first).to_be_visible()
    expect(page.get_by_test_id("by-model").locator(".main-svg").first).to_be_visible()
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "budget.png"), full_page=True)
    assert problems.check("budget page") == [], problems.check("budget page")


ZONES = (
    "Pacific/Honolulu",
    "America/Los_Angeles",
    "America/Chicago",
    "America/Sao_Paulo",
    "UTC",
    "Europe/Berlin",
    "Asia/Dubai",
    "Asia/Kolkata",
    "Asia/Shanghai",
    "Asia/Tokyo",
    "Australia/Sydney",
    "Pacific/Auckland",
)
SHOTS = Path(__file__).resolve().parents[2] / "var" / "test" / "screenshots"
