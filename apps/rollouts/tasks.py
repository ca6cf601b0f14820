"""Thin Celery wrappers over the rollout services."""

from __future__ import annotations

from typing import Any

from celery import shared_task

from .services.analysing import rollouts_analyse_due


@shared_task(ignore_result=True)
def analyse_rollouts() -> dict[str, Any]:
    """Run the analysis tick of every shadowing or canary rollout
    (``rollouts_analyse_due``): each in its own transaction, a failing one logged and
    skipped. Idempotent per 30-second slot, so a duplicate run (two beats) acts once."""
    report = rollouts_analyse_due()
    return {
        "analysed": {str(k): v for k, v in report.analysed.items()},
        "skipped": report.skipped,
        "failed": {str(k): v for k, v in report.failed.items()},
    }
