from __future__ import annotations

from django.core.exceptions import ValidationError

from apps.core.reasons import require_reason
from apps.tenancy.models import Environment
from apps.tenancy.services import environment_lock

__all__ = ["lock_environment", "reason_for", "require_reason"]


def lock_environment(environment: Environment) -> Environment:
    """Serialises flag changes per environment (dependency and segment checks read the
    other flags) and refuses archived ones."""
    locked = environment_lock(environment_id=environment.pk)
    if locked.is_archived:
        raise ValidationError(
            {"environment": ["This environment is archived: its flags are frozen."]}
        )
    return locked


def reason_for(environment: Environment, reason: str) -> str:
    """Production changes need a reason; elsewhere it is welcome but optional."""
    if environment.is_production:
        return require_reason(reason)
    return (reason or "").strip()
