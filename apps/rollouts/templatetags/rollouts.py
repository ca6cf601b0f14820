"""Template filters of the rollout pages."""

from __future__ import annotations

from django import template

from ..models import Rollout

register = template.Library()


@register.filter
def state_label(state: str) -> str:
    """A rollout state in the operator's words ("rolled_back" → "rolled back")."""
    return str(dict(Rollout.State.choices).get(state, state))
