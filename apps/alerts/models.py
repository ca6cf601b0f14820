"""Alerts (issue 12): what the control plane did by itself that a person should hear of (an
automatic rollback or pause; later budget blocks and approval timeouts), shown in the UI,
written to the audit log and POSTed to each matching alert channel, signed like runtime pushes.

An alert belongs to one tenant; a channel is a tenant's webhook receiver (a chat bridge, a
pager). A delivery is one alert on its way to one channel, with its attempts so far."""

from __future__ import annotations

import hashlib
from typing import Any

from django.conf import settings
from django.db import models

# Raw channel secrets start with this (Svix/Stripe convention), so a leaked one is recognised.
CHANNEL_SECRET_PREFIX = "whsec_"  # noqa: S105 - a prefix, not a secret


def hash_channel_secret(raw: str) -> str:
    """The signing key of a channel: hex sha256 of the raw secret, as a runtime's key is of
    its token, so a receiver computes it with ``dataplane.webhook.push_key(secret)``."""
    return hashlib.sha256(raw.encode()).hexdigest()


class Severity(models.TextChoices):
    CRITICAL = "critical"
    WARNING = "warning"
    INFO = "info"


class Alert(models.Model):
    """One thing that happened, raised by a service (``alert_raise``). ``kind`` is
    ``<entity>.<event>`` (``rollout.rolled_back``); ``link`` a local path to the subject."""

    tenant = models.ForeignKey("tenancy.Tenant", on_delete=models.CASCADE, related_name="+")
    kind = models.CharField(max_length=64)
    severity = models.CharField(max_length=16, choices=Severity.choices)
    title = models.CharField(max_length=200)
    detail = models.TextField(blank=True, max_length=5000)
    link = models.CharField(max_length=500, blank=True)
    subject_type = models.CharField(max_length=100, blank=True)
    subject_id = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    acknowledged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # who acknowledged, kept when the user is deleted (like the audit log's actor_label)
    acknowledged_label = models.CharField(max_length=150, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        indexes = [
            models.Index(fields=["tenant", "-created_at"], name="alerts_alert_tenant_recent"),
            models.Index(
                fields=["tenant"],
                name="alerts_alert_unacknowledged",
                condition=models.Q(acknowledged_at__isnull=True),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.severity}: {self.title}"

    @property
    def acknowledged(self) -> bool:
        return self.acknowledged_at is not None

    def snapshot(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "severity": self.severity,
            "title": self.title,
            "detail": self.detail,
            "link": self.link,
            "subject_type": self.subject_type,
            "subject_id": self.subject_id,
            "acknowledged_at": self.acknowledged_at.isoformat() if self.acknowledged_at else None,
            "acknowledged_by": self.acknowledged_label,
        }


class AlertChannel(models.Model):
    """A tenant's webhook receiver for alerts. ``kinds`` empty: every kind; else only those
    listed. Signed with ``secret_hash`` (the raw secret is shown once and never stored)."""

    tenant = models.ForeignKey("tenancy.Tenant", on_delete=models.CASCADE, related_name="+")
    name = models.CharField(max_length=100)
    url = models.URLField(max_length=500)
    secret_hash = models.CharField(max_length=64)
    secret_prefix = models.CharField(max_length=16)  # "whsec_Ab12Cd": tells secrets apart
    enabled = models.BooleanField(default=True)
    kinds = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    version = models.PositiveIntegerField(default=1)

    class Meta:
        ordering = ["name", "pk"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "name"], name="alerts_channel_unique_name")
        ]

    def __str__(self) -> str:
        return self.name

    def matches(self, kind: str) -> bool:
        """Whether this channel wants alerts of ``kind`` (an empty filter wants all)."""
        return not self.kinds or kind in self.kinds

    def snapshot(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "url": self.url,
            "enabled": self.enabled,
            "kinds": list(self.kinds),
            "secret_prefix": self.secret_prefix,
            "version": self.version,
        }


class DeliveryStatus(models.TextChoices):
    PENDING = "pending"  # enqueued, or waiting for its next retry
    DELIVERED = "delivered"  # the receiver answered 2xx
    FAILED = "failed"  # every attempt failed (or the last one so far, while retrying)
    REFUSED = "refused"  # the URL is not allowed (SSRF guard): never retried
    SKIPPED = "skipped"  # the channel was disabled before the attempt


class AlertDelivery(models.Model):
    """One alert on its way to one channel: one row, updated by each attempt."""

    tenant_scope = "alert__tenant"

    alert = models.ForeignKey(Alert, on_delete=models.CASCADE, related_name="deliveries")
    channel = models.ForeignKey(AlertChannel, on_delete=models.CASCADE, related_name="deliveries")
    attempts = models.PositiveIntegerField(default=0)
    status = models.CharField(
        max_length=16, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING
    )
    response_code = models.PositiveIntegerField(null=True, blank=True)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        constraints = [
            models.UniqueConstraint(fields=["alert", "channel"], name="alerts_delivery_once")
        ]

    def __str__(self) -> str:
        return f"alert {self.alert_id} to channel {self.channel_id}: {self.status}"
