"""What runtimes are served, in one place: everything the fast path (``apps.core.fastpath``,
which imports no app) needs from the apps is registered here, from ``RuntimesConfig.ready``.

- the token lookup: a raw runtime token -> its ``TokenScope`` (``accounts``);
- the ``environment.revision`` topic: how to read an environment's revision when no event
  has told it yet, and the catch-up poll for a lost pub/sub message (``tenancy``);
- the routes: the signed config snapshot (``snapshot``) and the Unleash client API
  (``unleash_client``), both composed in this app from the flags and kill-switch selectors.

And, on the Django side, the once-per-commit subscriber of ``environment.revision``
(``services.revision_announced``: the revision log and the webhook push)."""

from __future__ import annotations

from collections.abc import Mapping

from django.utils import timezone

from apps.accounts.runtime_tokens import runtime_token_authenticate
from apps.core import events
from apps.core.fastpath import TokenScope, Topic, provide_token_lookup, register_topic
from apps.tenancy.models import Environment

from . import snapshot, unleash_client
from .services import approval_push_enqueue, revision_announced


def token_scope(raw: str) -> tuple[TokenScope, float | None] | None:
    """The fast path's token lookup: (scope, seconds until the token expires or None) of a
    usable raw token, None otherwise (see ``runtime_token_authenticate``)."""
    token = runtime_token_authenticate(raw)
    if token is None:
        return None
    expires_in = (token.expires_at - timezone.now()).total_seconds() if token.expires_at else None
    return TokenScope(token.pk, token.tenant_id, token.environment_id, token.agent_id), expires_in


def environment_revision(key: str) -> int:
    """The revision of environment ``key`` (its id); raises ``Environment.DoesNotExist``."""
    return Environment.objects.values_list("revision", flat=True).get(pk=int(key))


def environment_revisions() -> Mapping[str, int]:
    """Every environment's revision by id (as the topic's keys: strings)."""
    return {str(pk): revision for pk, revision in Environment.objects.values_list("id", "revision")}


def register() -> None:
    """Register the lookups, topic, routes and subscriber above (idempotent)."""
    provide_token_lookup(token_scope)
    register_topic(
        Topic(
            events.ENVIRONMENT_REVISION,
            current=environment_revision,
            poll_all=environment_revisions,
        )
    )
    snapshot.register_routes()
    unleash_client.register_routes()
    events.subscribe(events.ENVIRONMENT_REVISION, revision_announced)
    # a final approval decision to the push URL of the runtime that asked (docs/approvals.md)
    events.subscribe(events.APPROVAL_CHANGED, approval_push_enqueue)
