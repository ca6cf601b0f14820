"""Optimistic concurrency for changes that act on "the current X".

A form or API call that deploys, rolls back, toggles or edits a flag, or releases a kill
switch carries the version of the thing its user saw (``expected_version``, or ``If-Match``
on the API). The service locks the row, compares, and refuses with :class:`StaleVersion`
when someone else changed it in between, naming who and when, like Kubernetes'
``resourceVersion`` (see docs/decisions/0007-optimistic-concurrency-and-release-history.md).

It lives beside the audit services because every app's services already import them and
the audit log is where "who acted" is recorded; it imports no feature app."""

from __future__ import annotations

from datetime import datetime
from typing import Any, TypeVar

from django.core.exceptions import ObjectDoesNotExist
from django.db.models import Model, QuerySet

from apps.core.concurrency import DeletedMeanwhile, StaleVersion, who_and_when
from apps.core.locks import lock_row

from .models import AuditEvent

M = TypeVar("M", bound=Model)


def version_check(
    *,
    what: str,
    expected: int | None,
    current: int,
    changed_by: str = "",
    changed_at: datetime | None = None,
) -> None:
    """Refuse a change based on ``expected`` when ``current`` moved on.

    ``expected`` None means the caller did not say what it saw (the CLI, system actors, and
    API clients that opt out, see docs): no check. ``what`` names the thing for the message,
    e.g. "support-bot in production". Raises :class:`StaleVersion`. Call it while holding
    the row lock that serialises changes of the thing, so the comparison stays true until
    commit."""
    if expected is None or expected == current:
        return
    raise StaleVersion(
        f"{what} was changed {who_and_when(changed_by, changed_at)} after you loaded it "
        f"(you saw version {expected}, it is now version {current}). Nothing was changed: "
        "check the new state and try again if it is still needed.",
        current_version=current,
        changed_by=changed_by,
        changed_at=changed_at,
    )


def last_change(*, target_type: str, target_id: object) -> tuple[str, datetime | None]:
    """Who made the newest audited change of a target, and when: ``(actor_label,
    occurred_at)``, or ``("", None)`` when nothing is recorded."""
    event = (
        AuditEvent.objects.filter(target_type=target_type, target_id=str(target_id))
        .order_by("-id")
        .only("actor_label", "occurred_at")
        .first()
    )
    if event is None:
        return "", None
    return event.actor_label, event.occurred_at


def lock_current(queryset: QuerySet[M], pk: Any, *, what: str, target_type: str) -> M:
    """``lock_row(queryset, pk)`` (apps/core/locks.py), the locked re-read every change of a
    deletable thing starts with, refusing with :class:`DeletedMeanwhile` (naming who deleted
    it, from the audit log's newest event for ``target_type``/``pk``) when it is gone.
    ``what`` names it for the message, e.g. "Flag checkout in production"."""
    try:
        return lock_row(queryset, pk)
    except ObjectDoesNotExist:
        changed_by, changed_at = last_change(target_type=target_type, target_id=pk)
        raise DeletedMeanwhile(
            f"{what} was deleted {who_and_when(changed_by, changed_at)} after you loaded it. "
            "Nothing was changed.",
            changed_by=changed_by,
            changed_at=changed_at,
        ) from None
