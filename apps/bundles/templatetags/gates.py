"""Template filters that show evaluation results and gate minimums the way the gate states
them: as percentages from ``apps.bundles.gates.percent`` (``95.0%``), never as a share
(``0.95``) on one page and a percentage on the next."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from django import template

from ..gates import percent

register = template.Library()


@register.filter
def share_percent(value: Any) -> Any:
    """A share (0-1: a minimum pass rate, a score on that scale) as a percentage; None as
    "—"; a number outside 0-1 (a score on another scale) as it is."""
    if value is None or value == "":
        return "—"
    try:
        share = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return value
    if not share.is_finite() or not Decimal(0) <= share <= Decimal(1):
        return value
    return percent(share)


@register.filter
def pass_rate(evaluation: Any) -> str:
    """An evaluation's pass rate (passed / (passed + failed)) as the gate computes it."""
    total = evaluation.passed + evaluation.failed
    if not total:
        return "—"
    return percent(Decimal(evaluation.passed) / Decimal(total))
