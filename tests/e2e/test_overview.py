"""The Overview in a real headless Chromium: an approver clears a waiting approval from the
overview's link (the row's "1 waiting" opens the inbox on that agent and environment,
Approve, back on the overview nothing waits); the live refresh never replaces the row that
holds the keyboard focus, refreshes the others, and stops while paused. No console error,
no CSP violation."""

from __future__ import annotations

from datetime import timedelta

from django.contrib.auth.models import User
from django.utils import timezone
from playwright.sync_api import Page, expect

from apps.approvals.models import ApprovalRequest, Status
from apps.approvals.services import approval_open, queue_create
from apps.core.roles import Role
from apps.tenancy.models import Agent, Tenant

from ..approvals.conftest import ACTOR, agent, approver, body  # noqa: F401 - fixtures
from ..factories import make_user
from .conftest import log_in
from .test_csp import RECORD_VIOLATIONS, Problems


def _waiting(tenant: Tenant, key: str) -> ApprovalRequest:
    return approval_open(
        tenant_id=tenant.pk,
        environment_id=tenant.environments.get(slug="production").pk,
        token_id=None,
        token_agent_id=None,
        token_label="fleet",
        body=body(
            idempotency_key=key,
            session_id=f"sess-{key}",
            tool="lookup_order",
            arguments={"order_id": key},
        ),
        now=timezone.now() - timedelta(minutes=7),
    ).request


def test_overview__an_approver_clears_an_approval_from_the_overviews_link(
    asgi_server: str,
    page: Page,
    tenant: Tenant,
    agent: Agent,  # noqa: F811
    approver: User,  # noqa: F811
) -> None:
    queue_create(
        actor=ACTOR,
        tenant=tenant,
        data={"name": "Reads", "match_tools": ["lookup_order"], "approvers": [approver]},
    )
    waiting = _waiting(tenant, "A-7")
    page.add_init_script(RECORD_VIOLATIONS)
    problems = Problems(page)
    log_in(page, asgi_server, approver.username)

    production = tenant.environments.get(slug="production")
    row = page.locator(f"#row-{agent.pk}-{production.pk}")
    expect(row.get_by_role("rowheader")).to_contain_text("Refund agent")
    link = row.get_by_role("link", name="1 waiting")
    expect(row).to_contain_text("oldest 7")
    link.click()  # click 1: the inbox, on this agent

    expect(page).to_have_url(f"{asgi_server}/approvals/?agent=refund-agent&environment=production")
    expect(page.get_by_label("Environment")).to_have_value("production")
    expect(page.locator("#approval-detail #detail-heading")).to_contain_text(f"#{waiting.pk}")
    page.locator("#approval-detail").get_by_role("button", name="Approve").click()  # click 2
    expect(page.locator(f"#req-{waiting.pk}")).to_have_count(0)
    waiting.refresh_from_db()
    assert waiting.status == Status.APPROVED
    assert waiting.decided_by_label == approver.username

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Overview").click()
    expect(row).to_contain_text("none waiting")
    assert problems.check("overview") == [], problems.check("overview")


def test_overview__live_refresh__keeps_the_focused_row_and_pauses(
    asgi_server: str,
    page: Page,
    tenant: Tenant,
    agent: Agent,  # noqa: F811
    approver: User,  # noqa: F811
) -> None:
    queue_create(
        actor=ACTOR,
        tenant=tenant,
        data={"name": "Reads", "match_tools": ["lookup_order"], "approvers": [approver]},
    )
    operator = make_user(Role.OPERATOR, tenant, username="oscar-operator")
    production = tenant.environments.get(slug="production")
    staging = tenant.environments.get(slug="staging")
    page.add_init_script(RECORD_VIOLATIONS)
    problems = Problems(page)
    log_in(page, asgi_server, operator.username)
    focused_row = page.locator(f"#row-{agent.pk}-{staging.pk}")
    other_row = page.locator(f"#row-{agent.pk}-{production.pk}")
    expect(other_row).to_contain_text("none waiting")

    focused_link = focused_row.get_by_role("rowheader").get_by_role("link")
    focused_link.focus()
    page.evaluate("document.activeElement.probe = 'kept'")
    _waiting(tenant, "A-8")  # something changes on the other row
    page.evaluate("htmx.trigger('#overview-poll', 'overview-refresh')")
    expect(other_row).to_contain_text("1 waiting")  # the other row was refreshed
    assert page.evaluate("document.activeElement.probe") == "kept"  # never replaced
    expect(focused_link).to_be_focused()
    expect(page.locator("#overview-updated")).to_contain_text("Figures as of")

    pause = page.get_by_role("button", name="Pause live updates")  # the top bar's one toggle
    pause.click()
    expect(pause).to_have_attribute("aria-pressed", "true")
    expect(page.locator("#overview-updated")).to_contain_text("paused")
    expect(page.locator("#overview-announce")).to_contain_text("Live updates paused")
    _waiting(tenant, "A-9")
    page.evaluate("htmx.trigger('#overview-poll', 'overview-refresh')")
    page.wait_for_timeout(500)  # a request would have been sent by now; none is
    expect(other_row).to_contain_text("1 waiting")
    pause.click()
    expect(pause).to_have_attribute("aria-pressed", "false")
    expect(other_row).to_contain_text("2 waiting")
    assert problems.check("overview live") == [], problems.check("overview live")
