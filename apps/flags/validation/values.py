"""The value checks both modes run on constraint values and strategy parameters: an
RFC 3339 date-time with its offset, a semver without ``v`` (``SEMVER``), a percentage, a
comma-separated list and IP addresses or CIDR ranges. Numbers are in ``numbers``, regexes
in ``regexes``. Each reports to the ``Problems`` it is given (a scratch sink on import)."""

from __future__ import annotations

import ipaddress
import re
from datetime import datetime

from apps.core.input_guards import is_digits

from .report import Problems

SEMVER = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$",
    re.ASCII,  # \d would take fullwidth and Arabic-Indic digits, which no SDK parses
)
# RFC 3339 date-time with its offset: what every SDK parses the same way (Unleash's client
# specification writes DATE_AFTER/DATE_BEFORE values as 2022-01-29T13:00:00.000Z). A date
# alone, a local time without offset or ISO 8601's basic form are not comparable instants.
_RFC3339 = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:[Zz]|[+-]\d{2}:\d{2})$",
    re.ASCII,
)


def check_date_time(value: str, path: str, problems: Problems) -> None:
    """An RFC 3339 date-time with a time zone offset (``2026-01-31T13:00:00Z``,
    ``…+02:00``): SDKs compare instants, and one without an offset is no instant."""
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        problems.error(
            path,
            "must be a date and time with its time zone, e.g. 2026-01-31T13:00:00Z (RFC 3339).",
        )
        return
    if parsed.tzinfo is None:
        problems.error(path, "Give a time zone (Z or +02:00): SDKs compare instants.")
    elif not _RFC3339.match(value):
        problems.error(
            path, "must be written as an RFC 3339 date-time, e.g. 2026-01-31T13:00:00Z or …+02:00."
        )


def check_percent(value: str, path: str, problems: Problems) -> None:
    """A whole percentage, 0..100, written as text."""
    if not is_digits(value.strip(), max_digits=3) or not 0 <= int(value.strip()) <= 100:
        problems.error(path, "must be a whole number from 0 to 100.")


def check_list_parameter(name: str, value: str, path: str, problems: Problems) -> None:
    """A comma-separated strategy parameter (``userIds``, ``IPs``, ``hostNames``): no empty
    entries, and for ``IPs`` each an IP address or CIDR range."""
    items = [item.strip() for item in value.split(",")]
    if not any(items):
        problems.error(path, "need at least one entry, comma-separated.")
        return
    if any(not item for item in items):
        problems.error(path, "have an empty entry: remove the extra comma.")
    if name == "IPs":
        for item in items:
            if not item:
                continue
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                problems.error(path, f"have {item!r}, which is not an IP address or a CIDR range.")
