"""Is the document plain JSON data of sane shape, and does it follow the bundle schema?"""

from __future__ import annotations

import math
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError as SchemaValidationError

from apps.core.canonical import MAX_SAFE_INTEGER, normalize

from ..schema import BUNDLE_SCHEMA, MAX_DEPTH, MAX_NODES, PATTERN_HELP
from .report import Report, child, from_path, hidden_character_message


class _Stop(Exception):
    pass


def normalize_checked(data: Any, report: Report) -> Any:
    """Plain-JSON check and number normalisation in one walk. Reports every value JSON cannot
    carry, keys that are not text, broken Unicode, and nesting beyond ``MAX_DEPTH`` or
    ``MAX_NODES`` values (YAML aliases can expand a small file into a huge document)."""
    count = 0

    def walk(value: Any, ptr: str, depth: int) -> Any:
        nonlocal count
        count += 1
        if count > MAX_NODES:
            report.error(
                "",
                f"The bundle holds more than {MAX_NODES:,} values; split it or "
                "remove repeated YAML aliases.",
            )
            raise _Stop
        if isinstance(value, dict | list) and depth >= MAX_DEPTH:
            report.error(
                ptr, f"Nested deeper than {MAX_DEPTH} levels; nothing in a bundle needs that."
            )
            raise _Stop
        if isinstance(value, dict):
            for key, item in value.items():
                if not isinstance(key, str):
                    report.error(
                        child(ptr, str(key)),
                        f"Keys must be text; {key!r} was read as {type(key).__name__}: quote it.",
                    )
                    continue
                _check_text(key, child(ptr, key), report)
                message = hidden_character_message(key)
                if message:
                    report.error(child(ptr, key), message)
                walk(item, child(ptr, key), depth + 1)
        elif isinstance(value, list):
            for index, item in enumerate(value):
                walk(item, child(ptr, index), depth + 1)
        elif isinstance(value, str):
            _check_text(value, ptr, report)
        elif isinstance(value, float) and not math.isfinite(value):
            report.error(ptr, "NaN and infinite numbers have no JSON form.")
        elif (
            isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_SAFE_INTEGER
        ):
            # Canonical JSON (RFC 8785) is defined over I-JSON: a runtime in JavaScript would
            # read a different number, and the digest could not be reproduced there.
            report.error(
                ptr,
                f"The integer {value} is beyond ±{MAX_SAFE_INTEGER} (2**53-1), the range every "
                "JSON reader carries exactly (I-JSON, RFC 7493, which canonical JSON requires): "
                "quote it as text, or use a smaller number.",
            )
        elif not (value is None or isinstance(value, bool | int | float)):
            report.error(
                ptr,
                f"A {type(value).__name__} value has no JSON form; write it as a quoted string.",
            )
        return value

    try:
        walk(data, "", 0)
    except _Stop:
        return None
    if report.errors:
        return None
    return normalize(data)


def _check_text(text: str, ptr: str, report: Report) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        report.error(ptr, "Contains invalid Unicode (an unpaired surrogate escape).")


# --------------------------------------------------------------------------- schema

_VALIDATOR = Draft202012Validator(BUNDLE_SCHEMA)

_TYPE_NAMES = {
    "object": "a mapping (object)",
    "array": "a list",
    "string": "text",
    "integer": "a whole number",
    "number": "a number",
    "boolean": "true or false",
    "null": "null",
}


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if value is None:
        return "null"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if isinstance(value, int):
        return "integer"
    return "number"


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _under_condition(path: list[Any]) -> bool:
    # Rule conditions are recursive; semantics.check_condition reports on them with sharper
    # messages than a oneOf failure, so the schema's findings there are left out.
    return (
        len(path) >= 4 and path[0] == "policies" and path[1] == "tool_rules" and path[3] == "when"
    )


def describe(error: SchemaValidationError) -> list[tuple[str, str]]:
    """One jsonschema error -> (pointer, message) pairs a person can act on."""
    base = from_path(error.absolute_path)
    validator, expected, instance = error.validator, error.validator_value, error.instance
    if "propertyNames" in error.schema_path and isinstance(instance, str):
        return [
            (
                child(base, instance),
                hidden_character_message(instance)
                or PATTERN_HELP.get(str(expected), f"Must match {expected}."),
            )
        ]
    if validator == "additionalProperties" and isinstance(instance, dict):
        allowed = sorted(error.schema.get("properties", {}))
        hint = f" Allowed here: {', '.join(allowed)}." if allowed else ""
        return [
            (child(base, key), f"Unknown key {key!r}.{hint}")
            for key in instance
            if key not in allowed
        ]
    if validator == "required" and isinstance(instance, dict):
        properties = error.schema.get("properties", {})
        found = []
        for key in expected:
            if key not in instance:
                description = properties.get(key, {}).get("description")
                found.append(
                    (child(base, key), f"Required ({description})." if description else "Required.")
                )
        return found
    if validator == "type":
        names = [expected] if isinstance(expected, str) else list(expected)
        wanted = " or ".join(_TYPE_NAMES.get(n, n) for n in names)
        return [(base, f"Expected {wanted}, got {_TYPE_NAMES[_json_type(instance)]}.")]
    if validator == "enum":
        return [
            (base, f"Must be one of {', '.join(str(v) for v in expected)}; got {_short(instance)}.")
        ]
    if validator == "exclusiveMinimum":
        return [
            (
                base,
                "Must be positive (greater than 0)."
                if expected == 0
                else f"Must be greater than {expected}.",
            )
        ]
    if validator == "minimum":
        return [(base, f"Must be at least {expected}.")]
    if validator == "maximum":
        return [(base, f"Must be at most {expected}.")]
    if validator in ("minLength", "minItems", "minProperties") and expected == 1:
        return [(base, "Must not be empty.")]
    if validator == "maxLength":
        return [(base, f"Is {len(instance)} characters long; the limit is {expected}.")]
    if validator == "maxItems":
        return [(base, f"Has {len(instance)} items; the limit is {expected}.")]
    if validator == "uniqueItems":
        return [(base, "Items must not repeat.")]
    if validator == "pattern" and isinstance(instance, str):
        hidden = hidden_character_message(instance)
        if hidden:
            return [(base, hidden)]
        return [
            (
                base,
                f"{PATTERN_HELP.get(expected, f'Must match {expected}.')} Got {_short(instance)}.",
            )
        ]
    return [(base, f"{error.message[:1].upper()}{error.message[1:]}.")]


def schema_errors(content: Any, report: Report) -> None:
    for error in _VALIDATOR.iter_errors(content):
        if _under_condition(list(error.absolute_path)):
            continue
        for ptr, message in describe(error):
            report.error(ptr, message)
