"""Untyped positions checked against the JSON-Schema type they will be compared with.

A rule's ``value``, a schema's ``enum`` entries, ``const``, ``default`` and ``examples`` take any
JSON value, so the bundle schema cannot catch ``value: false`` compared with a text argument
(what YAML 1.1 made of ``value: no``). Arguments are validated against the tool's parameters
before rules run, so such a comparison can never be true: a deny rule would silently stop
denying. Each one is an error here, located by JSON pointer; ``examples`` only warn.

The runtime does the same check when it compiles a policy and fails closed on what gets past
(a version stored before this check existed): see ``dataplane/policy.py``."""

from __future__ import annotations

from typing import Any

from jsonschema import Draft202012Validator

from .conditions import is_number
from .report import Report, child, pointer
from .semantics import rule_entries, rule_matches, tool_entries, valid_tool_names

# The context facts a runtime supplies and their types (docs/bundle-format.md).
CONTEXT_TYPES: dict[str, str] = {
    "end_user_role": "string",
    "tenant": "string",
    "environment": "string",
    "confidence": "number",
}
_NUMERIC_OPS = (">", ">=", "<", "<=")
_TYPE_WORDS = {
    "string": "text",
    "integer": "a whole number",
    "number": "a number",
    "boolean": "true/false",
    "null": "null",
    "object": "an object",
    "array": "a list",
}
_SCHEMA_KEYWORDS = ("items", "additionalProperties", "not", "if", "then", "else", "contains")
_SCHEMA_MAPS = ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas")
_SCHEMA_LISTS = ("allOf", "anyOf", "oneOf", "prefixItems")


def json_type(value: Any) -> str:
    """The JSON type name of a plain value (``integer`` for whole numbers)."""
    if isinstance(value, bool):
        return "boolean"
    if value is None:
        return "null"
    if isinstance(value, str):
        return "string"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "integer" if value.is_integer() else "number"
    return "array" if isinstance(value, list) else "object"


def declared_types(schema: Any) -> list[str] | None:
    """The ``type`` a schema declares, as a list; None when it declares none (any value)."""
    if not isinstance(schema, dict):
        return None
    declared = schema.get("type")
    if isinstance(declared, str):
        return [declared]
    if isinstance(declared, list) and all(isinstance(t, str) for t in declared):
        return list(declared)
    return None


def fits(value: Any, types: list[str]) -> bool:
    """Whether ``value`` is of one of the JSON-Schema ``types`` (2020-12: 1.0 is an integer)."""
    return bool(Draft202012Validator({"type": types}).is_valid(value))


def _words(types: list[str]) -> str:
    return " or ".join(_TYPE_WORDS.get(t, t) for t in types)


def _hint(value: Any, types: list[str]) -> str:
    if isinstance(value, bool | None) and "string" in types:
        return (
            " If you meant the text, quote it: YAML 1.1 tools read no/yes/on/off/y/n as "
            "true/false and ~ as null."
        )
    if is_number(value) and "string" in types:
        return " If you meant the text, quote it."
    return ""


def check(content: dict[str, Any], report: Report) -> None:
    """Report every untyped value that cannot be of the type it is compared with."""
    _check_rule_values(content, report)
    for index, tool in tool_entries(content):
        parameters = tool.get("parameters")
        if isinstance(parameters, dict):
            _check_schema_values(parameters, pointer("tools", index, "parameters"), report)


# --------------------------------------------------------------------------- rules


def _argument_schema(parameters: Any, path: str) -> Any:
    """The schema of the argument at dotted ``path``, or None when it is not declared."""
    schema = parameters
    for part in path.split("."):
        properties = schema.get("properties") if isinstance(schema, dict) else None
        if not isinstance(properties, dict) or part not in properties:
            return None
        schema = properties[part]
    return schema


def _comparisons(condition: Any, ptr: str) -> list[tuple[str, dict[str, Any]]]:
    if not isinstance(condition, dict):
        return []
    for key in ("all", "any"):
        if isinstance(condition.get(key), list):
            return [
                found
                for index, item in enumerate(condition[key])
                for found in _comparisons(item, child(ptr, key, index))
            ]
    if "not" in condition:
        return _comparisons(condition["not"], child(ptr, "not"))
    return [(ptr, condition)]


def _check_rule_values(content: dict[str, Any], report: Report) -> None:
    tools = {t["name"]: t for _, t in tool_entries(content) if isinstance(t.get("name"), str)}
    names = valid_tool_names(content)
    for index, rule in rule_entries(content):
        base = pointer("policies", "tool_rules", index, "when")
        action = rule.get("action") if isinstance(rule.get("action"), str) else "this"
        matched = rule_matches(rule, names) or []
        for ptr, comparison in _comparisons(rule.get("when"), base):
            subject, types = _subject_types(comparison, matched, tools)
            if not types:
                continue  # not declared anywhere: any value may come
            _check_comparison(comparison, ptr, subject, types, str(action), report)


def _subject_types(
    comparison: dict[str, Any], matched: list[str], tools: dict[str, dict[str, Any]]
) -> tuple[str, list[str]]:
    """What the comparison reads and every type it may have; no types means unknown."""
    if "context" in comparison:
        key = comparison["context"]
        known = CONTEXT_TYPES.get(key) if isinstance(key, str) else None
        return f"context {key}", [known] if known else []
    path = comparison.get("arg")
    if not isinstance(path, str) or not matched:
        return "", []
    types: list[str] = []
    for name in matched:
        declared = declared_types(_argument_schema(tools[name].get("parameters"), path))
        if declared is None:
            return "", []  # one tool takes any value there: nothing is certain
        types.extend(t for t in declared if t not in types)
    return f"argument {path!r} of {', '.join(matched)}", types


def _check_comparison(
    comparison: dict[str, Any],
    ptr: str,
    subject: str,
    types: list[str],
    action: str,
    report: Report,
) -> None:
    op, value = comparison.get("op"), comparison.get("value")
    never = f"the condition can never be true, so this {action} rule would never apply."
    if op in _NUMERIC_OPS and not ({"number", "integer"} & set(types)):
        report.error(
            child(ptr, "op"), f"'{op}' compares numbers, but {subject} is {_words(types)}: {never}"
        )
    elif op == "matches" and "string" not in types:
        report.error(
            child(ptr, "op"), f"'matches' tests text, but {subject} is {_words(types)}: {never}"
        )
    elif op in ("==", "!=") and "value" in comparison and value is not None:
        if not isinstance(value, dict | list) and not fits(value, types):
            report.error(
                child(ptr, "value"),
                f"{value!r} is {_words([json_type(value)])}, but {subject} is {_words(types)}: "
                f"{never if op == '==' else 'the condition is always true.'}"
                f"{_hint(value, types)}",
            )
    elif op in ("in", "not_in") and isinstance(value, list):
        for position, item in enumerate(value):
            if item is not None and not isinstance(item, dict | list) and not fits(item, types):
                report.error(
                    child(ptr, "value", position),
                    f"{item!r} is {_words([json_type(item)])}, but {subject} is {_words(types)}: "
                    f"this entry can never match.{_hint(item, types)}",
                )


# --------------------------------------------------------------------------- tool schemas


def _check_schema_values(schema: Any, ptr: str, report: Report, depth: int = 0) -> None:
    if not isinstance(schema, dict) or depth > 64:
        return
    types = declared_types(schema)
    if types:
        for position, entry in enumerate(schema.get("enum") or []):
            if not fits(entry, types):
                report.error(
                    child(ptr, "enum", position),
                    f"{entry!r} is {_words([json_type(entry)])}, but the schema's type is "
                    f"{_words(types)}: no argument can ever take this value.{_hint(entry, types)}",
                )
        for keyword in ("const", "default"):
            if keyword in schema and not fits(schema[keyword], types):
                entry = schema[keyword]
                report.error(
                    child(ptr, keyword),
                    f"{entry!r} is {_words([json_type(entry)])}, but the schema's type is "
                    f"{_words(types)}.{_hint(entry, types)}",
                )
        examples = schema.get("examples")
        for position, entry in enumerate(examples if isinstance(examples, list) else []):
            if not fits(entry, types):
                report.warn(
                    child(ptr, "examples", position),
                    f"{entry!r} is {_words([json_type(entry)])}, but the schema's type is "
                    f"{_words(types)}: the model reads this example.{_hint(entry, types)}",
                )
    for keyword in _SCHEMA_KEYWORDS:
        _check_schema_values(schema.get(keyword), child(ptr, keyword), report, depth + 1)
    for keyword in _SCHEMA_MAPS:
        children = schema.get(keyword)
        if isinstance(children, dict):
            for name, sub in children.items():
                _check_schema_values(sub, child(ptr, keyword, name), report, depth + 1)
    for keyword in _SCHEMA_LISTS:
        children = schema.get(keyword)
        if isinstance(children, list):
            for index, sub in enumerate(children):
                _check_schema_values(sub, child(ptr, keyword, index), report, depth + 1)
