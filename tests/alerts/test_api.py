"""/api/v1/alerts/ and /api/v1/alert-channels/: scoped, authorised, 400 with field errors."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import transaction

from apps.alerts.models import Alert, AlertChannel
from apps.alerts.services import alert_raise
from apps.audit.models import AuditEvent
from apps.tenancy.models import Tenant
from dataplane.webhook import push_key

from ..conftest import api_as

pytestmark = pytest.mark.django_db


def _alert(tenant: Tenant) -> Alert:
    with transaction.atomic():
        return alert_raise(
            tenant=tenant,
            kind="rollout.paused",
            severity="warning",
            title="canary paused: p95 latency inconclusive",
            detail="",
        )


def test_alerts_list__only_own_tenants_alerts(
    tenant: Tenant, other_tenant: Tenant, viewer: Any
) -> None:
    mine, _theirs = _alert(tenant), _alert(other_tenant)
    response = api_as(viewer).get("/api/v1/alerts/")
    assert response.status_code == 200
    rows = response.json()["results"] if "results" in response.json() else response.json()
    assert [row["id"] for row in rows] == [mine.pk]


def test_alert_acknowledge__operator__acknowledged_and_audited(
    tenant: Tenant, operator: Any
) -> None:
    alert = _alert(tenant)
    response = api_as(operator).post(f"/api/v1/alerts/{alert.pk}/acknowledge/")
    assert response.status_code == 200, response.content
    assert response.json()["acknowledged_by"] == "olivia-operator"
    assert AuditEvent.objects.filter(action="alert.acknowledged").count() == 1


def test_alert_acknowledge__viewer__403_nothing_changes(tenant: Tenant, viewer: Any) -> None:
    alert = _alert(tenant)
    response = api_as(viewer).post(f"/api/v1/alerts/{alert.pk}/acknowledge/")
    assert response.status_code == 403
    alert.refresh_from_db()
    assert alert.acknowledged_at is None


def test_alert_acknowledge__other_tenants_alert__404(other_tenant: Tenant, operator: Any) -> None:
    alert = _alert(other_tenant)
    assert api_as(operator).post(f"/api/v1/alerts/{alert.pk}/acknowledge/").status_code == 404


def test_alert_list__bad_query__400_naming_it(viewer: Any) -> None:
    response = api_as(viewer).get("/api/v1/alerts/?unacknowledged=maybe")
    assert response.status_code == 400
    assert list(response.json()["errors"]) == ["unacknowledged"]


def test_channel_create__operator__201_with_secret_once(
    tenant: Tenant, operator: Any, loopback_allowed: None
) -> None:
    client = api_as(operator)
    response = client.post(
        "/api/v1/alert-channels/",
        {
            "tenant": tenant.pk,
            "name": "pager",
            "url": "http://127.0.0.1:9/hook",
            "kinds": ["rollout.rolled_back"],
        },
        format="json",
    )
    assert response.status_code == 201, response.content
    body = response.json()
    channel = AlertChannel.objects.get()
    assert channel.secret_hash == push_key(body["secret"])
    assert body["kinds"] == ["rollout.rolled_back"]
    again = client.get(f"/api/v1/alert-channels/{channel.pk}/")
    assert "secret" not in again.json()
    assert again["ETag"] == '"1"'


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({"name": "", "url": "http://10.0.0.1/"}, {"name"}),
        ({"name": "pager", "url": "http://10.0.0.1/"}, {"url"}),
        ({"name": "pager", "url": "http://169.254.169.254/"}, {"url"}),
        ({"name": "pager", "url": "not a url"}, {"url"}),
        ({"name": "pager", "url": "http://127.0.0.1/", "kinds": ["Bad kind"]}, {"kinds"}),
        ({"name": "pager", "url": "http://127.0.0.1/", "kinds": "rollout.paused"}, {"kinds"}),
        ({"name": "pager", "url": "http://127.0.0.1/", "enabled": "perhaps"}, {"enabled"}),
        ({"url": "http://127.0.0.1/"}, {"name"}),
    ],
)
def test_channel_create__bad_input__400_field_errors_nothing_changes(
    tenant: Tenant, operator: Any, body: dict[str, Any], fields: set[str], loopback_allowed: None
) -> None:
    audit_before = AuditEvent.objects.count()
    response = api_as(operator).post(
        "/api/v1/alert-channels/", {"tenant": tenant.pk, **body}, format="json"
    )
    assert response.status_code == 400, response.content
    assert set(response.json()["errors"]) == fields
    assert not AlertChannel.objects.exists()
    assert AuditEvent.objects.count() == audit_before


def test_channel_create__viewer__403_nothing_changes(tenant: Tenant, viewer: Any) -> None:
    response = api_as(viewer).post(
        "/api/v1/alert-channels/",
        {"tenant": tenant.pk, "name": "pager", "url": "http://127.0.0.1/"},
        format="json",
    )
    assert response.status_code == 403
    assert not AlertChannel.objects.exists()


def test_channel_create__into_other_tenant__404(other_tenant: Tenant, operator: Any) -> None:
    response = api_as(operator).post(
        "/api/v1/alert-channels/",
        {"tenant": other_tenant.pk, "name": "pager", "url": "http://127.0.0.1/"},
        format="json",
    )
    assert response.status_code == 404
    assert not AlertChannel.objects.exists()


def test_channel_update_and_delete__stale_version__409_then_current__done(
    tenant: Tenant, operator: Any, loopback_allowed: None
) -> None:
    client = api_as(operator)
    created = client.post(
        "/api/v1/alert-channels/",
        {"tenant": tenant.pk, "name": "pager", "url": "http://127.0.0.1:9/"},
        format="json",
    ).json()
    url = f"/api/v1/alert-channels/{created['id']}/"
    assert client.patch(url, {"enabled": False}, format="json").json()["version"] == 2

    stale = client.patch(url, {"name": "x", "expected_version": 1}, format="json")
    assert stale.status_code == 409
    assert stale.json()["changed_by"] == "olivia-operator"

    assert client.delete(url, HTTP_IF_MATCH='"1"').status_code == 409
    assert client.delete(url + "?reason=gone", HTTP_IF_MATCH='"2"').status_code == 204
    assert not AlertChannel.objects.exists()
    assert AuditEvent.objects.filter(action="alert_channel.deleted").get().reason == "gone"


def test_channel_deliveries__lists_attempts(
    tenant: Tenant, operator: Any, loopback_allowed: None
) -> None:
    client = api_as(operator)
    created = client.post(
        "/api/v1/alert-channels/",
        {"tenant": tenant.pk, "name": "pager", "url": "http://127.0.0.1:9/"},
        format="json",
    ).json()
    alert = _alert(tenant)
    response = client.get(f"/api/v1/alert-channels/{created['id']}/deliveries/")
    assert response.status_code == 200
    rows = response.json()["results"] if "results" in response.json() else response.json()
    assert [(r["alert"], r["status"], r["attempts"]) for r in rows] == [(alert.pk, "pending", 0)]


def test_channel_rotate_secret__new_secret_once_old_key_gone(
    tenant: Tenant, operator: Any, loopback_allowed: None
) -> None:
    client = api_as(operator)
    created = client.post(
        "/api/v1/alert-channels/",
        {"tenant": tenant.pk, "name": "pager", "url": "http://127.0.0.1:9/"},
        format="json",
    ).json()
    response = client.post(
        f"/api/v1/alert-channels/{created['id']}/rotate-secret/",
        {"reason": "leaked in a chat", "expected_version": 1},
        format="json",
    )
    assert response.status_code == 200, response.content
    secret = response.json()["secret"]
    assert secret != created["secret"]
    channel = AlertChannel.objects.get()
    assert (channel.secret_hash, channel.version) == (push_key(secret), 2)
    assert (
        AuditEvent.objects.get(action="alert_channel.secret_rotated").reason == "leaked in a chat"
    )
