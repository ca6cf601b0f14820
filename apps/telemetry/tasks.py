"""Thin Celery wrappers over the telemetry services."""

from __future__ import annotations

from typing import Any

from celery import shared_task

from .services import telemetry_retention_enforce


@shared_task(ignore_result=True)
def telemetry_retention() -> dict[str, Any]:
    """Drop expired raw-record partitions (or rows on SQLite), delete expired minute rollups,
    idempotency keys and bucket receipts, and create the next days' partitions. Idempotent:
    a second run finds nothing to do."""
    report = telemetry_retention_enforce()
    return {
        "partitions_dropped": report.partitions_dropped,
        "partitions_created": report.partitions_created,
        "minute_rollups_deleted": report.minute_rollups_deleted,
    }
