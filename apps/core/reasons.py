"""The reason a destructive or far-reaching change must carry (it lands in the audit log).

One spelling for every service: :func:`require_reason`. Forms and serializers may ask for a
reason too, but the service is where it is enforced, so the CLI and the API cannot skip it."""

from __future__ import annotations

from django.core.exceptions import ValidationError

REASON_REQUIRED = "Say why: the reason is kept in the audit log."


def require_reason(
    reason: str | None,
    *,
    message: str = REASON_REQUIRED,
    errors: dict[str, list[str]] | None = None,
) -> str:
    """``reason`` stripped of surrounding white space. When that leaves nothing: raises
    ``ValidationError({"reason": [message]})`` or, when ``errors`` is given (a service that
    reports every field error at once), adds ``message`` under ``"reason"`` there and returns
    ``""``."""
    reason = (reason or "").strip()
    if not reason:
        if errors is None:
            raise ValidationError({"reason": [message]})
        errors.setdefault("reason", []).append(message)
    return reason
