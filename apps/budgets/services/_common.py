"""What the budget services share: the system actor, number parsing, and announcing a budget to
the runtimes that list it (a revision bump of each of its environments)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from apps.core.authz import SystemActor
from apps.tenancy.models import Environment
from apps.tenancy.services import environment_revisions_bump

from ..models import Budget

SYSTEM = SystemActor("system:budgets")
MAX_COST = Decimal("1000000000")  # 18 digits, 8 decimal places
MAX_COUNT = 10**15


# A number as people and JSON write it: ASCII digits, an optional sign, fraction and
# exponent. Python's Decimal and int also read "٣" (any Unicode digit), "1_000" and "NaN";
# none of them is a limit anyone meant.
_NUMBER_TEXT = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?", re.ASCII)
# The largest magnitude read (10^18, above every limit and amount): checked on the exponent
# before an integer is made, since "1e9999999" as an int is ten million digits of work.
_MAX_DIGITS = 18


def _number(value: Any, *, decimal: bool) -> Decimal | int | None:
    """A limit or an amount from a form, JSON or the CLI: ``Decimal`` (``decimal``, at most 8
    decimal places) or ``int``; None when blank (None or ""). Takes ints, JSON numbers
    (``apps.core.api_http.JsonNumber``: read from the literal, every digit kept) and
    strings of ASCII digits (sign, fraction, exponent; spaces around ignored). Negative
    zero is 0. Raises ``ValueError`` with a message for a person: not a number (booleans,
    lists, objects, Unicode digits, NaN, infinities), too big, too precise, not whole."""
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str | Decimal):
        raise ValueError("not a number")
    if isinstance(value, int):
        if abs(value) >= 10**_MAX_DIGITS:
            raise ValueError("too big")
        return Decimal(value) if decimal else value
    if isinstance(value, float):
        # a JSON number keeps its literal (a float has 17 significant digits)
        text = getattr(value, "json_text", None) or repr(value)
    else:
        text = str(value).strip()
    if not _NUMBER_TEXT.fullmatch(text):
        raise ValueError("digits 0-9 with an optional . and exponent, e.g. 5 or 5.25")
    number = Decimal(text)
    if number.is_zero():
        number = Decimal(0)  # -0, 0e999999999: plain zero
    elif number.adjusted() >= _MAX_DIGITS:
        raise ValueError("too big")
    elif number.adjusted() < -_MAX_DIGITS:
        raise ValueError("at most 8 decimal places" if decimal else "not a whole number")
    if number.as_tuple().exponent > 0:  # type: ignore[operator]
        number = number.quantize(Decimal(1))  # "1e2": 100, not 1E+2
    if decimal:
        if number != number.quantize(Decimal("0.00000001")):
            raise ValueError("at most 8 decimal places")
        return number
    if number != number.to_integral_value():
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
    environment_revisions_bump(environment_ids=[*_environment_ids(budget), *environment_ids])
