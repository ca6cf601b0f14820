"""What the budget services share: the system actor, number parsing, and announcing a budget to
the runtimes that list it (a revision bump of each of its environments)."""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from apps.core.authz import SystemActor
from apps.tenancy.models import Environment
from apps.tenancy.services import environment_revision_bump

from ..models import Budget

SYSTEM = SystemActor("system:budgets")
MAX_COST = Decimal("1000000000")  # 18 digits, 8 decimal places
MAX_COUNT = 10**15


def _number(value: Any, *, decimal: bool) -> Decimal | int | None:
    """A limit or an amount from a form, JSON or the CLI: None when blank; raises ValueError."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise ValueError("not a number")
    if decimal:
        number = Decimal(str(value).strip())
        if not number.is_finite():
            raise ValueError("not a finite number")
        if number != number.quantize(Decimal("0.00000001")):
            raise ValueError("at most 8 decimal places")
        return number
    if isinstance(value, float) and not value.is_integer():
        raise ValueError("not a whole number")
    number = Decimal(str(value).strip())
    if not number.is_finite() or number != number.to_integral_value():
        raise ValueError("not a whole number")
    return int(number)


def _environment_ids(budget: Budget) -> list[int]:
    if budget.environment_id is not None:
        return [budget.environment_id]
    return sorted(
        Environment.objects.filter(
            tenant_id=budget.tenant_id, archived_at__isnull=True
        ).values_list("pk", flat=True)
    )


def _announce(budget: Budget, environment_ids: Iterable[int] = ()) -> None:
    """Bump the revision of every environment whose snapshot lists ``budget`` (and of the
    extra ``environment_ids`` it was listed in before a change), in id order."""
    for environment_id in sorted(set(_environment_ids(budget)) | set(environment_ids)):
        environment_revision_bump(environment_id=environment_id)
