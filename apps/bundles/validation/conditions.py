"""Rule conditions: their shape, operators and values (the schema leaves conditions to this
module, whose messages point at the exact part that is wrong)."""

from __future__ import annotations

import re
from typing import Any, TypeGuard

from ..schema import ARG_PATH_PATTERN, CONTEXT_KEYS, LIST_OPS, NUMERIC_OPS, OPERATORS
from .regexes import regex_message, regex_problem
from .report import Report, child

MAX_CONDITION_DEPTH = 12

_CONDITION_KEYS = ("all", "any", "not", "arg", "context", "op", "value")
_SHAPES = (
    "A condition is {arg: amount, op: '>', value: 100}, {context: confidence, op: '<', "
    "value: 0.85}, {all: [...]}, {any: [...]} or {not: {...}}."
)


def is_number(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


def check_condition(
    condition: Any, ptr: str, report: Report, depth: int = 0
) -> list[tuple[str, str]]:
    """Reports problems of one (possibly nested) condition; returns the tool arguments it
    reads as (pointer, dotted path)."""
    if depth > MAX_CONDITION_DEPTH:
        report.error(ptr, f"Conditions nest deeper than {MAX_CONDITION_DEPTH} levels.")
        return []
    if not isinstance(condition, dict) or not condition:
        report.error(ptr, _SHAPES)
        return []
    composite = [key for key in ("all", "any", "not") if key in condition]
    if composite:
        if len(condition) > 1:
            report.error(
                ptr,
                f"{composite[0]!r} stands alone in its condition: move the other keys "
                "into the conditions it combines.",
            )
        key = composite[0]
        if key == "not":
            return check_condition(condition["not"], child(ptr, "not"), report, depth + 1)
        items = condition[key]
        if not isinstance(items, list) or not items:
            report.error(child(ptr, key), "Must be a non-empty list of conditions.")
            return []
        found: list[tuple[str, str]] = []
        for index, item in enumerate(items):
            found.extend(check_condition(item, child(ptr, key, index), report, depth + 1))
        return found
    for key in condition:
        if key not in _CONDITION_KEYS:
            report.error(
                child(ptr, key),
                f"Unknown key {key!r}. Allowed here: {', '.join(sorted(_CONDITION_KEYS))}.",
            )
    return _check_comparison(condition, ptr, report)


def _check_comparison(condition: dict[str, Any], ptr: str, report: Report) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    arg, context = condition.get("arg"), condition.get("context")
    if ("arg" in condition) == ("context" in condition):
        report.error(
            ptr,
            "Name exactly one subject: arg (a tool argument) or context "
            f"({', '.join(CONTEXT_KEYS)}).",
        )
    if "arg" in condition:
        if isinstance(arg, str) and re.fullmatch(ARG_PATH_PATTERN, arg):
            found.append((child(ptr, "arg"), arg))
        else:
            report.error(
                child(ptr, "arg"),
                "An argument is a parameter name, or a dotted path into "
                f"an object argument (customer.tier); got {arg!r}.",
            )
    if "context" in condition and context not in CONTEXT_KEYS:
        report.error(
            child(ptr, "context"), f"Must be one of {', '.join(CONTEXT_KEYS)}; got {context!r}."
        )
    op = condition.get("op")
    if op not in OPERATORS:
        report.error(
            child(ptr, "op"),
            "Required: the comparison."
            if "op" not in condition
            else f"Must be one of {', '.join(OPERATORS)}; got {op!r}.",
        )
        return found
    value_ptr = child(ptr, "value")
    value = condition.get("value")
    if op == "exists":
        if "value" in condition:
            report.error(value_ptr, "'exists' takes no value.")
        return found
    if "value" not in condition:
        report.error(value_ptr, f"Required: what '{op}' compares with.")
        return found
    if op in NUMERIC_OPS and not is_number(value):
        report.error(value_ptr, f"Must be a number for '{op}'; got {value!r}.")
    elif op in LIST_OPS and not (
        isinstance(value, list) and value and all(_is_scalar(v) for v in value)
    ):
        report.error(value_ptr, f"Must be a non-empty list of plain values for '{op}'.")
    elif op == "matches":
        if not isinstance(value, str):
            report.error(value_ptr, "Must be a regular expression (text) for 'matches'.")
        else:
            problem = regex_problem(value)
            if problem is not None:
                report.error(value_ptr, regex_message(problem))
    elif op in ("==", "!=") and not _is_scalar(value):
        report.error(
            value_ptr, f"Must be a plain value (text, number, true/false or null) for '{op}'."
        )
    if context == "confidence":
        numbers = value if isinstance(value, list) else [value]
        if any(is_number(v) and not 0 <= v <= 1 for v in numbers):
            report.error(value_ptr, "The model's stated confidence is between 0 and 1.")
    return found
