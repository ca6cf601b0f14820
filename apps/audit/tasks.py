"""Thin Celery wrappers over the audit services (the beat schedule is controlplane/schedule.py)."""

from __future__ import annotations

import structlog
from celery import shared_task
from django.conf import settings

from .checkpoints import post_to_webhook
from .selectors import checkpoint_record
from .services import audit_checkpoint_create

log = structlog.get_logger(__name__)


@shared_task(
    ignore_result=True,
    autoretry_for=(OSError,),  # requests' errors are OSErrors: the webhook is retried
    retry_backoff=True,
    retry_jitter=True,
    max_retries=5,
)
def audit_checkpoint() -> None:
    """Sign the chain head (a no-op when it has not moved) and, when the operator configured
    ``AUDIT_CHECKPOINT_WEBHOOK_URL``, send the newest checkpoint there. One delivered
    checkpoint covers all history before it, so a missed one is made good by the next."""
    checkpoint = audit_checkpoint_create()
    if checkpoint is None or not settings.AUDIT_CHECKPOINT_WEBHOOK_URL:
        return
    post_to_webhook(
        settings.AUDIT_CHECKPOINT_WEBHOOK_URL,
        [checkpoint_record(checkpoint)],
        timeout_s=settings.AUDIT_CHECKPOINT_WEBHOOK_TIMEOUT_S,
    )
    log.info("audit.checkpoint_exported", event_id=checkpoint.event_id)
