"""Runtime registry: heartbeats (ACK/NACK), revision announcements and webhook deliveries."""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta
from typing import Any

import structlog
import urllib3
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from apps.accounts.models import RuntimeToken
from apps.accounts.runtime_tokens import runtime_token_lock
from apps.audit.services import SystemActor, audit_record
from apps.core import events
from apps.core.outbound import PushTargetRefused, push_send, push_target_resolve
from apps.core.webhooks import signed_headers
from apps.tenancy.models import Agent, Environment

from .models import RevisionLog, RuntimeInstance, WebhookDelivery

log = structlog.get_logger(__name__)
# Starts the error of a delivery the SSRF guard refused: retrying it cannot help.
REFUSED_PREFIX = "refused:"


class RegistrationRateExceeded(Exception):
    """A runtime token registered too many new instance ids in the last minute."""

    def __init__(self, *, limit: int, retry_after_s: int) -> None:
        self.limit = limit
        self.retry_after_s = retry_after_s
        super().__init__(
            f"This token registered {limit} new runtime instances in the last minute; "
            f"retry in {retry_after_s} s or reuse an instance id."
        )


@transaction.atomic
def runtime_heartbeat_record(
    *,
    token: RuntimeToken,
    instance_id: str,
    report: str,
    revision: int | None,
    name: str = "",
    labels: dict[str, Any] | None = None,
    library_version: str = "",
    digests: dict[str, str] | None = None,
    error: str = "",
    push_url: str = "",
    circuit_breakers: dict[str, Any] | None = None,
    agents: list[str] | None = None,
) -> tuple[RuntimeInstance, int]:
    """Upsert the instance from a heartbeat; returns it and the environment's current revision.

    A token may register ``RUNTIME_NEW_INSTANCES_PER_MINUTE`` new instance ids a minute
    (RegistrationRateExceeded beyond). Registration is audited once per token per
    ``RUNTIME_REGISTRATION_AUDIT_INTERVAL_S`` (the first new instance of a burst), NACKs each
    time one starts; plain heartbeats are not (they are liveness, not change).

    The agents it serves (what per-agent convergence counts, :func:`served_agent_ids`) are
    updated when the heartbeat says: ``agents`` (slugs), else the agents of ``digests``; a
    token scoped to one agent serves that agent whatever the heartbeat says."""
    now = timezone.now()
    environment = Environment.objects.only("id", "revision", "tenant_id").get(
        pk=token.environment_id
    )
    instance = (
        RuntimeInstance.objects.select_for_update()
        .filter(environment_id=token.environment_id, instance_id=instance_id)
        .first()
    )
    created = instance is None
    audit_registration = False
    if instance is None:
        # The token row lock serialises this token's registrations, so the count is exact.
        runtime_token_lock(token_id=token.pk)
        recent = RuntimeInstance.objects.filter(
            token=token, first_seen_at__gte=now - timedelta(minutes=1)
        )
        limit = settings.RUNTIME_NEW_INSTANCES_PER_MINUTE
        if recent.count() >= limit:
            oldest = recent.order_by("first_seen_at").values_list("first_seen_at", flat=True)[0]
            wait = oldest + timedelta(minutes=1) - now
            raise RegistrationRateExceeded(
                limit=limit, retry_after_s=max(1, int(wait.total_seconds()) + 1)
            )
        audit_registration = not RuntimeInstance.objects.filter(
            token=token,
            first_seen_at__gte=now
            - timedelta(seconds=settings.RUNTIME_REGISTRATION_AUDIT_INTERVAL_S),
        ).exists()
        try:
            with transaction.atomic():
                instance = RuntimeInstance.objects.create(
                    environment_id=token.environment_id,
                    instance_id=instance_id,
                    tenant_id=token.tenant_id,
                    agent_id=token.agent_id,
                    token=token,
                    last_seen_at=now,
                )
        except IntegrityError:  # a concurrent first heartbeat of this instance created it
            instance = RuntimeInstance.objects.select_for_update().get(
                environment_id=token.environment_id, instance_id=instance_id
            )
            created = audit_registration = False
    instance.last_seen_at = now
    instance.token = token
    instance.name = name or instance.name
    instance.labels = labels if labels is not None else instance.labels
    instance.library_version = library_version or instance.library_version
    instance.push_url = push_url
    if circuit_breakers is not None:
        instance.circuit_breakers = circuit_breakers
    newly_nacked = False
    if report == RuntimeInstance.Report.ACK and revision is not None:
        if revision != instance.applied_revision:
            instance.applied_at = now
        instance.applied_revision = revision
        instance.digests = digests or {}
        instance.last_report = RuntimeInstance.Report.ACK
    elif report == RuntimeInstance.Report.NACK:
        newly_nacked = (
            instance.nack_revision != revision
            or instance.last_report != RuntimeInstance.Report.NACK
        )
        instance.nack_revision = revision
        instance.nack_error = error[:4000]
        instance.last_report = RuntimeInstance.Report.NACK
    instance.save()
    served = served_agent_ids(token=token, agents=agents, digests=digests)
    if served is not None and (
        created or set(instance.served_agents.values_list("pk", flat=True)) != served
    ):
        instance.served_agents.set(served)
    actor = SystemActor(f"runtime:{instance.instance_id}")
    if created and audit_registration:
        audit_record(
            actor=actor,
            action="runtime.registered",
            target=instance,
            tenant=token.tenant,
            after={
                "instance_id": instance_id,
                "environment": token.environment.slug,
                "name": instance.name,
                "token": token.name,
                # churn is summarised, not logged one event per instance: how many this token
                # has now, and how long until its next new instance is audited
                "instances_of_token": RuntimeInstance.objects.filter(token=token).count(),
                "next_audited_after_s": settings.RUNTIME_REGISTRATION_AUDIT_INTERVAL_S,
            },
        )
    if newly_nacked:
        audit_record(
            actor=actor,
            action="runtime.nacked",
            target=instance,
            tenant=token.tenant,
            after={"revision": revision, "error": instance.nack_error},
        )
        log.warning(
            "runtime.nacked", instance_id=instance_id, revision=revision, error=instance.nack_error
        )
    if (
        report == RuntimeInstance.Report.ACK
        and revision is not None
        and revision >= environment.revision
    ):
        _mark_fully_applied_if_done(environment, now)
    return instance, environment.revision


def served_agent_ids(
    *, token: RuntimeToken, agents: list[str] | None, digests: dict[str, str] | None
) -> set[int] | None:
    """The ids of the agents a heartbeat says its runtime serves, or None when it says nothing
    (keep what it said before; a runtime that never said counts for every agent).

    A token scoped to one agent: that agent. Else the slugs of ``agents`` when given and not
    empty, else the agents named by ``digests`` keys (``<agent>`` and ``<agent>:candidate``).
    Slugs that name no agent of the token's tenant are ignored (an agent archived or renamed
    while the runtime still had it must not make its heartbeats fail): a heartbeat naming
    only such slugs says nothing (None), never "no agent", which would count the runtime for
    every agent of its environment."""
    if token.agent_id is not None:
        return {token.agent_id}
    slugs = {s for s in agents or [] if s} or {str(key).split(":", 1)[0] for key in (digests or {})}
    if not slugs:
        return None
    found = set(
        Agent.objects.filter(
            tenant_id=token.tenant_id, slug__in=slugs, archived_at__isnull=True
        ).values_list("pk", flat=True)
    )
    return found or None


def _mark_fully_applied_if_done(environment: Environment, now: Any) -> None:
    live = RuntimeInstance.objects.filter(environment=environment).live(now)
    if live.exclude(applied_revision__gte=environment.revision).exists():
        return
    RevisionLog.objects.filter(
        environment=environment, revision=environment.revision, fully_applied_at__isnull=True
    ).update(fully_applied_at=now)


def revision_announced(event: events.Event) -> None:
    """Subscriber of ``environment.revision`` (runs once, after commit, in the process that
    committed; see apps.core.events): log the revision and hand its push to the broker.

    A broker outage must not undo the change's answer: the enqueue is guarded and logged, and
    ``RevisionLog.pushed_at`` stays empty so ``runtime_side_effects_resend`` (the beat) sends
    it once the broker is back."""
    environment_id, revision = int(event.payload["environment_id"]), int(event.payload["revision"])
    entry, _ = RevisionLog.objects.get_or_create(
        environment_id=environment_id, revision=revision, defaults={"announced_at": timezone.now()}
    )
    _push_enqueue(entry)


def _push_enqueue(entry: RevisionLog) -> bool:
    """Enqueue the webhook push of ``entry`` if anyone listens; True once handed over (or
    nothing to push). Marks the entry so the beat does not send it again."""
    from .tasks import push_revision  # local: tasks import this module

    has_targets = (
        RuntimeInstance.objects.filter(environment_id=entry.environment_id)
        .exclude(push_url="")
        .exists()
    )
    if has_targets:
        try:
            push_revision.delay(entry.environment_id, entry.revision)
        except Exception:  # the broker is down or hung; the beat re-sends
            log.warning(
                "runtime.push_enqueue_failed",
                environment_id=entry.environment_id,
                revision=entry.revision,
                exc_info=True,
            )
            return False
    RevisionLog.objects.filter(pk=entry.pk, pushed_at__isnull=True).update(pushed_at=timezone.now())
    return True


def approval_push_enqueue(event: events.Event) -> None:
    """Subscriber of ``approval.changed`` (once, after commit, in the committing process):
    hand a final decision to the broker for the runtime that opened the request, when it
    registered a push URL (docs/approvals.md, "Webhook"). A runtime that long-polls hears it
    anyway; the push is for runtimes that do not wait on a connection. Guarded: a broker
    outage is logged, and the runtime still learns by its next read."""
    from .tasks import push_approval  # local: tasks import this module

    payload = event.payload
    runtime_id = str(payload.get("runtime_id") or "")
    token_id = payload.get("token_id")
    if payload.get("status") == "pending" or not runtime_id or token_id is None:
        return
    # Only an instance of the token that asked: ``runtime_id`` is the runtime's say, and
    # another token's instance (another agent's, say) must not receive this decision.
    instance_pk = (
        RuntimeInstance.objects.filter(
            environment_id=int(payload["environment_id"]),
            instance_id=runtime_id,
            token_id=int(token_id),
        )
        .exclude(push_url="")
        .values_list("pk", flat=True)
        .first()
    )
    if instance_pk is None:
        return
    try:
        push_approval.delay(instance_pk, dict(payload["approval"]))
    except Exception:
        log.warning("runtime.approval_push_enqueue_failed", instance_pk=instance_pk, exc_info=True)


def approval_push_deliver(*, instance_pk: int, approval: dict[str, Any], attempt: int) -> str:
    """POST one signed approval decision to a runtime's push URL; "" when delivered, else
    the error (prefixed ``REFUSED_PREFIX`` when the target is not allowed: no retry). Body:
    ``{"type": "approval.decided", "tenant", "environment", "approval": {...}}``, signed as
    the revision pushes are (``apps.core.webhooks``)."""
    instance = RuntimeInstance.objects.select_related("token", "environment", "tenant").get(
        pk=instance_pk
    )
    body = json.dumps(
        {
            "type": "approval.decided",
            "tenant": instance.tenant.slug,
            "environment": instance.environment.slug,
            "approval": approval,
        },
        separators=(",", ":"),
    ).encode()
    key = instance.token.token_hash if instance.token else ""
    error = ""
    try:
        target = push_target_resolve(instance.push_url)
        response = push_send(target, body=body, headers=signed_headers(key=key, body=body))
        if not 200 <= response.status < 300:
            error = f"HTTP {response.status}"
    except PushTargetRefused as exc:
        error = f"{REFUSED_PREFIX} {exc}"[:2000]
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        error = f"{type(exc).__name__}: {exc}"[:2000]
    log.info(
        "runtime.approval_pushed" if not error else "runtime.approval_push_failed",
        instance_id=instance.instance_id,
        approval_id=approval.get("id"),
        attempt=attempt,
        error=error,
    )
    return error


def runtime_side_effects_resend(*, now: datetime | None = None) -> dict[str, int]:
    """Send again what an outage may have swallowed after a commit (run by the beat).

    For every environment whose current revision was announced within
    ``RUNTIME_RESEND_WINDOW_S``: re-broadcast it to every fast path (``events.rebroadcast``)
    (idempotent: a fast path ignores a revision it already has) and enqueue its webhook push
    if that never reached the broker. Tokens revoked within the window are re-published too.
    Every call is guarded: one failing does not stop the rest. Returns counts by kind."""
    now = now or timezone.now()
    since = now - timedelta(seconds=settings.RUNTIME_RESEND_WINDOW_S)
    counts = {"revisions": 0, "pushes": 0, "tokens": 0, "failed": 0}
    recent = RevisionLog.objects.filter(
        announced_at__gte=since, environment__revision=F("revision")
    ).order_by("environment_id")
    for entry in recent:
        ok = _guarded(
            events.rebroadcast,
            events.ENVIRONMENT_REVISION,
            str(entry.environment_id),
            {"environment_id": entry.environment_id, "revision": entry.revision},
        )
        counts["revisions" if ok else "failed"] += 1
        if entry.pushed_at is None:
            counts["pushes" if _push_enqueue(entry) else "failed"] += 1
    revoked = RuntimeToken.objects.filter(revoked_at__gte=since).values_list(
        "token_hash", flat=True
    )
    for token_hash in revoked:
        ok = _guarded(events.rebroadcast, events.RUNTIME_TOKEN_REVOKED, token_hash)
        counts["tokens" if ok else "failed"] += 1
    log.info("runtime.side_effects_resent", **counts)
    return counts


def _guarded(fn: Any, *args: Any) -> bool:
    try:
        fn(*args)
    except Exception:
        log.warning(
            "runtime.side_effect_failed", listener=getattr(fn, "__qualname__", fn), exc_info=True
        )
        return False
    return True


def webhook_targets(*, environment_id: int) -> list[int]:
    return list(
        RuntimeInstance.objects.filter(environment_id=environment_id)
        .live()
        .exclude(push_url="")
        .values_list("pk", flat=True)
    )


def webhook_deliver(*, instance_pk: int, revision: int, attempt: int) -> WebhookDelivery:
    """POST one signed push and log the attempt, whatever its outcome."""
    instance = RuntimeInstance.objects.select_related("token", "environment", "tenant").get(
        pk=instance_pk
    )
    body = json.dumps(
        {
            "tenant": instance.tenant.slug,
            "environment": instance.environment.slug,
            "revision": revision,
        },
        separators=(",", ":"),
    ).encode()
    key = instance.token.token_hash if instance.token else ""
    started = time.perf_counter()
    status_code, error = None, ""
    try:
        # Checked again now, against what the name resolves to now, and sent to exactly that
        # address: a target allowed at registration may have been re-pointed since.
        target = push_target_resolve(instance.push_url)
        response = push_send(target, body=body, headers=signed_headers(key=key, body=body))
        status_code = response.status
        if not 200 <= response.status < 300:
            error = f"HTTP {response.status}"
    except PushTargetRefused as exc:
        error = f"{REFUSED_PREFIX} {exc}"[:2000]
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        error = f"{type(exc).__name__}: {exc}"[:2000]
    delivery = WebhookDelivery.objects.create(
        instance=instance,
        revision=revision,
        attempt=attempt,
        status_code=status_code,
        latency_ms=int((time.perf_counter() - started) * 1000),
        error=error,
        delivered=not error,
    )
    log.info(
        "runtime.webhook_delivered" if not error else "runtime.webhook_failed",
        instance_id=instance.instance_id,
        revision=revision,
        attempt=attempt,
        error=error,
    )
    return delivery
