"""Whether JSON documents fit the structured editor's rows before "Edit in the form" turns
them into rows: the rows read a strategy's ``parameters`` as an object, its ``constraints``
and ``variants`` as lists of objects, a constraint's ``values`` as a list, and so on. JSON
the rows cannot show stays in the JSON view with the reason (the service says the rest when
it is saved), instead of failing or being shown as something else (a string's characters
read as a list)."""

from __future__ import annotations

from typing import Any

_OBJECT, _LIST, _TEXT = "an object { … }", "a list [ … ]", "text"


def _wrong(value: Any, kind: str) -> bool:
    """``value`` is present and not of ``kind`` (absent and null are fine: rows start empty)."""
    if value is None:
        return False
    expected = {_OBJECT: dict, _LIST: list, _TEXT: str}[kind]
    return not isinstance(value, expected)


def _variant_problems(variant: Any, where: str) -> list[str]:
    if not isinstance(variant, dict):
        return [f"{where} is not {_OBJECT}."]
    if _wrong(variant.get("payload"), _OBJECT):
        return [f"{where}'s payload is not {_OBJECT}."]
    return []


def _constraint_problems(constraint: Any, where: str) -> list[str]:
    if not isinstance(constraint, dict):
        return [f"{where} is not {_OBJECT}."]
    problems = []
    if _wrong(constraint.get("values"), _LIST):
        problems.append(f"{where}'s values are not {_LIST}.")
    if _wrong(constraint.get("operator"), _TEXT):
        problems.append(f"{where}'s operator is not {_TEXT}.")
    return problems


def strategy_shape_problems(strategies: Any) -> list[str]:
    """Why ``strategies`` (parsed JSON) cannot be shown as the editor's rows, in words
    ("Strategy 2's constraints are not a list [ … ]."); empty when they can."""
    if not isinstance(strategies, list):
        return [f"The strategies are not {_LIST}."]
    problems: list[str] = []
    for i, strategy in enumerate(strategies, start=1):
        where = f"Strategy {i}"
        if not isinstance(strategy, dict):
            problems.append(f"{where} is not {_OBJECT}.")
            continue
        if _wrong(strategy.get("parameters"), _OBJECT):
            problems.append(f"{where}'s parameters are not {_OBJECT}.")
        if _wrong(strategy.get("segments"), _LIST):
            problems.append(f"{where}'s segments are not {_LIST}.")
        for key, check, label in (
            ("constraints", _constraint_problems, "constraint"),
            ("variants", _variant_problems, "variant"),
        ):
            rows = strategy.get(key)
            if _wrong(rows, _LIST):
                problems.append(f"{where}'s {key} are not {_LIST}.")
                continue
            for j, row in enumerate(rows or [], start=1):
                problems.extend(check(row, f"{where}'s {label} {j}"))
    return problems


def variant_shape_problems(variants: Any) -> list[str]:
    """Why the flag's ``variants`` (parsed JSON) cannot be shown as the editor's rows, in
    words; empty when they can."""
    if not isinstance(variants, list):
        return [f"The variants are not {_LIST}."]
    problems: list[str] = []
    for i, variant in enumerate(variants, start=1):
        problems.extend(_variant_problems(variant, f"Variant {i}"))
    return problems
