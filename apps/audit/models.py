from __future__ import annotations

from typing import Any, NoReturn

from django.conf import settings
from django.db import models


class AppendOnlyError(Exception):
    """Audit events are never changed or deleted: the chain is evidence."""


class AuditEventQuerySet(models.QuerySet["AuditEvent"]):
    def update(self, **kwargs: Any) -> NoReturn:
        raise AppendOnlyError("audit events are append-only: update() is refused")

    def delete(self) -> NoReturn:
        raise AppendOnlyError("audit events are append-only: delete() is refused")

    def bulk_update(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise AppendOnlyError("audit events are append-only: bulk_update() is refused")


class AuditEvent(models.Model):
    occurred_at = models.DateTimeField(db_index=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    actor_label = models.CharField(max_length=150, help_text="who acted, as shown at the time")
    action = models.CharField(
        max_length=80, db_index=True, help_text="entity.verb, e.g. agent.created"
    )
    target_type = models.CharField(max_length=80, db_index=True)
    target_id = models.CharField(max_length=64, blank=True, db_index=True)
    target_label = models.CharField(max_length=200, blank=True)
    tenant = models.ForeignKey(
        "tenancy.Tenant", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    reason = models.TextField(blank=True)
    before = models.JSONField(null=True, blank=True)
    after = models.JSONField(null=True, blank=True)
    request_id = models.CharField(max_length=64, blank=True, db_index=True)
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64, unique=True)

    objects = AuditEventQuerySet.as_manager()

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["tenant", "-occurred_at"])]

    def __str__(self) -> str:
        return f"#{self.pk} {self.action} {self.target_type}:{self.target_id} by {self.actor_label}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding:
            raise AppendOnlyError("audit events are append-only: an existing event cannot be saved")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise AppendOnlyError("audit events are append-only: delete() is refused")

    def hashed_content(self) -> dict[str, Any]:
        """Exactly the fields the chain hash covers. The row id is left out (it is only known
        after the insert); order is carried by ``prev_hash``."""
        return {
            "occurred_at": self.occurred_at.isoformat(),
            "actor_id": self.actor_id,
            "actor_label": self.actor_label,
            "action": self.action,
            "target_type": self.target_type,
            "target_id": self.target_id,
            "target_label": self.target_label,
            "tenant_id": self.tenant_id,
            "reason": self.reason,
            "before": self.before,
            "after": self.after,
            "request_id": self.request_id,
        }


class AuditCheckpointQuerySet(models.QuerySet["AuditCheckpoint"]):
    def update(self, **kwargs: Any) -> NoReturn:
        raise AppendOnlyError("audit checkpoints are append-only: update() is refused")

    def delete(self) -> NoReturn:
        raise AppendOnlyError("audit checkpoints are append-only: delete() is refused")


class AuditCheckpoint(models.Model):
    """A signed statement "the chain had ``event_count`` events and ended at ``event_id`` with
    ``head_hash``" (see ``apps.audit.checkpoints``). A copy kept outside the database lets
    ``audit verify --checkpoints`` catch a chain that was rewritten, cut short or emptied."""

    # apps.core.authz.restrict: no tenant; a checkpoint counts every tenant's events, so only
    # a role that sees every tenant (Admin) has ``audit.view_auditcheckpoint``.
    tenant_scope = None

    created_at = models.DateTimeField()
    event_id = models.BigIntegerField(unique=True, help_text="id of the chain head")
    event_count = models.BigIntegerField(help_text="events up to and including the head")
    head_hash = models.CharField(max_length=64)
    kid = models.CharField(max_length=64, help_text="id of the Ed25519 key that signed it")
    signature = models.CharField(max_length=128, help_text="base64 Ed25519 signature")

    objects = AuditCheckpointQuerySet.as_manager()

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"checkpoint #{self.pk} at event #{self.event_id}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding:
            raise AppendOnlyError("audit checkpoints are append-only")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise AppendOnlyError("audit checkpoints are append-only: delete() is refused")
