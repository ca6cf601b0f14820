"""Runtime registry: heartbeats (ACK/NACK), revision announcements and webhook deliveries."""

from __future__ import annotations

import json
import time
from datetime import timedelta
from typing import Any

import requests
import structlog
from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from apps.accounts.models import RuntimeToken
from apps.audit.services import SystemActor, audit_record
from apps.tenancy.models import Environment

from .models import RevisionLog, RuntimeInstance, WebhookDelivery
from .webhooks import signed_headers

log = structlog.get_logger(__name__)


def _stale_after() -> timedelta:
    return timedelta(seconds=settings.RUNTIME_STALE_AFTER_S)


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
) -> tuple[RuntimeInstance, int]:
    """Upsert the instance from a heartbeat; returns it and the environment's current revision.
    Registration and NACKs are audited; plain heartbeats are not (they are liveness, not change)."""
    now = timezone.now()
    environment = Environment.objects.only("id", "revision", "tenant_id").get(
        pk=token.environment_id
    )
    defaults = {
        "tenant_id": token.tenant_id,
        "agent_id": token.agent_id,
        "token": token,
        "last_seen_at": now,
    }
    try:
        with transaction.atomic():
            instance, created = RuntimeInstance.objects.select_for_update().get_or_create(
                environment_id=token.environment_id, instance_id=instance_id, defaults=defaults
            )
    except IntegrityError:  # two first heartbeats raced; the other one created it
        instance, created = (
            RuntimeInstance.objects.select_for_update().get(
                environment_id=token.environment_id, instance_id=instance_id
            ),
            False,
        )
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
    actor = SystemActor(f"runtime:{instance.instance_id}")
    if created:
        audit_record(
            actor=actor,
            action="runtime.registered",
            target=instance,
            tenant=token.tenant,
            after={
                "instance_id": instance_id,
                "environment": token.environment.slug,
                "name": instance.name,
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


def _mark_fully_applied_if_done(environment: Environment, now: Any) -> None:
    live = RuntimeInstance.objects.filter(
        environment=environment, last_seen_at__gte=now - _stale_after()
    )
    if live.exclude(applied_revision__gte=environment.revision).exists():
        return
    RevisionLog.objects.filter(
        environment=environment, revision=environment.revision, fully_applied_at__isnull=True
    ).update(fully_applied_at=now)


def revision_announced(environment_id: int, revision: int) -> None:
    """Revision listener (runs after commit): log the revision and push it to runtimes."""
    from .tasks import push_revision  # local: tasks import this module

    RevisionLog.objects.get_or_create(
        environment_id=environment_id, revision=revision, defaults={"announced_at": timezone.now()}
    )
    if RuntimeInstance.objects.filter(environment_id=environment_id).exclude(push_url="").exists():
        push_revision.delay(environment_id, revision)


def webhook_targets(*, environment_id: int) -> list[int]:
    live_since = timezone.now() - _stale_after()
    return list(
        RuntimeInstance.objects.filter(environment_id=environment_id, last_seen_at__gte=live_since)
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
        response = requests.post(
            instance.push_url,
            data=body,
            headers=signed_headers(key=key, body=body),
            timeout=settings.RUNTIME_WEBHOOK_TIMEOUT_S,
            allow_redirects=False,
        )
        status_code = response.status_code
        if not 200 <= response.status_code < 300:
            error = f"HTTP {response.status_code}"
    except requests.RequestException as exc:
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
