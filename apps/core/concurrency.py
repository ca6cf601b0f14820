"""Optimistic-concurrency errors every app raises and the API answers with 409 Conflict.

The checks themselves (``version_check``, ``lock_current``) live in ``apps/audit/concurrency.py``
because naming who acted reads the audit log; the errors live here so the API error shape in
``apps/core/api.py`` can answer them without importing an app."""

from __future__ import annotations

from datetime import datetime

from django.core.exceptions import ValidationError


class StaleVersion(ValidationError):
    """The change was based on a version that is no longer current.

    A ``ValidationError`` so every form that shows service errors shows it (as a form-wide
    message); the API answers it with 409 Conflict and a JSON body carrying
    ``current_version``, ``changed_by`` and ``changed_at`` (``apps/core/api.py``).

    Attributes: ``current_version`` (int, what to send next time after re-reading),
    ``changed_by`` (label of who made the current state, or ``""`` when unknown),
    ``changed_at`` (aware datetime or None)."""

    def __init__(
        self,
        message: str,
        *,
        current_version: int,
        changed_by: str = "",
        changed_at: datetime | None = None,
    ) -> None:
        super().__init__(message, code="stale")
        self.current_version = current_version
        self.changed_by = changed_by
        self.changed_at = changed_at


def who_and_when(changed_by: str, changed_at: datetime | None) -> str:
    """ "by olivia at 2026-11-29 13:05:01 UTC" (or the parts that are known)."""
    parts = []
    if changed_by:
        parts.append(f"by {changed_by}")
    if changed_at is not None:
        parts.append(f"at {changed_at:%Y-%m-%d %H:%M:%S} UTC")
    return " ".join(parts) or "by someone else"


class DeletedMeanwhile(ValidationError):
    """The thing a change acts on was deleted after its user loaded it (two operators
    deleting, or one editing what another deletes, at the same moment).

    The API answers it with 409 like :class:`StaleVersion` (``changed_by``, ``changed_at``
    of the deletion, ``current_version`` null); a form shows it as a form-wide error.
    Without it the service's locked re-read raised ``DoesNotExist``: a 500."""

    def __init__(self, message: str, *, changed_by: str = "", changed_at: datetime | None = None):
        super().__init__(message, code="deleted")
        self.changed_by = changed_by
        self.changed_at = changed_at
