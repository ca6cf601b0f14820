"""Thin Celery wrappers over the alert services. Like runtime pushes (apps/runtimes/tasks.py):
acknowledged late, retried with exponential backoff and full jitter, time-limited."""

from __future__ import annotations

from celery import shared_task

from apps.core.outbound import backoff_seconds

from .models import DeliveryStatus
from .services import alert_deliveries_resend, alert_delivery_attempt

MAX_ATTEMPTS = 6
DELIVERY_SOFT_TIME_LIMIT_S = 12
DELIVERY_TIME_LIMIT_S = 15


@shared_task(
    bind=True,
    ignore_result=True,
    max_retries=MAX_ATTEMPTS - 1,
    acks_late=True,
    reject_on_worker_lost=True,
    soft_time_limit=DELIVERY_SOFT_TIME_LIMIT_S,
    time_limit=DELIVERY_TIME_LIMIT_S,
)
def deliver_alert(self, delivery_id: int) -> None:  # type: ignore[no-untyped-def]
    """POST one alert to one channel; retry a failed attempt up to ``MAX_ATTEMPTS`` in all."""
    delivery = alert_delivery_attempt(delivery_id=delivery_id)
    retryable = delivery is not None and delivery.status == DeliveryStatus.FAILED
    if retryable and self.request.retries < self.max_retries:
        raise self.retry(countdown=backoff_seconds(self.request.retries))


@shared_task(ignore_result=True)
def resend_alert_deliveries() -> None:
    """Beat: enqueue again the deliveries a broker outage swallowed."""
    alert_deliveries_resend()
