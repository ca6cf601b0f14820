"""Every write of alerts: raise and acknowledge an alert, manage alert channels, and deliver
an alert to a channel. Each change is authorised (``apps.core.authz.authorize``) and audited
in its own transaction; deliveries leave after commit through ``tasks.deliver_alert``.

Signing and the outbound guard are the kernel's (``apps.core.webhooks``,
``apps.core.outbound``), shared with runtime pushes: a receiver verifies an alert exactly as
a runtime verifies a push (``dataplane/webhook.py``), with ``push_key(secret)`` as the key."""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

import structlog
import urllib3
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from apps.audit.concurrency import last_change, lock_current, version_check
from apps.audit.services import Actor, SystemActor, actor_identity, audit_record
from apps.core.authz import authorize
from apps.core.outbound import PushTargetRefused, push_send, push_target_resolve
from apps.core.webhooks import signed_headers
from apps.tenancy.models import Tenant

from .models import (
    CHANNEL_SECRET_PREFIX,
    Alert,
    AlertChannel,
    AlertDelivery,
    DeliveryStatus,
    Severity,
    hash_channel_secret,
)

log = structlog.get_logger(__name__)

KIND_RE = re.compile(r"^[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*$")
# The kinds raised today and soon, offered as help in the channel form (any well-formed kind
# is accepted: a filter may name a kind before the code raising it ships).
KNOWN_KINDS = (
    "rollout.rolled_back",
    "rollout.paused",
    "budget.exceeded",
    "approval.expired",
)
MAX_KINDS = 20
URL_NOUN = "Alert channel URLs"
TARGET_TYPE = "alerts.alertchannel"
SYSTEM = SystemActor("alerts")


# ------------------------------------------------------------------------------ alerts


def alert_raise(
    *,
    tenant: Tenant,
    kind: str,
    severity: str,
    title: str,
    detail: str,
    link: str = "",
    subject_type: str = "",
    subject_id: str = "",
    actor: Actor = SYSTEM,
) -> Alert:
    """Record an alert of ``tenant`` and have every enabled channel whose filter matches
    ``kind`` receive it once the caller's transaction commits.

    Must run inside the caller's transaction (the rollback or pause it reports), so the
    alert exists exactly when that change does: ``RuntimeError`` otherwise. ``kind`` is
    ``<entity>.<event>`` (``rollout.rolled_back``), ``severity`` one of ``Severity``,
    ``link`` a local path (``/rollouts/12/``) or empty; ``ValueError`` for a malformed one
    (a programming error, not user input). ``title`` is cut to 200 characters, ``detail`` to
    5000. Writes the audit event ``alert.raised``; returns the alert."""
    if not connection.in_atomic_block:
        raise RuntimeError("alert_raise must run inside the transaction of what it reports")
    if not KIND_RE.match(kind) or len(kind) > 64:
        raise ValueError(f"alert kind {kind!r} is not <entity>.<event>")
    if severity not in Severity.values:
        raise ValueError(f"alert severity {severity!r} is not one of {Severity.values}")
    # "//host" and "/\host" are other sites to a browser; a local path is neither.
    if link and (not link.startswith("/") or link.startswith("//") or "\\" in link):
        raise ValueError(f"alert link {link!r} is not a local path")
    if not title.strip():
        raise ValueError("an alert needs a title")
    alert = Alert.objects.create(
        tenant=tenant,
        kind=kind,
        severity=severity,
        title=title.strip()[:200],
        detail=detail[:5000],
        link=link[:500],
        subject_type=subject_type[:100],
        subject_id=str(subject_id)[:64],
    )
    audit_record(
        actor=actor, action="alert.raised", target=alert, tenant=tenant, after=alert.snapshot()
    )
    channels = [
        c for c in AlertChannel.objects.filter(tenant=tenant, enabled=True) if c.matches(kind)
    ]
    deliveries = AlertDelivery.objects.bulk_create(
        [AlertDelivery(alert=alert, channel=channel) for channel in channels]
    )
    ids = [d.pk for d in deliveries]
    if ids:
        # robust: a broker outage after commit must not turn the committed rollback into a 500
        transaction.on_commit(lambda: alert_deliveries_enqueue(delivery_ids=ids), robust=True)
    log.info("alert.raised", alert_id=alert.pk, kind=kind, tenant_id=tenant.pk, channels=len(ids))
    return alert


def alert_deliveries_enqueue(*, delivery_ids: Iterable[int]) -> int:
    """Hand each delivery to the task queue; returns how many were handed over. A failing
    enqueue is logged, not raised (the delivery row stays ``pending`` and can be re-sent with
    ``alert_deliveries_resend``)."""
    from .tasks import deliver_alert  # local: tasks import this module

    sent = 0
    for delivery_id in delivery_ids:
        try:
            deliver_alert.delay(delivery_id)
            sent += 1
        except Exception:  # the broker is down or hung
            log.warning("alert.enqueue_failed", delivery_id=delivery_id, exc_info=True)
    return sent


def alert_deliveries_resend(*, older_than_s: int = 60) -> int:
    """Enqueue again the deliveries never attempted (``pending``, ``attempts`` 0) created more
    than ``older_than_s`` seconds ago: what a broker outage swallowed (the beat's
    ``alerts.resend-deliveries``). Delivery is at least once, like Stripe's webhooks: a task
    still queued behind a long backlog may also run, so receivers de-duplicate by the
    payload's ``id``. At most 500 per run; returns how many were enqueued."""
    cutoff = timezone.now() - timedelta(seconds=older_than_s)
    ids = list(
        AlertDelivery.objects.filter(
            status=DeliveryStatus.PENDING, attempts=0, created_at__lt=cutoff
        ).values_list("pk", flat=True)[:500]
    )
    return alert_deliveries_enqueue(delivery_ids=ids)


@transaction.atomic
def alert_acknowledge(*, actor: Actor, alert: Alert) -> Alert:
    """Mark ``alert`` as seen by ``actor`` (permission ``alerts.change_alert``). Acknowledging
    an acknowledged alert changes nothing and returns it as it is (two people on one page)."""
    authorize(actor, "alerts.change_alert", alert.tenant, while_archived=True)
    alert = Alert.objects.select_for_update().get(pk=alert.pk)
    if alert.acknowledged_at is not None:
        return alert
    before = alert.snapshot()
    user, label = actor_identity(actor)
    alert.acknowledged_at = timezone.now()
    alert.acknowledged_by = user if isinstance(user, User) else None
    alert.acknowledged_label = label[:150]
    alert.save(update_fields=["acknowledged_at", "acknowledged_by", "acknowledged_label"])
    audit_record(
        actor=actor,
        action="alert.acknowledged",
        target=alert,
        tenant=alert.tenant,
        before=before,
        after=alert.snapshot(),
    )
    return alert


# ------------------------------------------------------------------------------ channels


def _validated(
    *,
    tenant: Tenant,
    name: str,
    url: str,
    kinds: Any,
    exclude_pk: int | None = None,
    check_url: bool = True,
) -> tuple[str, str, list[str]]:
    """``(name, url, kinds)`` cleaned; ``ValidationError`` naming each bad field. The URL is
    resolved and checked only when ``check_url`` (a new or changed URL: disabling a channel
    whose receiver's DNS is down must still work; every delivery checks it again anyway)."""
    errors: dict[str, list[str]] = {}
    name = name.strip()
    if not name:
        errors["name"] = ["Name the channel, e.g. on-call pager."]
    elif len(name) > 100:
        errors["name"] = ["At most 100 characters."]
    elif (
        AlertChannel.objects.filter(tenant=tenant, name=name)
        .exclude(pk=exclude_pk or 0)  # 0: no channel has it
        .exists()
    ):
        errors["name"] = [f"{tenant.name} already has a channel named {name}."]
    url = url.strip()
    if not url:
        errors["url"] = ["Give the https URL that receives the alerts."]
    elif len(url) > 500:
        errors["url"] = ["At most 500 characters."]
    elif check_url:
        try:
            push_target_resolve(url, noun=URL_NOUN)
        except PushTargetRefused as exc:
            errors["url"] = [str(exc)]
    if not isinstance(kinds, list | tuple) or not all(isinstance(k, str) for k in kinds):
        errors["kinds"] = ["A list of alert kinds such as rollout.rolled_back (empty: all)."]
        kinds = []
    else:
        kinds = sorted({k.strip() for k in kinds if k.strip()})
        bad = [k for k in kinds if not KIND_RE.match(k) or len(k) > 64]
        if bad:
            errors["kinds"] = [
                f"Not an alert kind: {', '.join(bad)} (kinds look like rollout.rolled_back)."
            ]
        elif len(kinds) > MAX_KINDS:
            errors["kinds"] = [f"At most {MAX_KINDS} kinds."]
    if errors:
        raise ValidationError(errors)
    return name, url, list(kinds)


def _new_secret() -> tuple[str, str, str]:
    """``(raw, hash, display prefix)`` of a fresh channel secret (256 bits)."""
    raw = CHANNEL_SECRET_PREFIX + secrets.token_urlsafe(32)
    return raw, hash_channel_secret(raw), raw[: len(CHANNEL_SECRET_PREFIX) + 6]


@transaction.atomic
def alert_channel_create(
    *,
    actor: Actor,
    tenant: Tenant,
    name: str,
    url: str,
    kinds: Any = (),
    enabled: bool = True,
    reason: str = "",
) -> tuple[AlertChannel, str]:
    """Add an alert channel to ``tenant`` (permission ``alerts.add_alertchannel``). Returns
    the channel and its raw signing secret, which is shown once and stored only as its
    sha256. ``ValidationError`` by field: ``name`` empty or taken, ``url`` malformed or
    refused by the outbound guard (``apps.core.outbound``: not public, cloud metadata),
    ``kinds`` not a list of ``<entity>.<event>``."""
    authorize(actor, "alerts.add_alertchannel", tenant)
    name, url, kinds = _validated(tenant=tenant, name=name, url=url, kinds=list(kinds or []))
    raw, secret_hash, prefix = _new_secret()
    channel = AlertChannel.objects.create(
        tenant=tenant,
        name=name,
        url=url,
        kinds=kinds,
        enabled=enabled,
        secret_hash=secret_hash,
        secret_prefix=prefix,
    )
    audit_record(
        actor=actor,
        action="alert_channel.created",
        target=channel,
        tenant=tenant,
        reason=reason,
        after=channel.snapshot(),
    )
    return channel, raw


def _lock(channel: AlertChannel, expected_version: int | None) -> AlertChannel:
    """The channel locked and re-read; ``DeletedMeanwhile`` if gone, ``StaleVersion`` if it
    moved past ``expected_version`` (None: no check)."""
    what = f"Alert channel {channel.name}"
    locked = lock_current(
        AlertChannel.objects.all(), channel.pk, what=what, target_type=TARGET_TYPE
    )
    if expected_version is not None and expected_version != locked.version:
        changed_by, changed_at = last_change(target_type=TARGET_TYPE, target_id=locked.pk)
        version_check(
            what=what,
            expected=expected_version,
            current=locked.version,
            changed_by=changed_by,
            changed_at=changed_at or locked.updated_at,
        )
    return locked


@transaction.atomic
def alert_channel_update(
    *,
    actor: Actor,
    channel: AlertChannel,
    name: str | None = None,
    url: str | None = None,
    kinds: Any = None,
    enabled: bool | None = None,
    reason: str = "",
    expected_version: int | None = None,
) -> AlertChannel:
    """Change a channel's name, URL, kinds filter or enabled state (``alerts.change_alertchannel``);
    what is not given stays. Validation as ``alert_channel_create``. ``expected_version``:
    the ``version`` the change was based on (None: no check), ``StaleVersion`` if it moved.
    A real change adds one to ``version``; none at all changes nothing and audits nothing."""
    authorize(actor, "alerts.change_alertchannel", channel.tenant)
    channel = _lock(channel, expected_version)
    before = channel.snapshot()
    new_name, new_url, new_kinds = _validated(
        tenant=channel.tenant,
        name=channel.name if name is None else name,
        url=channel.url if url is None else url,
        kinds=list(channel.kinds) if kinds is None else kinds,
        exclude_pk=channel.pk,
        check_url=url is not None and url.strip() != channel.url,
    )
    channel.name, channel.url, channel.kinds = new_name, new_url, new_kinds
    if enabled is not None:
        channel.enabled = enabled
    if channel.snapshot() == before:
        return channel
    channel.version += 1
    channel.save()
    audit_record(
        actor=actor,
        action="alert_channel.updated",
        target=channel,
        tenant=channel.tenant,
        reason=reason,
        before=before,
        after=channel.snapshot(),
    )
    return channel


@transaction.atomic
def alert_channel_rotate_secret(
    *, actor: Actor, channel: AlertChannel, reason: str = "", expected_version: int | None = None
) -> tuple[AlertChannel, str]:
    """Give the channel a new signing secret (the old one stops at once); returns the channel
    and the new raw secret, shown once. ``alerts.change_alertchannel``; versioned as update."""
    authorize(actor, "alerts.change_alertchannel", channel.tenant)
    channel = _lock(channel, expected_version)
    before = channel.snapshot()
    raw, channel.secret_hash, channel.secret_prefix = _new_secret()
    channel.version += 1
    channel.save()
    audit_record(
        actor=actor,
        action="alert_channel.secret_rotated",
        target=channel,
        tenant=channel.tenant,
        reason=reason,
        before=before,
        after=channel.snapshot(),
    )
    return channel, raw


@transaction.atomic
def alert_channel_delete(
    *, actor: Actor, channel: AlertChannel, reason: str = "", expected_version: int | None = None
) -> int:
    """Delete a channel and its delivery log (``alerts.delete_alertchannel``); alerts stay.
    ``expected_version`` as for ``alert_channel_update``. Returns the deleted channel's id."""
    authorize(actor, "alerts.delete_alertchannel", channel.tenant, while_archived=True)
    channel = _lock(channel, expected_version)
    before = channel.snapshot()
    pk, tenant = channel.pk, channel.tenant
    channel.delete()
    audit_record(
        actor=actor,
        action="alert_channel.deleted",
        target_type=TARGET_TYPE,
        target_id=str(pk),
        target_label=before["name"],
        tenant=tenant,
        reason=reason,
        before=before,
    )
    return pk


# ------------------------------------------------------------------------------ delivery


def alert_payload(alert: Alert) -> bytes:
    """The JSON body POSTed to a channel (compact, UTF-8)::

    {"type": "alert", "id": 7, "tenant": "acme", "kind": "rollout.rolled_back",
     "severity": "critical", "title": "...", "detail": "...", "link": "/rollouts/3/",
     "subject": {"type": "rollouts.rollout", "id": "3"}, "created_at": "<ISO 8601>"}
    """
    return json.dumps(
        {
            "type": "alert",
            "id": alert.pk,
            "tenant": alert.tenant.slug,
            "kind": alert.kind,
            "severity": alert.severity,
            "title": alert.title,
            "detail": alert.detail,
            "link": alert.link,
            "subject": {"type": alert.subject_type, "id": alert.subject_id},
            "created_at": alert.created_at.isoformat(),
        },
        separators=(",", ":"),
        ensure_ascii=False,
    ).encode()


def alert_delivery_attempt(*, delivery_id: int) -> AlertDelivery | None:
    """One signed POST of a delivery's alert to its channel, recorded on the delivery row
    whatever its outcome. None when the delivery is gone (its channel was deleted). A
    delivery already delivered is not sent again (a redelivered task); a disabled channel's
    is ``skipped``. The URL is checked again now and the POST goes to exactly the checked
    address (``apps.core.outbound``); a refusal is ``refused`` and never retried; anything
    but a 2xx answer is ``failed`` with the code or the error (the task retries)."""
    try:
        delivery = AlertDelivery.objects.select_related("alert__tenant", "channel").get(
            pk=delivery_id
        )
    except AlertDelivery.DoesNotExist:
        return None
    if delivery.status in (DeliveryStatus.DELIVERED, DeliveryStatus.REFUSED):
        return delivery
    channel = delivery.channel
    if not channel.enabled:
        AlertDelivery.objects.filter(pk=delivery.pk).update(status=DeliveryStatus.SKIPPED)
        delivery.refresh_from_db()
        return delivery
    body = alert_payload(delivery.alert)
    status, code, error = DeliveryStatus.FAILED, None, ""
    try:
        target = push_target_resolve(channel.url, noun=URL_NOUN)
        response = push_send(
            target, body=body, headers=signed_headers(key=channel.secret_hash, body=body)
        )
        code = response.status
        if 200 <= response.status < 300:
            status = DeliveryStatus.DELIVERED
        else:
            error = f"HTTP {response.status}"
    except PushTargetRefused as exc:
        status, error = DeliveryStatus.REFUSED, str(exc)[:2000]
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        error = f"{type(exc).__name__}: {exc}"[:2000]
    now = timezone.now()
    AlertDelivery.objects.filter(pk=delivery.pk).update(
        attempts=F("attempts") + 1,
        status=status,
        response_code=code,
        error=error,
        last_attempt_at=now,
        delivered_at=now if status == DeliveryStatus.DELIVERED else None,
    )
    delivery.refresh_from_db()
    log.info(
        "alert.delivered" if status == DeliveryStatus.DELIVERED else "alert.delivery_failed",
        alert_id=delivery.alert_id,
        channel_id=channel.pk,
        attempts=delivery.attempts,
        status=status,
        error=error,
    )
    return delivery
