"""Raising, acknowledging and delivering alerts; channel validation and the outbound guard."""

from __future__ import annotations

import hmac
import json
from datetime import timedelta
from typing import Any

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone

from apps.alerts import services
from apps.alerts.models import Alert, AlertChannel, AlertDelivery, DeliveryStatus
from apps.alerts.services import alert_acknowledge, alert_channel_create, alert_raise
from apps.alerts.tasks import MAX_ATTEMPTS, deliver_alert
from apps.audit.models import AuditEvent
from apps.audit.services import SystemActor
from apps.core.webhooks import SIGNATURE_HEADER, TIMESTAMP_HEADER
from apps.tenancy.models import Tenant
from dataplane.webhook import push_key, sign_push

from .conftest import Receiver

pytestmark = pytest.mark.django_db
ACTOR = SystemActor("test")


def _raise(tenant: Tenant, kind: str = "rollout.rolled_back") -> Alert:
    with transaction.atomic():
        return alert_raise(
            tenant=tenant,
            kind=kind,
            severity="critical",
            title="support-bot v7 rolled back in production",
            detail="error rate 4.1% vs 1.2% stable (ratio 3.4, limit 1.5)",
            link="/rollouts/3/",
            subject_type="rollouts.rollout",
            subject_id="3",
        )


def test_alert_raise__records_alert_and_audit_event(tenant: Tenant) -> None:
    alert = _raise(tenant)

    assert Alert.objects.get() == alert
    assert (alert.severity, alert.kind, alert.acknowledged_at) == (
        "critical",
        "rollout.rolled_back",
        None,
    )
    event = AuditEvent.objects.get(action="alert.raised")
    assert (event.target_type, event.target_id, event.tenant_id) == (
        "alerts.alert",
        str(alert.pk),
        tenant.pk,
    )
    assert event.after is not None
    assert event.after["title"] == "support-bot v7 rolled back in production"


@pytest.mark.parametrize(
    "bad",
    [
        {"kind": "rolled back"},
        {"severity": "urgent"},
        {"link": "https://evil.example/"},
        {"link": "//evil.example/"},
        {"link": "/\\evil.example/"},
        {"title": "  "},
    ],
)
def test_alert_raise__malformed_call__value_error_and_nothing_recorded(
    tenant: Tenant, bad: dict[str, str]
) -> None:
    call: dict[str, Any] = {
        "tenant": tenant,
        "kind": "rollout.paused",
        "severity": "warning",
        "title": "paused",
        "detail": "",
    }
    with pytest.raises(ValueError), transaction.atomic():
        alert_raise(**{**call, **bad})
    assert not Alert.objects.exists()


def test_alert_raise__after_commit__enqueues_one_delivery_per_matching_enabled_channel(
    tenant: Tenant,
    other_tenant: Tenant,
    loopback_allowed: None,
    monkeypatch: pytest.MonkeyPatch,
    django_capture_on_commit_callbacks: Any,
) -> None:
    url = "http://127.0.0.1:9/alerts"
    every, _ = alert_channel_create(actor=ACTOR, tenant=tenant, name="all", url=url)
    rollbacks, _ = alert_channel_create(
        actor=ACTOR, tenant=tenant, name="rb", url=url, kinds=["rollout.rolled_back"]
    )
    alert_channel_create(
        actor=ACTOR, tenant=tenant, name="budgets", url=url, kinds=["budget.exceeded"]
    )
    alert_channel_create(actor=ACTOR, tenant=tenant, name="off", url=url, enabled=False)
    alert_channel_create(actor=ACTOR, tenant=other_tenant, name="theirs", url=url)
    enqueued: list[int] = []
    monkeypatch.setattr(deliver_alert, "delay", enqueued.append)

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        alert = _raise(tenant)
    assert enqueued == []  # nothing leaves before the commit
    for callback in callbacks:
        callback()

    deliveries = AlertDelivery.objects.filter(alert=alert)
    assert {d.channel_id for d in deliveries} == {every.pk, rollbacks.pk}
    assert sorted(enqueued) == sorted(d.pk for d in deliveries)


def test_delivery__receiver_gets_a_post_signed_like_runtime_pushes(
    tenant: Tenant, receiver: Receiver, django_capture_on_commit_callbacks: Any
) -> None:
    channel, secret = alert_channel_create(
        actor=ACTOR, tenant=tenant, name="pager", url=receiver.url
    )
    with django_capture_on_commit_callbacks(execute=False):
        alert = _raise(tenant)
    delivery = AlertDelivery.objects.get(alert=alert, channel=channel)

    deliver_alert.apply(args=[delivery.pk])

    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.response_code) == ("delivered", 1, 204)
    assert delivery.delivered_at is not None
    ((headers, body),) = receiver.received
    # Verified with the data plane's own webhook code, key derived from the secret alone.
    key = push_key(secret)
    expected = sign_push(key=key, timestamp=int(headers[TIMESTAMP_HEADER]), body=body)
    assert hmac.compare_digest(headers[SIGNATURE_HEADER], expected)
    assert headers["Content-Type"] == "application/json"
    payload = json.loads(body)
    assert payload["type"] == "alert"
    assert payload["id"] == alert.pk
    assert payload["tenant"] == "acme"
    assert payload["kind"] == "rollout.rolled_back"
    assert payload["severity"] == "critical"
    assert payload["link"] == "/rollouts/3/"
    assert payload["subject"] == {"type": "rollouts.rollout", "id": "3"}


def test_delivery__receiver_answers_500_twice__retried_then_delivered(
    tenant: Tenant, receiver: Receiver, django_capture_on_commit_callbacks: Any
) -> None:
    receiver.statuses = [500, 500]
    channel, _ = alert_channel_create(actor=ACTOR, tenant=tenant, name="pager", url=receiver.url)
    with django_capture_on_commit_callbacks(execute=False):
        alert = _raise(tenant)
    delivery = AlertDelivery.objects.get(alert=alert, channel=channel)

    deliver_alert.apply(args=[delivery.pk])

    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.response_code) == ("delivered", 3, 204)
    assert len(receiver.received) == 3
    assert len({sig[SIGNATURE_HEADER] for sig, _ in receiver.received}) >= 1


def test_delivery__receiver_always_fails__gives_up_after_max_attempts(
    tenant: Tenant, receiver: Receiver, django_capture_on_commit_callbacks: Any
) -> None:
    receiver.statuses = [500] * 20
    channel, _ = alert_channel_create(actor=ACTOR, tenant=tenant, name="pager", url=receiver.url)
    with django_capture_on_commit_callbacks(execute=False):
        alert = _raise(tenant)
    delivery = AlertDelivery.objects.get(alert=alert, channel=channel)

    deliver_alert.apply(args=[delivery.pk])

    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.error) == (
        "failed",
        MAX_ATTEMPTS,
        "HTTP 500",
    )


def test_delivery__url_no_longer_allowed__refused_once_never_retried(
    tenant: Tenant, receiver: Receiver, settings: Any, django_capture_on_commit_callbacks: Any
) -> None:
    channel, _ = alert_channel_create(actor=ACTOR, tenant=tenant, name="pager", url=receiver.url)
    with django_capture_on_commit_callbacks(execute=False):
        alert = _raise(tenant)
    delivery = AlertDelivery.objects.get(alert=alert, channel=channel)
    settings.RUNTIME_PUSH_ALLOWED_CIDRS = []  # the operator withdrew the allowance

    deliver_alert.apply(args=[delivery.pk])

    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == (DeliveryStatus.REFUSED, 1)
    assert "not a public address" in delivery.error
    assert receiver.received == []


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8000/internal",
        "http://localhost/",
        "http://[::ffff:127.0.0.1]/",
        "http://10.0.0.5/",
        "http://192.168.1.10/",
        "http://169.254.169.254/latest/meta-data/",
        "http://[fd00:ec2::254]/",
        "ftp://hooks.example/",
        "http://user:pw@8.8.8.8/",
    ],
)
def test_channel_create__private_metadata_or_odd_url__refused_like_push_targets(
    tenant: Tenant, url: str
) -> None:
    with pytest.raises(ValidationError) as refused:
        alert_channel_create(actor=ACTOR, tenant=tenant, name="pager", url=url)
    assert list(refused.value.message_dict) == ["url"]
    assert not AlertChannel.objects.exists()


def test_channel_create__metadata_address__refused_even_inside_allowed_network(
    tenant: Tenant, settings: Any
) -> None:
    settings.RUNTIME_PUSH_ALLOWED_CIDRS = ["169.254.0.0/16"]
    with pytest.raises(ValidationError, match="metadata"):
        alert_channel_create(actor=ACTOR, tenant=tenant, name="p", url="http://169.254.169.254/")


def test_channel_create__bad_fields__every_field_named(tenant: Tenant) -> None:
    with pytest.raises(ValidationError) as refused:
        alert_channel_create(
            actor=ACTOR, tenant=tenant, name=" ", url="http://10.0.0.1/", kinds=["Not A Kind"]
        )
    assert sorted(refused.value.message_dict) == ["kinds", "name", "url"]


def test_channel_create__secret_shown_once_stored_as_hash(
    tenant: Tenant, loopback_allowed: None
) -> None:
    channel, raw = alert_channel_create(
        actor=ACTOR, tenant=tenant, name="pager", url="http://127.0.0.1:9/"
    )
    assert raw.startswith("whsec_")
    assert channel.secret_hash == push_key(raw)
    assert raw not in json.dumps(list(AuditEvent.objects.values("before", "after")), default=str)


def test_channel_update__stale_version__refused_naming_who(
    tenant: Tenant, loopback_allowed: None, operator: Any
) -> None:
    channel, _ = alert_channel_create(
        actor=ACTOR, tenant=tenant, name="pager", url="http://127.0.0.1:9/"
    )
    services.alert_channel_update(actor=operator, channel=channel, enabled=False)

    with pytest.raises(ValidationError, match="olivia-operator"):
        services.alert_channel_update(
            actor=operator, channel=channel, name="renamed", expected_version=1
        )
    channel.refresh_from_db()
    assert (channel.name, channel.enabled, channel.version) == ("pager", False, 2)


def test_alert_acknowledge__viewer__refused_and_nothing_changes(
    tenant: Tenant, viewer: Any
) -> None:
    alert = _raise(tenant)
    with pytest.raises(PermissionDenied):
        alert_acknowledge(actor=viewer, alert=alert)
    alert.refresh_from_db()
    assert alert.acknowledged_at is None


def test_alert_acknowledge__twice__one_audit_event(tenant: Tenant, operator: Any) -> None:
    alert = _raise(tenant)
    alert_acknowledge(actor=operator, alert=alert)
    alert_acknowledge(actor=operator, alert=alert)
    alert.refresh_from_db()
    assert alert.acknowledged_label == "olivia-operator"
    assert AuditEvent.objects.filter(action="alert.acknowledged").count() == 1


@pytest.mark.django_db(transaction=True)
def test_alert_raise__outside_a_transaction__refused(tenant: Tenant) -> None:
    with pytest.raises(RuntimeError, match="inside the transaction"):
        alert_raise(tenant=tenant, kind="rollout.paused", severity="info", title="t", detail="")
    assert not Alert.objects.exists()


def test_alert_deliveries_resend__only_never_attempted_old_ones(
    tenant: Tenant,
    loopback_allowed: None,
    monkeypatch: pytest.MonkeyPatch,
    django_capture_on_commit_callbacks: Any,
) -> None:
    channel, _ = alert_channel_create(
        actor=ACTOR, tenant=tenant, name="p", url="http://127.0.0.1:9/"
    )
    with django_capture_on_commit_callbacks(execute=False):
        old, fresh, tried = _raise(tenant), _raise(tenant), _raise(tenant)
    AlertDelivery.objects.filter(alert__in=[old, tried]).update(
        created_at=timezone.now() - timedelta(minutes=5)
    )
    AlertDelivery.objects.filter(alert=tried).update(attempts=1, status=DeliveryStatus.FAILED)
    enqueued: list[int] = []
    monkeypatch.setattr(deliver_alert, "delay", enqueued.append)

    assert services.alert_deliveries_resend() == 1
    assert enqueued == [AlertDelivery.objects.get(alert=old, channel=channel).pk]
    assert fresh.pk != old.pk
