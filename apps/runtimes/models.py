from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db import models
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone


def stale_after() -> timedelta:
    """How long a runtime may go without a heartbeat and still count as live
    (``RUNTIME_STALE_AFTER_S``)."""
    return timedelta(seconds=settings.RUNTIME_STALE_AFTER_S)


def serving_q(agent_id: int) -> Q:
    """The runtimes that count for one agent: those that reported serving it, and those that
    reported no agent at all (an older runtime: it may serve any agent of its environment, so
    it counts for each; the pages label it "all")."""
    return (
        Q(
            Exists(
                RuntimeInstance.served_agents.through.objects.filter(
                    runtimeinstance_id=OuterRef("pk"), agent_id=agent_id
                )
            )
        )
        | reports_no_agent_q()
    )


def reports_no_agent_q() -> Q:
    """The runtimes that reported no agent (counted for every agent of their environment)."""
    return ~Q(
        Exists(
            RuntimeInstance.served_agents.through.objects.filter(runtimeinstance_id=OuterRef("pk"))
        )
    )


def live_q(now: datetime | None = None) -> Q:
    """The one definition of a *live* runtime: a heartbeat within :func:`stale_after` of
    ``now`` (default: the current time). A ``Q`` so aggregates can count with it
    (``Count("id", filter=live_q(now))``); ``~live_q(now)`` is *stale*."""
    return Q(last_seen_at__gte=(now or timezone.now()) - stale_after())


class RuntimeInstanceQuerySet(models.QuerySet["RuntimeInstance"]):
    def live(self, now: datetime | None = None) -> RuntimeInstanceQuerySet:
        """The instances that are live at ``now`` (see :func:`live_q`)."""
        return self.filter(live_q(now))


class RuntimeInstance(models.Model):
    """A registered data-plane instance, as its heartbeats describe it."""

    class Report(models.TextChoices):
        NEW = "new", "registered"
        ACK = "ack", "ACK"
        NACK = "nack", "NACK"

    tenant = models.ForeignKey("tenancy.Tenant", on_delete=models.CASCADE, related_name="+")
    environment = models.ForeignKey(
        "tenancy.Environment", on_delete=models.CASCADE, related_name="runtime_instances"
    )
    agent = models.ForeignKey(
        "tenancy.Agent",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="the agent of the runtime's token, when the token is scoped to one",
    )
    served_agents = models.ManyToManyField(
        "tenancy.Agent",
        blank=True,
        related_name="+",
        help_text="the agents the runtime reported serving (heartbeat `agents`, else the "
        "agents of its `digests`; the token's agent for a token scoped to one). None reported: "
        "it counts for every agent of its environment (docs/runtime-api.md)",
    )
    token = models.ForeignKey(
        "accounts.RuntimeToken", null=True, on_delete=models.SET_NULL, related_name="instances"
    )
    instance_id = models.CharField(max_length=128)
    name = models.CharField(max_length=200, blank=True)
    labels = models.JSONField(default=dict, blank=True)
    library_version = models.CharField(max_length=40, blank=True)
    first_seen_at = models.DateTimeField(auto_now_add=True)
    last_seen_at = models.DateTimeField(db_index=True)
    last_report = models.CharField(max_length=8, choices=Report.choices, default=Report.NEW)
    applied_revision = models.PositiveBigIntegerField(null=True, blank=True)
    applied_at = models.DateTimeField(
        null=True, blank=True, help_text="when it first reported applied_revision"
    )
    digests = models.JSONField(default=dict, blank=True)
    nack_revision = models.PositiveBigIntegerField(null=True, blank=True)
    nack_error = models.TextField(blank=True)
    push_url = models.URLField(max_length=500, blank=True)
    circuit_breakers = models.JSONField(default=dict, blank=True)

    objects = RuntimeInstanceQuerySet.as_manager()

    class Meta:
        ordering = ["environment_id", "name", "instance_id"]
        constraints = [
            models.UniqueConstraint(
                fields=["environment", "instance_id"],
                name="runtime_instance_unique_per_environment",
            ),
        ]

    def __str__(self) -> str:
        return self.name or self.instance_id


class RevisionLog(models.Model):
    """When each revision of an environment was announced and when every live runtime had it."""

    environment = models.ForeignKey(
        "tenancy.Environment", on_delete=models.CASCADE, related_name="+"
    )
    revision = models.PositiveBigIntegerField()
    announced_at = models.DateTimeField()
    fully_applied_at = models.DateTimeField(null=True, blank=True)
    pushed_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="when its webhook push reached the broker (or none was due)",
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["environment", "revision"], name="revision_log_unique"),
        ]

    def __str__(self) -> str:
        return f"revision {self.revision} of environment {self.environment_id}"


class WebhookDelivery(models.Model):
    """One attempt to push a revision to a runtime's push URL."""

    instance = models.ForeignKey(
        RuntimeInstance, on_delete=models.CASCADE, related_name="deliveries"
    )
    revision = models.PositiveBigIntegerField()
    attempt = models.PositiveIntegerField()
    status_code = models.PositiveIntegerField(null=True, blank=True)
    latency_ms = models.PositiveIntegerField(null=True, blank=True)
    error = models.TextField(blank=True)
    delivered = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"push of revision {self.revision} to {self.instance_id}, attempt {self.attempt}"
