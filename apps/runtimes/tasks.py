"""Thin Celery wrappers over the runtime services."""

from __future__ import annotations

import random

from celery import shared_task

from .services import webhook_deliver, webhook_targets

MAX_ATTEMPTS = 6


def backoff_seconds(attempt: int, *, base: float = 1.0, cap: float = 60.0) -> float:
    """Exponential backoff with full jitter: spreads a fleet's retries instead of stampeding."""
    return random.uniform(0, min(cap, base * 2**attempt))


@shared_task(ignore_result=True)
def push_revision(environment_id: int, revision: int) -> None:
    for instance_pk in webhook_targets(environment_id=environment_id):
        deliver_webhook.delay(instance_pk, revision)


@shared_task(bind=True, ignore_result=True, max_retries=MAX_ATTEMPTS - 1)
def deliver_webhook(self, instance_pk: int, revision: int) -> None:  # type: ignore[no-untyped-def]
    delivery = webhook_deliver(
        instance_pk=instance_pk, revision=revision, attempt=self.request.retries + 1
    )
    if not delivery.delivered and self.request.retries < self.max_retries:
        raise self.retry(countdown=backoff_seconds(self.request.retries))
