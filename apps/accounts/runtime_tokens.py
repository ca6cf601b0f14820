"""Runtime tokens: create, revoke, authenticate. Every write authorised and audited."""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from apps.audit.services import Actor, audit_record
from apps.core import events
from apps.core.authz import authorize
from apps.core.events import publish_after_commit
from apps.core.locks import lock_row
from apps.core.reasons import require_reason
from apps.core.tokens import token_from_header

from .models import RUNTIME_TOKEN_PREFIX, RuntimeToken, hash_runtime_token

if TYPE_CHECKING:  # annotations only: tenancy sits beside accounts and imports it
    from apps.tenancy.models import Agent, Environment, Tenant

# last_used_at is written at most this often per token, so a fleet polling every second
# does not turn every read into a write.
LAST_USED_RESOLUTION = timedelta(seconds=60)


@transaction.atomic
def runtime_token_create(
    *,
    actor: Actor,
    tenant: Tenant,
    environment: Environment,
    agent: Agent | None = None,
    name: str,
    expires_at: datetime | None = None,
    reason: str = "",
) -> tuple[RuntimeToken, str]:
    """Returns the token row and the raw token, which is shown once and never stored."""
    authorize(actor, "accounts.add_runtimetoken", tenant)
    errors: dict[str, list[str]] = {}
    if environment.tenant_id != tenant.pk or environment.is_archived:
        errors["environment"] = ["Choose an active environment of this tenant."]
    if agent is not None and (agent.tenant_id != tenant.pk or agent.is_archived):
        errors["agent"] = ["Choose an active agent of this tenant."]
    if not name.strip():
        errors["name"] = ["Name the runtime or fleet this token is for."]
    if expires_at is not None and expires_at <= timezone.now():
        errors["expires_at"] = ["The expiry must be in the future."]
    if errors:
        raise ValidationError(errors)
    raw = RUNTIME_TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = RuntimeToken.objects.create(
        tenant=tenant,
        environment=environment,
        agent=agent,
        name=name.strip(),
        token_hash=hash_runtime_token(raw),
        display_prefix=raw[: len(RUNTIME_TOKEN_PREFIX) + 6],
        created_by=actor if isinstance(actor, User) and actor.is_authenticated else None,
        expires_at=expires_at,
    )
    audit_record(
        actor=actor,
        action="runtime_token.created",
        target=token,
        tenant=tenant,
        reason=reason,
        after=token.snapshot(),
    )
    return token, raw


def runtime_token_lock(*, token_id: int) -> RuntimeToken:
    """Lock runtime token ``token_id`` until the transaction ends and return it re-read, its
    tenant, environment and agent joined (not locked). The one lock of a token (see
    apps/core/locks.py): it serialises the token's revocation and the count of instances it
    registers per minute (runtime heartbeats, SDK registrations)."""
    return lock_row(RuntimeToken, token_id, related=("tenant", "environment", "agent"))


@transaction.atomic
def runtime_token_revoke(*, actor: Actor, token: RuntimeToken, reason: str) -> RuntimeToken:
    # revoking takes access away: an archived tenant's leaked token must not wait for a restore
    authorize(actor, "accounts.change_runtimetoken", token.tenant, while_archived=True)
    reason = require_reason(reason)
    token = runtime_token_lock(token_id=token.pk)
    if token.revoked_at is not None:
        raise ValidationError({"token": ["This token is already revoked."]})
    before = token.snapshot()
    token.revoked_at = timezone.now()
    token.save(update_fields=["revoked_at"])
    audit_record(
        actor=actor,
        action="runtime_token.revoked",
        target=token,
        tenant=token.tenant,
        reason=reason,
        before=before,
        after=token.snapshot(),
    )
    # After commit, caches in front of Django (every fast path) drop it at once.
    publish_after_commit(events.RUNTIME_TOKEN_REVOKED, token.token_hash)
    return token


def _scope_archived(token: RuntimeToken) -> bool:
    """A token of an archived tenant, environment or agent grants nothing (restoring the
    scope makes it usable again; revoking is what ends a token for good)."""
    return (
        token.tenant.is_archived
        or token.environment.is_archived
        or (token.agent is not None and token.agent.is_archived)
    )


def runtime_token_authenticate(raw: str) -> RuntimeToken | None:
    """The token row for a raw token if it is usable now; None otherwise. Records use,
    coarsely (see LAST_USED_RESOLUTION)."""
    if not raw or not raw.startswith(RUNTIME_TOKEN_PREFIX):
        return None
    now = timezone.now()
    token = (
        RuntimeToken.objects.select_related("tenant", "environment", "agent")
        .filter(token_hash=hash_runtime_token(raw))
        .first()
    )
    if token is None or not token.is_usable(now) or _scope_archived(token):
        return None
    stale = now - LAST_USED_RESOLUTION
    # The row just read says whether an update is due: a busy token (a fleet shares one)
    # skips the write, and the round trip, on all but one request per resolution.
    if token.last_used_at is None or token.last_used_at < stale:
        RuntimeToken.objects.filter(pk=token.pk).filter(
            Q(last_used_at__isnull=True) | Q(last_used_at__lt=stale)
        ).update(last_used_at=now)
    return token


# The header parsing is the kernel's, shared with the fast path.
runtime_token_from_header = token_from_header
