"""In a real headless Chromium: an Operator disables ``issue_refnd`` (a typo) for the refund
agent from the Kill switches page; the confirmation warns that it matches no tool of
refund-agent's deployed versions (and suggests issue_refund) but still lets it be engaged;
the real tool gets no warning."""

from __future__ import annotations

from django.contrib.auth.models import User
from playwright.sync_api import Page, expect

from apps.audit.services import SystemActor
from apps.bundles.services import bundle_version_push
from apps.flags.models import KillSwitch
from apps.rollouts.services.deployments import deployment_create
from apps.tenancy.models import Tenant

from ..approvals.conftest import CONTRACT
from ..factories import AgentFactory
from .conftest import log_in

ACTOR = SystemActor("test")


def _disable(page: Page, base: str, pattern: str) -> None:
    page.goto(f"{base}/flags/kill-switches/")
    page.get_by_label("Tool (name or pattern)").fill(pattern)
    page.get_by_label("Where").select_option("agent")
    page.get_by_label("Agent (for “Agent” or one environment)").select_option(label="refund-agent")
    page.get_by_role("button", name="Disable tool…").click()
    expect(page.get_by_role("status")).to_contain_text("Effect:")


def test_kill_switch__typo_tool__confirmation_warns_and_still_engages(
    asgi_server: str, page: Page, operator: User, tenant: Tenant
) -> None:
    agent = AgentFactory(tenant=tenant, slug="refund-agent", name="refund-agent")
    version = bundle_version_push(actor=ACTOR, agent=agent, content=CONTRACT, message="v1").version
    deployment_create(
        actor=ACTOR,
        agent=agent,
        environment=tenant.environments.get(slug="production"),
        version=version,
        reason="first release",
    )
    log_in(page, asgi_server, operator.username)

    _disable(page, asgi_server, "issue_refund")
    expect(page.get_by_role("alert")).to_have_count(0)

    _disable(page, asgi_server, "issue_refnd")
    warning = page.get_by_role("alert")
    expect(warning).to_contain_text(
        "The name issue_refnd matches no tool of refund-agent's deployed versions "
        "(did you mean issue_refund?)"
    )
    page.get_by_label("Reason").fill("typo on purpose: a future tool")
    page.get_by_role("button", name="Engage kill switch").click()

    expect(page.locator(".kill-engaged")).to_have_count(1)
    expect(page.locator(".messages")).to_contain_text("matches no tool of refund-agent's")
    assert KillSwitch.objects.get().tool_pattern == "issue_refnd"
