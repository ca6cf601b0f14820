"""Numbers as the strings SDKs are served, without losing a digit (``number_text``), and
the number syntax constraint values and payloads are checked against (``NUMBER``)."""

from __future__ import annotations

import math
import re
from decimal import Decimal

# ASCII digits only (\d takes fullwidth and Arabic-Indic digits, which no SDK parses)
NUMBER = re.compile(r"^-?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?$", re.ASCII)


def number_text(value: int | float | Decimal) -> str:
    """A JSON number as the string SDKs are served, losing no digit: integers of any size
    exactly; a float as its shortest round-trip form (``1234567.5``, never ``1.23457e+06``),
    integral ones below 1e21 without a fraction (``10.0`` -> ``10``, as JavaScript and so
    Unleash write it); a ``Decimal`` (what the editor and import parse JSON numbers into),
    or a float that remembers its JSON literal (what the API parses them into), with every
    digit it was written with. Raises ``ValueError`` for NaN and infinities,
    which have no JSON form."""
    if isinstance(value, bool):
        raise TypeError("a boolean is not a number")
    written = getattr(value, "json_text", None)
    if isinstance(value, float) and isinstance(written, str):
        # the API's JSON parser kept the literal (apps.core.api_http.JsonNumber)
        return number_text(Decimal(written))
    if isinstance(value, int):
        return str(value)
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError("not a finite number")
        if value == value.to_integral_value() and abs(value.adjusted()) <= 40:
            return str(int(value))  # 1E+2 and 100.0 are both "100", exactly
        if -20 <= value.adjusted() <= 20:
            return format(value, "f")  # plain digits, as written
        return str(value)  # an exponent too large to spell out: 1.5E-400
    if not math.isfinite(value):
        raise ValueError("not a finite number")
    if value.is_integer() and abs(value) < 1e21:
        return str(int(value))
    return repr(value)  # Python's float repr is the shortest string that round-trips
