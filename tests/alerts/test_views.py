"""The Alerts page: alerts with acknowledge, channels with add/edit/delete, the nav badge."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import transaction
from django.test import Client

from apps.alerts.models import Alert, AlertChannel
from apps.alerts.services import alert_channel_create, alert_raise
from apps.audit.models import AuditEvent
from apps.audit.services import SystemActor
from apps.tenancy.models import Tenant
from dataplane.webhook import push_key

pytestmark = pytest.mark.django_db


def _login(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _alert(tenant: Tenant, title: str = "support-bot v7 rolled back") -> Alert:
    with transaction.atomic():
        return alert_raise(
            tenant=tenant,
            kind="rollout.rolled_back",
            severity="critical",
            title=title,
            detail="error rate 3.4 times stable",
            link="/rollouts/3/",
        )


def test_alerts_page__lists_own_tenants_open_alerts_with_link_and_severity(
    tenant: Tenant, other_tenant: Tenant, viewer: Any
) -> None:
    _alert(tenant)
    _alert(other_tenant, title="globex secret")
    page = _login(viewer).get("/alerts/").content.decode()
    assert "support-bot v7 rolled back" in page
    assert 'href="/rollouts/3/"' in page
    assert "critical" in page
    assert "globex secret" not in page
    assert "Acknowledge" not in page  # a Viewer may not


def test_alerts_page__operator_acknowledges__gone_from_open_list_and_badge(
    tenant: Tenant, operator: Any
) -> None:
    alert = _alert(tenant)
    client = _login(operator)
    assert 'data-testid="alert-badge">1<' in client.get("/alerts/badge/").content.decode()

    response = client.post(f"/alerts/{alert.pk}/acknowledge/", {"next": "/alerts/"})

    assert response.status_code == 302
    assert response["Location"] == "/alerts/"
    alert.refresh_from_db()
    assert alert.acknowledged_label == "olivia-operator"
    row = f'data-testid="alert-{alert.pk}"'
    assert row not in client.get("/alerts/").content.decode()
    assert row in client.get("/alerts/?show=all").content.decode()
    assert "alert-badge" not in client.get("/alerts/badge/").content.decode()


def test_channel_form__bad_input__errors_on_fields_nothing_saved(
    tenant: Tenant, operator: Any
) -> None:
    response = _login(operator).post(
        "/alerts/channels/new/",
        {"name": "pager", "url": "http://169.254.169.254/", "kinds": "not a kind"},
    )
    assert response.status_code == 200
    page = response.content.decode()
    assert "metadata address" in page
    assert "Not an alert kind" in page
    assert not AlertChannel.objects.exists()


def test_channel_form__create_edit_delete(
    tenant: Tenant, operator: Any, loopback_allowed: None
) -> None:
    client = _login(operator)
    created = client.post(
        "/alerts/channels/new/",
        {
            "name": "pager",
            "url": "http://127.0.0.1:9/hook",
            "kinds": "rollout.rolled_back\nrollout.paused",
            "enabled": "on",
        },
    )
    assert created.status_code == 200
    channel = AlertChannel.objects.get()
    secret = created.context["raw"]
    assert channel.secret_hash == push_key(secret)
    assert secret in created.content.decode()
    assert channel.kinds == ["rollout.paused", "rollout.rolled_back"]

    edited = client.post(
        f"/alerts/channels/{channel.pk}/edit/",
        {"name": "pager", "url": channel.url, "kinds": "", "expected_version": 1},
    )
    assert edited.status_code == 302
    channel.refresh_from_db()
    assert (channel.enabled, channel.kinds, channel.version) == (False, [], 2)
    listing = client.get("/alerts/").content.decode()
    assert "disabled" in listing
    assert secret not in listing

    stale = client.post(
        f"/alerts/channels/{channel.pk}/delete/", {"reason": "x", "expected_version": 1}
    )
    assert stale.status_code == 200 and AlertChannel.objects.exists()
    deleted = client.post(
        f"/alerts/channels/{channel.pk}/delete/",
        {"reason": "moved to pager", "expected_version": 2},
    )
    assert deleted.status_code == 302
    assert not AlertChannel.objects.exists()
    assert AuditEvent.objects.get(action="alert_channel.deleted").reason == "moved to pager"


def test_alerts_page__channels_show_last_deliveries(
    tenant: Tenant, viewer: Any, loopback_allowed: None, django_assert_max_num_queries: Any
) -> None:
    for name in ("pager", "chat"):
        alert_channel_create(
            actor=SystemActor("t"), tenant=tenant, name=name, url="http://127.0.0.1:9/"
        )
    for n in range(8):
        _alert(tenant, title=f"alert {n}")
    client = _login(viewer)
    client.get("/alerts/")  # warm the session and permission caches
    with django_assert_max_num_queries(12):
        page = client.get("/alerts/").content.decode()
    assert page.count("pending") >= 10  # five per channel


def test_channel_rotate__confirm_with_reason__new_secret_shown_once(
    tenant: Tenant, operator: Any, loopback_allowed: None
) -> None:
    channel, old = alert_channel_create(
        actor=SystemActor("t"), tenant=tenant, name="pager", url="http://127.0.0.1:9/"
    )
    client = _login(operator)
    assert "Rotate secret" in client.get(f"/alerts/channels/{channel.pk}/rotate/").content.decode()
    assert (
        client.post(f"/alerts/channels/{channel.pk}/rotate/", {"expected_version": 1})
        .context["form"]
        .errors["reason"]
    )

    response = client.post(
        f"/alerts/channels/{channel.pk}/rotate/", {"reason": "leaked", "expected_version": 1}
    )

    assert response.status_code == 200
    new = response.context["raw"]
    channel.refresh_from_db()
    assert new != old and channel.secret_hash == push_key(new)
    assert new in response.content.decode()
