"""Reading JSON-ish input into the stored shape: strings (numbers become their text),
booleans, lists, objects, ``null`` as "not set", and unknown keys (refused in strict mode,
warned about and dropped on import; an export's bookkeeping dropped quietly)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

from .numbers import number_text
from .report import Problems, join


def as_string(value: Any, path: str, problems: Problems, *, what: str = "a string") -> str | None:
    """Strings stay; numbers become strings without losing a digit (Unleash serves every
    parameter as a string)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool) or value is None:
        problems.error(path, f"must be {what}.")
        return None
    if isinstance(value, int | float | Decimal):
        try:
            return number_text(value)
        except ValueError:
            problems.error(path, "must be a finite number (NaN and infinity have no JSON form).")
            return None
    problems.error(path, f"must be {what}.")
    return None


def given(obj: dict[str, Any], key: str, default: Any) -> Any:
    """``obj[key]``, or ``default`` when it is absent or ``null``: an exporter that writes
    ``"stale": null`` or ``"stickiness": null`` means "not set", and refusing the document
    for it would lose everything else in it (issue 8, kind 2: null = none)."""
    value = obj.get(key)
    return default if value is None else value


def as_bool(value: Any, path: str, problems: Problems) -> bool:
    """A JSON boolean; anything else is an error at ``path`` (and ``False``)."""
    if isinstance(value, bool):
        return value
    problems.error(path, "must be true or false.")
    return False


def as_list(value: Any, path: str, problems: Problems) -> list[Any]:
    """A JSON list; ``None`` is the empty list; anything else is an error at ``path``."""
    if value is None:
        return []
    if isinstance(value, list):
        return value
    problems.error(path, "must be a list.")
    return []


def as_object(value: Any, path: str, problems: Problems) -> dict[str, Any] | None:
    """A JSON object, or ``None`` after an error at ``path``."""
    if isinstance(value, dict):
        return value
    problems.error(path, "must be an object.")
    return None


# Bookkeeping an Unleash export carries that does not change evaluation: dropped quietly.
_METADATA = frozenset(
    {
        "id",
        "sortOrder",
        "createdAt",
        "createdBy",
        "lastSeenAt",
        "favorite",
        "archived",
        "archivedAt",
        "project",
    }
)


def unknown_keys(
    raw: Mapping[str, Any], allowed: Iterable[str], path: str, problems: Problems, strict: bool
) -> None:
    """Keys of ``raw`` outside ``allowed``: errors in strict mode; on import a warning
    each (not stored), except an export's bookkeeping (``_METADATA``), dropped quietly."""
    allowed = tuple(allowed)
    for key in raw:
        if key not in allowed and not (not strict and key in _METADATA):
            if strict:
                problems.error(
                    join(path, key),
                    f"is not a field here; expected one of: {', '.join(sorted(allowed))}.",
                )
            else:
                problems.warn(join(path, key), "unknown field, not stored")
