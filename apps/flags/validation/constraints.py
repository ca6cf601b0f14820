"""Constraints (context field, operator, values) as the SDKs evaluate them: the Unleash
operators, the check of a value against its operator, and the import-mode warning that a
broken constraint evaluates the same for every context."""

from __future__ import annotations

import ipaddress
import math
from typing import Any

from .coerce import as_bool, as_list, as_object, as_string, given, unknown_keys
from .numbers import NUMBER
from .regexes import check_regex
from .report import Context, Problems, join, value_sink, warn_from
from .values import SEMVER, check_date_time

LIST_OPERATORS = ("IN", "NOT_IN", "STR_STARTS_WITH", "STR_ENDS_WITH", "STR_CONTAINS", "IN_CIDR")
NUM_OPERATORS = ("NUM_EQ", "NUM_GT", "NUM_GTE", "NUM_LT", "NUM_LTE")
DATE_OPERATORS = ("DATE_AFTER", "DATE_BEFORE")
SEMVER_OPERATORS = ("SEMVER_EQ", "SEMVER_GT", "SEMVER_LT", "SEMVER_GTE", "SEMVER_LTE")
VALUE_OPERATORS = (*NUM_OPERATORS, *DATE_OPERATORS, *SEMVER_OPERATORS, "REGEX")
OPERATORS = (*LIST_OPERATORS, *VALUE_OPERATORS)
STRING_OPERATORS = ("IN", "NOT_IN", "STR_CONTAINS", "STR_STARTS_WITH", "STR_ENDS_WITH")
# The context field SDKs fill with the moment of evaluation: only the date operators fit it,
# and the date operators compare nothing else (the SDKs read the current time for them).
CURRENT_TIME = "currentTime"


def operators_for(context_name: str) -> tuple[str, ...]:
    """The operators that fit a context field: the date operators for ``currentTime``,
    every other operator for any other field (the editor's operator list, and what strict
    mode accepts)."""
    if context_name == CURRENT_TIME:
        return DATE_OPERATORS
    return tuple(op for op in OPERATORS if op not in DATE_OPERATORS)


def check_value(operator: str, value: str, path: str, problems: Problems) -> None:
    """The editor's check of one constraint value (``problems`` may be a scratch sink that
    import mode turns into warnings)."""
    if operator in NUM_OPERATORS:
        text = value.strip()
        if not NUMBER.match(text) or not math.isfinite(float(text)):
            problems.error(path, "must be a number, e.g. 12 or 3.5.")
    elif operator in DATE_OPERATORS:
        check_date_time(value, path, problems)
    elif operator in SEMVER_OPERATORS and not SEMVER.match(value):
        hint = " without the leading v" if value[:1] in ("v", "V") else ""
        problems.error(path, f"must be a semantic version{hint}, e.g. 1.2.3 or 2.0.0-beta.1.")
    elif operator == "REGEX":
        check_regex(value, path, problems)


def normalize_constraint(raw: Any, path: str, problems: Problems, ctx: Context) -> dict[str, Any]:
    """One constraint in the stored shape (``contextName``, ``operator``, ``values`` or
    ``value``, ``caseInsensitive``, ``inverted``); its value checks are errors in strict
    mode, warnings on import."""
    obj = as_object(raw, path, problems)
    if obj is None:
        return {}
    unknown_keys(
        obj,
        ("contextName", "operator", "values", "value", "caseInsensitive", "inverted"),
        path,
        problems,
        ctx.strict,
    )
    context_name = as_string(obj.get("contextName"), join(path, "contextName"), problems) or ""
    if isinstance(obj.get("contextName"), str) and not context_name.strip():
        problems.error(join(path, "contextName"), "Name the context field, e.g. userId or email.")
    elif len(context_name) > 100:
        problems.error(join(path, "contextName"), "must be at most 100 characters.")
    operator = as_string(obj.get("operator"), join(path, "operator"), problems) or ""
    if operator not in OPERATORS:
        message = f"Unknown operator {operator!r}; use one of: {', '.join(OPERATORS)}."
        if ctx.strict or not operator:
            problems.error(join(path, "operator"), message)
        else:
            problems.warn(join(path, "operator"), f"{message} SDKs evaluate it as false")
    if ctx.strict and operator in OPERATORS and context_name.strip():
        if context_name == CURRENT_TIME and operator not in DATE_OPERATORS:
            problems.error(
                join(path, "operator"),
                f"{operator} does not fit the context field {CURRENT_TIME}: "
                "use DATE_AFTER or DATE_BEFORE.",
            )
        elif context_name != CURRENT_TIME and operator in DATE_OPERATORS:
            problems.error(
                join(path, "operator"),
                f"{operator} compares the current time: choose the context field "
                f"{CURRENT_TIME} (not {context_name}).",
            )
    result: dict[str, Any] = {"contextName": context_name, "operator": operator}

    values: list[str] = []
    for i, item in enumerate(as_list(obj.get("values"), join(path, "values"), problems)):
        text = as_string(item, join(join(path, "values"), i), problems)
        if text is not None:
            values.append(text)
    value = None
    if obj.get("value") is not None:
        value = as_string(obj["value"], join(path, "value"), problems)

    sink = value_sink(problems, ctx)
    if operator in LIST_OPERATORS:
        if value:  # an empty "value" beside "values" is how some exports write nothing
            sink.error(
                join(path, "value"), f"is not used by {operator}, which takes a list: use values."
            )
        if not values:
            sink.error(join(path, "values"), f"are required for {operator}.")
        if operator == "IN_CIDR":
            for i, item in enumerate(values):
                try:
                    ipaddress.ip_network(item, strict=False)
                except ValueError:
                    sink.error(
                        join(join(path, "values"), i),
                        "must be an IP address or a CIDR range, e.g. 10.0.0.0/8.",
                    )
    elif operator in VALUE_OPERATORS:
        if values and (ctx.strict or value is not None):
            sink.error(
                join(path, "values"), f"are not used by {operator}, which compares one value."
            )
        if value is None or value == "":
            sink.error(join(path, "value"), f"is required for {operator}.")
        else:
            check_value(operator, value, join(path, "value"), sink)
    inverted = obj.get("inverted") is True or operator == "NOT_IN"
    warn_from(
        sink,
        problems,
        # A broken constraint is false; inverted (or NOT_IN of nothing) it is true for all.
        "SDKs evaluate this constraint the same for every context"
        if inverted
        else "SDKs evaluate this constraint as false",
    )

    if "values" in obj or operator in LIST_OPERATORS:
        result["values"] = values
    if value is not None:
        result["value"] = value
    result["caseInsensitive"] = as_bool(
        given(obj, "caseInsensitive", False), join(path, "caseInsensitive"), problems
    )
    result["inverted"] = as_bool(given(obj, "inverted", False), join(path, "inverted"), problems)
    return result


def normalize_constraints(
    raw: Any, path: str, problems: Problems, ctx: Context
) -> list[dict[str, Any]]:
    """A list of constraints (``None`` is none), each at ``<path>.<i>``."""
    return [
        normalize_constraint(item, join(path, i), problems, ctx)
        for i, item in enumerate(as_list(raw, path, problems))
    ]
