"""Thin Celery wrappers over the budget services."""

from __future__ import annotations

from celery import shared_task

from .services import budgets_roll, reservations_expire, reservations_purge


@shared_task(ignore_result=True)
def roll_budgets() -> dict[str, int]:
    """Release expired reservations, re-announce budgets whose exhausted window ended, and
    delete old finished reservations. Idempotent: a second run in a row finds nothing."""
    return {
        "expired": reservations_expire(),
        "rolled": budgets_roll(),
        "purged": reservations_purge(),
    }
