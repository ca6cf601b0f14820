"""Template filters of the rollout pages."""

from __future__ import annotations

from typing import Any

from django import template

from ..models import Rollout

register = template.Library()


@register.filter
def state_label(state: str) -> str:
    """A rollout state in the operator's words ("rolled_back" → "rolled back")."""
    return str(dict(Rollout.State.choices).get(state, state))


def _number(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "—" if value is None else str(value)
    return f"{value:.4g}"


@register.filter
def interval(value: Any) -> str:
    """An analysis interval as "[low, high]", whether the decision log stored a pair or an
    object with low/high (lower/upper); "—" without one."""
    if isinstance(value, (list, tuple)) and len(value) == 2:
        low, high = value
    elif isinstance(value, dict):
        low = value.get("low", value.get("lower"))
        high = value.get("high", value.get("upper"))
    else:
        return "—" if value in (None, "", []) else str(value)
    return f"[{_number(low)}, {_number(high)}]"


@register.filter
def number(value: Any) -> str:
    """A statistic or a metric value in four significant digits; "—" for none."""
    return _number(value)
