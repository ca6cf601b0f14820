"""Writing audit events. Every other app's services call ``audit_record`` inside their own
transaction, so the event commits or rolls back with the change it describes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import structlog
from django.contrib.auth.models import User
from django.db import connection, transaction
from django.db.models import Model
from django.utils import timezone

from apps.core.authz import Actor, SystemActor

from .checkpoints import FORMAT, CheckpointSigner, checkpoint_signer, signed_bytes
from .context import current_request_id
from .hashing import GENESIS_HASH, chain_hash, redact
from .models import AuditCheckpoint, AuditEvent
from .selectors import checkpoint_record

log = structlog.get_logger(__name__)

# Any constant works; it names the one advisory lock that serialises appends to the chain.
_CHAIN_LOCK_KEY = 0x41554449  # "AUDI"


def actor_identity(actor: Actor) -> tuple[User | None, str]:
    """The user to record on a row (None for commands, tasks and runtimes) and the label
    shown for the actor, as every service records "who" beside the change."""
    if isinstance(actor, SystemActor):
        return None, actor.label
    if actor is None or not actor.is_authenticated:
        return None, "anonymous"
    return cast(User, actor), actor.get_username()


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


def audit_checkpoint_create() -> AuditCheckpoint | None:
    """Sign the current chain head and store the checkpoint; returns it, the existing one when
    the head has not moved since, or ``None`` for an empty chain.

    Not itself an audit event: an event per checkpoint would move the head it describes, so
    every period would sign a new head even when nothing happened. The checkpoint is its own
    evidence (signed, append-only). Concurrent calls serialise on the chain lock."""
    signer = checkpoint_signer()
    with transaction.atomic():
        # Asked first: the first use of a key publishes it, which appends an audit event.
        kid = signer.active_key_id()
        _lock_chain()
        head = AuditEvent.objects.order_by("-id").values("id", "hash").first()
        if head is None:
            return None
        existing = AuditCheckpoint.objects.filter(event_id=head["id"]).first()
        if existing is not None:
            return existing
        now = timezone.now()
        record: dict[str, Any] = {
            "format": FORMAT,
            "created_at": now.isoformat(),
            "event_id": head["id"],
            "event_count": AuditEvent.objects.filter(id__lte=head["id"]).count(),
            "head_hash": head["hash"],
        }
        # The key id is part of what is signed, so a verifier knows which published key to use.
        record["kid"] = kid
        signed_kid, signature = signer.sign(signed_bytes(record))
        if signed_kid != kid:  # the key was rotated between the two calls: sign again
            record["kid"] = signed_kid
            _, signature = signer.sign(signed_bytes(record))
        checkpoint = AuditCheckpoint(
            created_at=now,
            event_id=record["event_id"],
            event_count=record["event_count"],
            head_hash=record["head_hash"],
            kid=record["kid"],
            signature=signature,
        )
        checkpoint.save()
    log.info(
        "audit.checkpoint_created",
        checkpoint_id=checkpoint.pk,
        event_id=checkpoint.event_id,
        event_count=checkpoint.event_count,
    )
    return checkpoint


@dataclass(frozen=True)
class ChainReport:
    """``ok`` or the first problem: ``first_broken_id`` names the event at (or, for a chain cut
    short, after) which the chain stops matching; ``checkpoints`` counts those that held."""

    ok: bool
    checked: int
    first_broken_id: int | None = None
    problem: str = ""
    checkpoints: int = 0


def _checked_checkpoints(
    records: list[dict[str, Any]], signer: CheckpointSigner
) -> tuple[list[dict[str, Any]], ChainReport | None]:
    """Checkpoints with valid signatures, oldest first, one per head (the database's and a
    file's copies of the same checkpoint agree, or the signature check fails on one)."""
    by_event: dict[int, dict[str, Any]] = {}
    for record in records:
        if not signer.verify(
            signed_bytes(record), kid=record["kid"], signature=record["signature"]
        ):
            return [], ChainReport(
                False,
                0,
                record["event_id"],
                f"the checkpoint of event #{record['event_id']} ({record['created_at']}) does "
                f"not carry a valid signature of a published key (kid {record['kid']})",
            )
        by_event.setdefault(record["event_id"], record)
    return [by_event[k] for k in sorted(by_event)], None


def audit_chain_verify(*, checkpoints: list[dict[str, Any]] | None = None) -> ChainReport:
    """Recompute every hash in order; name the first event whose content or link is wrong.

    Also checks the chain against signed checkpoints: those stored in the database and
    ``checkpoints`` (records read from a copy kept elsewhere, see ``apps.audit.checkpoints``).
    A checkpoint whose head is missing, differs, or lies beyond the end of the chain means the
    chain was rewritten, cut short or emptied since it was signed."""
    records = [checkpoint_record(c) for c in AuditCheckpoint.objects.order_by("event_id")]
    records += checkpoints or []
    pending: list[dict[str, Any]] = []
    if records:
        pending, problem = _checked_checkpoints(records, checkpoint_signer())
        if problem is not None:
            return problem
    total = len(pending)
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
            while pending and pending[0]["event_id"] <= event.pk:
                checkpoint = pending.pop(0)
                signed = f"the checkpoint signed at {checkpoint['created_at']}"
                if checkpoint["event_id"] < event.pk:
                    return ChainReport(
                        False,
                        checked,
                        checkpoint["event_id"],
                        f"event #{checkpoint['event_id']} is missing, but {signed} ends there",
                    )
                if checkpoint["head_hash"] != event.hash or checkpoint["event_count"] != checked:
                    return ChainReport(
                        False,
                        checked,
                        event.pk,
                        f"the chain up to this event differs from {signed} (hash "
                        f"{checkpoint['head_hash'][:12]}…, {checkpoint['event_count']} events): "
                        "events at or before it were rewritten",
                    )
    if pending:
        checkpoint = pending[-1]
        return ChainReport(
            False,
            checked,
            checkpoint["event_id"],
            f"the chain ends after {checked} events, but the checkpoint signed at "
            f"{checkpoint['created_at']} covers {checkpoint['event_count']} events up to "
            f"#{checkpoint['event_id']}: the newest events were deleted or the table emptied",
        )
    return ChainReport(True, checked, checkpoints=total)
