"""Thin Celery wrappers over the runtime services.

Delivery tasks are acknowledged late and rejected (so re-queued) when the worker dies: with
the broker's visibility timeout (``CELERY_BROKER_TRANSPORT_OPTIONS``) sized above the longest
hold of one (``RUNTIME_WEBHOOK_RETRY_CAP_S`` plus ``WEBHOOK_TIME_LIMIT_S``), a push cut short by
a killed worker is delivered again within a minute, and one merely waiting for its retry is not
delivered twice."""

from __future__ import annotations

from celery import shared_task

from apps.core.outbound import backoff_seconds

from .services import (
    REFUSED_PREFIX,
    approval_push_deliver,
    runtime_side_effects_resend,
    webhook_deliver,
    webhook_targets,
)

MAX_ATTEMPTS = 6
# Resolve, connect and read of one push, with room to log it; the hard limit ends a stuck one.
WEBHOOK_SOFT_TIME_LIMIT_S = 12
WEBHOOK_TIME_LIMIT_S = 15


@shared_task(ignore_result=True, acks_late=True, reject_on_worker_lost=True)
def push_revision(environment_id: int, revision: int) -> None:
    for instance_pk in webhook_targets(environment_id=environment_id):
        deliver_webhook.delay(instance_pk, revision)


@shared_task(
    bind=True,
    ignore_result=True,
    max_retries=MAX_ATTEMPTS - 1,
    acks_late=True,
    reject_on_worker_lost=True,
    soft_time_limit=WEBHOOK_SOFT_TIME_LIMIT_S,
    time_limit=WEBHOOK_TIME_LIMIT_S,
)
def deliver_webhook(self, instance_pk: int, revision: int) -> None:  # type: ignore[no-untyped-def]
    delivery = webhook_deliver(
        instance_pk=instance_pk, revision=revision, attempt=self.request.retries + 1
    )
    retryable = not delivery.delivered and not delivery.error.startswith(REFUSED_PREFIX)
    if retryable and self.request.retries < self.max_retries:
        raise self.retry(countdown=backoff_seconds(self.request.retries))


@shared_task(
    bind=True,
    ignore_result=True,
    max_retries=MAX_ATTEMPTS - 1,
    acks_late=True,
    reject_on_worker_lost=True,
    soft_time_limit=WEBHOOK_SOFT_TIME_LIMIT_S,
    time_limit=WEBHOOK_TIME_LIMIT_S,
)
def push_approval(self, instance_pk: int, approval: dict) -> None:  # type: ignore[no-untyped-def]
    """Deliver an approval decision to a runtime's push URL, retried with backoff."""
    error = approval_push_deliver(
        instance_pk=instance_pk, approval=approval, attempt=self.request.retries + 1
    )
    if error and not error.startswith(REFUSED_PREFIX) and self.request.retries < self.max_retries:
        raise self.retry(countdown=backoff_seconds(self.request.retries))


@shared_task(ignore_result=True)
def resend_side_effects() -> None:
    """Beat: re-send what an outage may have swallowed (revision publishes, webhook pushes)."""
    runtime_side_effects_resend()
