"""Writing audit events. Every other app's services call ``audit_record`` inside their own
transaction, so the event commits or rolls back with the change it describes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import structlog
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser, User
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.db.models import Model
from django.utils import timezone

from .context import current_request_id
from .hashing import GENESIS_HASH, chain_hash, redact
from .models import AuditEvent

log = structlog.get_logger(__name__)

# Any constant works; it names the one advisory lock that serialises appends to the chain.
_CHAIN_LOCK_KEY = 0x41554449  # "AUDI"


@dataclass(frozen=True)
class SystemActor:
    """A non-human actor: a management command, a Celery task, a runtime token."""

    label: str


Actor = AbstractBaseUser | AnonymousUser | SystemActor | None


REASON_REQUIRED = "Say why: the reason is kept in the audit log."


def actor_identity(actor: Actor) -> tuple[User | None, str]:
    """The user to record on a row (None for commands, tasks and runtimes) and the label
    shown for the actor, as every service records "who" beside the change."""
    if isinstance(actor, SystemActor):
        return None, actor.label
    if actor is None or not actor.is_authenticated:
        return None, "anonymous"
    return cast(User, actor), actor.get_username()


def require_reason(reason: str) -> str:
    """The reason a destructive or far-reaching change must carry, stripped; a field error
    when it is missing."""
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError({"reason": [REASON_REQUIRED]})
    return reason


def _lock_chain() -> None:
    # PostgreSQL: concurrent transactions would otherwise read the same previous hash and
    # fork the chain. SQLite takes a database-wide write lock per transaction already.
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_CHAIN_LOCK_KEY])


def audit_record(
    *,
    actor: Actor,
    action: str,
    target: Model | None = None,
    target_type: str = "",
    target_id: str = "",
    target_label: str = "",
    tenant: Model | None = None,
    reason: str = "",
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
) -> AuditEvent:
    """Append one event to the chain. Must run inside the caller's transaction."""
    if not connection.in_atomic_block:
        raise RuntimeError("audit_record must run inside the transaction of the change it records")
    if target is not None:
        target_type = target_type or target._meta.label_lower
        target_id = target_id or str(target.pk)
        target_label = target_label or str(target)
    actor_user, actor_label = actor_identity(actor)
    actor_id = actor_user.pk if actor_user is not None else None
    _lock_chain()
    last = AuditEvent.objects.order_by("-id").values_list("hash", flat=True).first()
    event = AuditEvent(
        occurred_at=timezone.now(),
        actor_id=actor_id,
        actor_label=actor_label,
        action=action,
        target_type=target_type,
        target_id=target_id,
        target_label=target_label[:200],
        tenant_id=tenant.pk if tenant is not None else None,
        reason=reason,
        before=redact(before) if before is not None else None,
        after=redact(after) if after is not None else None,
        request_id=current_request_id(),
        prev_hash=last or GENESIS_HASH,
    )
    event.hash = chain_hash(event.hashed_content(), event.prev_hash)
    event.save()
    log.info(action, audit_event_id=event.pk, target_type=target_type, target_id=target_id)
    return event


@dataclass(frozen=True)
class ChainReport:
    ok: bool
    checked: int
    first_broken_id: int | None = None
    problem: str = ""


def audit_chain_verify() -> ChainReport:
    """Recompute every hash in order; name the first event whose content or link is wrong."""
    expected_prev = GENESIS_HASH
    checked = 0
    with transaction.atomic():
        for event in AuditEvent.objects.order_by("id").iterator(chunk_size=2000):
            if event.prev_hash != expected_prev:
                return ChainReport(False, checked, event.pk, "link to the previous event is broken")
            if chain_hash(event.hashed_content(), event.prev_hash) != event.hash:
                return ChainReport(False, checked, event.pk, "content does not match its hash")
            expected_prev = event.hash
            checked += 1
    return ChainReport(True, checked)
