from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db.models import Q, QuerySet

from apps.core.authz import VIEW, AnyUser, restrict

from .checkpoints import FORMAT
from .models import AuditCheckpoint, AuditEvent


def audit_event_list(
    *,
    user: AnyUser,
    action: str = VIEW,
    actor: str = "",
    action_prefix: str = "",
    tenant_id: int | None = None,
    target: str = "",
    since: datetime | None = None,
    until: datetime | None = None,
) -> QuerySet[AuditEvent]:
    """Events the user may ``action`` (``restrict``): Admins every event; others the events
    of their tenants and, for context, nothing tenant-less. ``action_prefix`` filters by the
    event's action (``agent.`` for every agent event)."""
    qs = restrict(AuditEvent.objects.select_related("tenant"), user, action)
    filters: dict[str, Any] = {}
    if actor:
        filters["actor_label__icontains"] = actor
    if action_prefix:
        filters["action__startswith"] = action_prefix
    if tenant_id:
        filters["tenant_id"] = tenant_id
    if since:
        filters["occurred_at__gte"] = since
    if until:
        filters["occurred_at__lte"] = until
    qs = qs.filter(**filters)
    if target:
        qs = qs.filter(
            Q(target_label__icontains=target) | Q(target_id=target) | Q(target_type=target)
        )
    return qs.order_by("-id")


def audit_action_choices() -> list[str]:
    return list(AuditEvent.objects.order_by().values_list("action", flat=True).distinct())


def checkpoint_record(checkpoint: AuditCheckpoint) -> dict[str, Any]:
    """The exported form of a checkpoint (``apps.audit.checkpoints`` describes the fields)."""
    return {
        "format": FORMAT,
        "created_at": checkpoint.created_at.isoformat(),
        "event_id": checkpoint.event_id,
        "event_count": checkpoint.event_count,
        "head_hash": checkpoint.head_hash,
        "kid": checkpoint.kid,
        "signature": checkpoint.signature,
    }


def audit_checkpoint_list(*, after_event: int = 0) -> QuerySet[AuditCheckpoint]:
    """Checkpoints whose head is after ``after_event``, oldest first (for incremental pulls)."""
    return AuditCheckpoint.objects.filter(event_id__gt=after_event).order_by("event_id")


def audit_checkpoint_latest() -> AuditCheckpoint | None:
    """The checkpoint of the newest signed head, if any."""
    return AuditCheckpoint.objects.order_by("-event_id").first()
