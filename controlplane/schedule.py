"""Every periodic task of the beat, in one place. Each expires before its next run is due, so
a backlog after a worker outage runs once, not once per missed tick."""

from __future__ import annotations

from typing import Any

from django.conf import settings


def beat_schedule() -> dict[str, dict[str, Any]]:
    """The Celery beat schedule: name → task, interval in seconds, options."""
    resend_every = settings.RUNTIME_RESEND_EVERY_S
    checkpoint_every = float(settings.AUDIT_CHECKPOINT_INTERVAL_S)
    retention_every = float(settings.TELEMETRY_RETENTION_EVERY_S)
    return {
        # Signs the audit chain head so a rewrite of the chain is detectable (docs/operations.md).
        "audit.checkpoint": {
            "task": "apps.audit.tasks.audit_checkpoint",
            "schedule": checkpoint_every,
            "options": {"expires": checkpoint_every},
        },
        "runtimes.resend-side-effects": {
            "task": "apps.runtimes.tasks.resend_side_effects",
            "schedule": resend_every,
            "options": {"expires": resend_every},
        },
        # Drops expired raw-record day partitions, deletes expired minute rollups and creates
        # the next days' partitions (apps/telemetry, docs/decisions/0021).
        "telemetry.retention": {
            "task": "apps.telemetry.tasks.telemetry_retention",
            "schedule": retention_every,
            "options": {"expires": retention_every},
        },
    }
