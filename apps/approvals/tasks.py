"""Thin Celery wrappers over the approval services."""

from __future__ import annotations

from celery import shared_task

from .services import approvals_sweep


@shared_task(ignore_result=True)
def sweep_approvals() -> dict[str, int]:
    """Expire requests past their timeout (deny) and escalate those due. Idempotent."""
    return approvals_sweep()
