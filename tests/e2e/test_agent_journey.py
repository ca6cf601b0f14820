"""One operator journey in a real headless Chromium (Debian's, never a downloaded build):
log in, create an agent, find it in the list and its `agent.created` event in the audit log."""

from __future__ import annotations

import re

from django.contrib.auth.models import User
from playwright.sync_api import Page, expect

from apps.audit.models import AuditEvent
from apps.tenancy.models import Agent, Tenant

from .conftest import log_in


def test_operator_journey__create_agent__listed_and_audited(
    live_server,
    page: Page,
    operator: User,
    tenant: Tenant,  # type: ignore[no-untyped-def]
) -> None:
    log_in(page, live_server.url, "olivia-operator")

    # create an agent through the UI
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Agents").click()
    page.get_by_role("link", name="New agent").click()  # navigation: a link styled as a button
    page.get_by_label("Slug").fill("journey-bot")
    page.get_by_label("Name").fill("Journey bot")
    page.get_by_label("Description").fill("Created by the browser test.")
    page.get_by_label("Reason").fill("e2e journey")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("heading", name="Journey bot")).to_be_visible()
    expect(page.get_by_role("status")).to_contain_text("Agent Journey bot created.")

    # it is in the agent list
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Agents").click()
    row = page.get_by_role("row").filter(has_text="journey-bot")
    expect(row).to_contain_text("Journey bot")
    expect(row).to_contain_text("active")

    # and in the audit log, with its event
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Audit").click()
    event_row = (
        page.get_by_role("row").filter(has_text="agent.created").filter(has_text="Journey bot")
    )
    expect(event_row).to_have_count(1)
    expect(event_row).to_contain_text("olivia-operator")
    expect(event_row).to_contain_text("e2e journey")
    event_row.get_by_role("link", name="agent.created").click()
    expect(page.get_by_role("heading", name="agent.created")).to_be_visible()
    # the field-level diff: each field added, its value as JSON, marked "+"
    slug_row = page.locator('tr[data-path="slug"]')
    expect(slug_row.locator("ins.diff-after")).to_have_text('+ after: "journey-bot"')
    expect(slug_row).to_contain_text("added")

    agent = Agent.objects.get(slug="journey-bot")
    # and the event links to the agent's page
    page.get_by_test_id("audit-target").click()
    expect(page).to_have_url(re.compile(rf"/agents/{agent.pk}/$"))
    assert agent.tenant == tenant
    assert (
        AuditEvent.objects.filter(
            action="agent.created", target_id=str(agent.pk), actor=operator
        ).count()
        == 1
    )


def test_viewer_journey__no_way_to_create(
    live_server, page: Page, viewer: User, tenant: Tenant
) -> None:  # type: ignore[no-untyped-def]
    log_in(page, live_server.url, "victor-viewer")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Agents").click()
    expect(page.get_by_role("heading", name="Agents")).to_be_visible()
    expect(page.get_by_role("link", name="New agent")).to_have_count(0)
    response = page.goto(f"{live_server.url}/agents/new/")
    assert response is not None
    assert response.status == 403


def test_operator_journey__archive_and_restore_an_agent_and_an_environment(
    live_server,
    page: Page,
    operator: User,
    tenant: Tenant,  # type: ignore[no-untyped-def]
) -> None:
    agent = Agent.objects.create(tenant=tenant, slug="retiring-bot", name="Retiring bot")
    log_in(page, live_server.url, "olivia-operator")

    # archive the agent from its page, then find it with "Show archived" and restore it
    page.goto(f"{live_server.url}/agents/{agent.pk}/")
    page.get_by_role("button", name="Archive…").click()
    page.get_by_label("Reason").fill("replaced")
    page.get_by_role("button", name="Archive agent").click()
    expect(page.get_by_role("status")).to_contain_text("Retiring bot archived.")
    page.get_by_label("Show archived").check()
    page.get_by_role("button", name="Filter").click()
    page.get_by_role("link", name="Retiring bot").click()
    expect(page.get_by_role("heading", name="Retiring bot")).to_contain_text("archived")
    page.get_by_role("button", name="Restore…").click()
    expect(page.get_by_role("heading", name="Restore Retiring bot?")).to_be_visible()
    page.get_by_label("Reason").fill("needed after all")
    page.get_by_role("button", name="Restore agent").click()
    expect(page.get_by_role("status")).to_contain_text("Retiring bot restored.")
    expect(page.get_by_role("heading", name="Retiring bot")).to_contain_text("active")

    # archive staging from the tenant's page; it is listed as archived and restored in place
    page.goto(f"{live_server.url}/tenants/{tenant.slug}/")
    staging = tenant.environments.get(slug="staging")
    page.locator(f'a[href="/environments/{staging.pk}/archive/"]').click()
    page.get_by_label("Reason").fill("merged")
    page.get_by_role("button", name="Archive environment").click()
    archived = page.get_by_role("region", name="Archived environments")
    expect(archived.get_by_role("row").filter(has_text="staging")).to_have_count(1)
    archived.get_by_role("link", name="Restore Staging").click()
    page.get_by_label("Reason").fill("back")
    page.get_by_role("button", name="Restore environment").click()
    expect(page.get_by_role("status")).to_contain_text("Staging restored.")
    expect(page.get_by_role("region", name="Archived environments")).to_have_count(0)
    agent.refresh_from_db()
    assert not agent.is_archived
    assert list(
        AuditEvent.objects.filter(action__endswith="restored")
        .order_by("id")
        .values_list("action", flat=True)
    ) == ["agent.restored", "environment.restored"]
