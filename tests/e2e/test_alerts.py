"""Alerts in a real headless Chromium: the nav badge counts an automatic rollback's alert, the
Alerts page links to it and acknowledges it; a channel pointed at a metadata address is
refused on the URL field."""

from __future__ import annotations

from django.contrib.auth.models import User
from django.db import transaction
from playwright.sync_api import Page, expect

from apps.alerts.models import Alert, AlertChannel
from apps.alerts.services import alert_raise
from apps.tenancy.models import Tenant

from .conftest import log_in


def test_alerts__badge_acknowledge_and_refused_channel(
    asgi_server: str, page: Page, operator: User, tenant: Tenant
) -> None:
    with transaction.atomic():
        alert = alert_raise(
            tenant=tenant,
            kind="rollout.rolled_back",
            severity="critical",
            title="support-bot v7 rolled back in production",
            detail="error rate 4.1% against 1.2% on stable",
            link="/rollouts/",
        )
    log_in(page, asgi_server, operator.username)

    nav = page.get_by_role("navigation", name="Main")
    expect(nav.get_by_test_id("alert-badge")).to_have_text("1 unacknowledged")
    nav.get_by_role("link", name="Alerts").click()
    row = page.get_by_test_id(f"alert-{alert.pk}")
    expect(row).to_contain_text("critical")
    expect(
        row.get_by_role("link", name="support-bot v7 rolled back in production")
    ).to_have_attribute("href", "/rollouts/")
    row.get_by_role("button", name="Acknowledge").click()
    expect(page.get_by_role("status")).to_contain_text("acknowledged")
    expect(page.get_by_text("Nothing to acknowledge.")).to_be_visible()
    expect(nav.get_by_test_id("alert-badge")).to_have_count(0)
    alert.refresh_from_db()
    assert alert.acknowledged_label == operator.username

    page.get_by_role("link", name="New alert channel").click()
    page.get_by_label("Name").fill("pager")
    page.get_by_label("URL").fill("http://169.254.169.254/latest/meta-data/")
    page.get_by_role("button", name="Save").click()
    expect(page.locator(".errorlist")).to_contain_text("cloud metadata address")
    assert not AlertChannel.objects.exists()
    assert Alert.objects.count() == 1
