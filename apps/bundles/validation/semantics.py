"""Checks a JSON Schema cannot express: names that must be unique or must exist, tool
parameters that must themselves be valid JSON Schemas, template variables, rule conditions.

Every check tolerates a document that failed the schema (wrong types are skipped here, the
schema already reported them), so one run reports every problem at once."""

from __future__ import annotations

import re
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any
from urllib.parse import unquote

from apps.core.input_guards import is_digits

from ..schema import (
    TOOL_GLOB_PATTERN,
    TOOL_NAME_PATTERN,
    VARIABLE_NAME_PATTERN,
)
from .conditions import check_condition, is_number
from .regexes import META_VALIDATOR, regex_message, regex_problem
from .report import Report, child, from_path, pointer

# The 2020-12 meta-schema; a ``pattern`` (or ``patternProperties`` key) must be RE2.
_META = META_VALIDATOR
PLACEHOLDER = re.compile(r"\{\{(.*?)\}\}", re.S)


@dataclass(frozen=True)
class Placeholder:
    name: str
    start: int
    end: int


def placeholders(template: str) -> list[Placeholder]:
    return [
        Placeholder(m.group(1).strip(), m.start(), m.end()) for m in PLACEHOLDER.finditer(template)
    ]


def as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def tool_entries(content: dict[str, Any]) -> list[tuple[int, dict[str, Any]]]:
    return [(i, t) for i, t in enumerate(as_list(content.get("tools"))) if isinstance(t, dict)]


def valid_tool_names(content: dict[str, Any]) -> list[str]:
    names: list[str] = []
    for _, tool in tool_entries(content):
        name = tool.get("name")
        if isinstance(name, str) and re.fullmatch(TOOL_NAME_PATTERN, name) and name not in names:
            names.append(name)
    return names


def rule_entries(content: dict[str, Any]) -> list[tuple[int, dict[str, Any]]]:
    rules = as_list(as_dict(content.get("policies")).get("tool_rules"))
    return [(i, r) for i, r in enumerate(rules) if isinstance(r, dict)]


def rule_matches(rule: dict[str, Any], tool_names: list[str]) -> list[str] | None:
    """Tools a rule's pattern matches; None when the pattern itself is unusable."""
    pattern = rule.get("tool")
    if not isinstance(pattern, str) or not re.fullmatch(TOOL_GLOB_PATTERN, pattern):
        return None
    return [name for name in tool_names if fnmatchcase(name, pattern)]


def check(content: dict[str, Any], report: Report) -> None:
    _check_tools(content, report)
    _check_prompts(content, report)
    _check_rules(content, report)
    _check_input(content, report)
    _check_retrieval(content, report)
    _check_memory(content, report)


# --------------------------------------------------------------------------- tools


def _check_tools(content: dict[str, Any], report: Report) -> None:
    first_index: dict[str, int] = {}
    for index, tool in tool_entries(content):
        name = tool.get("name")
        if isinstance(name, str) and re.fullmatch(TOOL_NAME_PATTERN, name):
            if name in first_index:
                report.error(
                    pointer("tools", index, "name"),
                    f"Duplicate tool name {name!r}: /tools/{first_index[name]} has it already.",
                )
            else:
                first_index[name] = index
        parameters = tool.get("parameters")
        if isinstance(parameters, dict):
            _check_tool_parameters(parameters, pointer("tools", index, "parameters"), report)
        _check_sensitive_args(tool, index, report)


def _check_tool_parameters(schema: dict[str, Any], base: str, report: Report) -> None:
    invalid = False
    for error in _META.iter_errors(schema):
        invalid = True
        where = base + from_path(error.absolute_path)
        if error.validator == "format" and error.validator_value == "regex":
            # A ``pattern`` value, or a ``patternProperties`` key (reported at the key).
            if error.absolute_path and error.absolute_path[-1] == "patternProperties":
                where = child(where, str(error.instance))
            report.error(where, regex_message(regex_problem(str(error.instance)) or ""))
            continue
        report.error(where, f"Not a valid JSON Schema (draft 2020-12): {error.message}.")
    if invalid:
        return
    if schema.get("type") != "object":
        report.error(
            child(base, "type"),
            "Tool parameters must describe an object (type: object): a tool takes named arguments.",
        )
    if _finds(schema, "patternProperties"):
        # jsonschema evaluates patternProperties keys for unevaluatedProperties with Python's
        # backtracking ``re``, out of reach of an RE2 runtime's validator: refused together.
        for found in _finds(schema, "unevaluatedProperties"):
            report.error(
                child(base, *found),
                "unevaluatedProperties cannot be combined with patternProperties in tool "
                "parameters (runtimes could not evaluate the patterns with RE2): use "
                "additionalProperties.",
            )
    for ref_pointer, ref in _references(schema, base):
        if not ref.startswith("#"):
            report.error(
                ref_pointer,
                "Only references inside this schema (#/...) are allowed: a "
                "runtime must never fetch a schema over the network.",
            )
        elif not _resolves(schema, ref[1:]):
            report.error(ref_pointer, f"{ref!r} points at nothing in this schema.")


def _finds(
    value: Any, keyword: str, path: tuple[str | int, ...] = ()
) -> list[tuple[str | int, ...]]:
    """Paths (within ``value``) of every ``keyword`` key whose value is a schema."""
    found: list[tuple[str | int, ...]] = []
    if isinstance(value, dict):
        for key, item in value.items():
            if key == keyword and isinstance(item, dict | bool):
                found.append((*path, key))
            found.extend(_finds(item, keyword, (*path, key)))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found.extend(_finds(item, keyword, (*path, index)))
    return found


def _references(value: Any, ptr: str) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    if isinstance(value, dict):
        for key, item in value.items():
            if key in ("$ref", "$dynamicRef") and isinstance(item, str):
                found.append((child(ptr, key), item))
            else:
                found.extend(_references(item, child(ptr, key)))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found.extend(_references(item, child(ptr, index)))
    return found


def _anchors(value: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(value, dict):
        for key, item in value.items():
            if key in ("$anchor", "$dynamicAnchor") and isinstance(item, str):
                found.add(item)
            else:
                found |= _anchors(item)
    elif isinstance(value, list):
        for item in value:
            found |= _anchors(item)
    return found


def _resolves(schema: dict[str, Any], fragment: str) -> bool:
    fragment = unquote(fragment)
    if not fragment:
        return True
    if not fragment.startswith("/"):
        return fragment in _anchors(schema)
    node: Any = schema
    for token in fragment[1:].split("/"):
        token = token.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and token in node:
            node = node[token]
        elif isinstance(node, list) and is_digits(token) and int(token) < len(node):
            node = node[int(token)]
        else:
            return False
    return True


def tool_properties(tool: dict[str, Any]) -> dict[str, Any] | None:
    properties = as_dict(tool.get("parameters")).get("properties")
    return properties if isinstance(properties, dict) else None


def _check_sensitive_args(tool: dict[str, Any], index: int, report: Report) -> None:
    sensitive = tool.get("sensitive_args")
    if not isinstance(sensitive, list) or not sensitive:
        return
    properties = tool_properties(tool)
    if properties is None:
        report.error(
            pointer("tools", index, "sensitive_args"),
            "The tool's parameters declare no properties, so there is nothing to redact by name.",
        )
        return
    for position, arg in enumerate(sensitive):
        if isinstance(arg, str) and arg not in properties:
            declared = ", ".join(sorted(properties)) or "none"
            report.error(
                pointer("tools", index, "sensitive_args", position),
                f"{arg!r} is not a parameter of this tool (declared: {declared}).",
            )


# --------------------------------------------------------------------------- prompts


def _check_prompts(content: dict[str, Any], report: Report) -> None:
    for name, prompt in as_dict(content.get("prompts")).items():
        if not isinstance(prompt, dict) or not isinstance(prompt.get("template"), str):
            continue
        base = pointer("prompts", name)
        template: str = prompt["template"]
        variables = as_dict(prompt.get("variables"))
        used: list[str] = []
        for placeholder in placeholders(template):
            if not re.fullmatch(VARIABLE_NAME_PATTERN, placeholder.name):
                shown = template[placeholder.start : placeholder.end]
                report.error(
                    child(base, "template"),
                    f"Malformed placeholder {shown!r}: write "
                    "{{ name }} with a declared variable name.",
                )
            elif placeholder.name not in used:
                used.append(placeholder.name)
        if "{{" in PLACEHOLDER.sub("", template):
            report.error(child(base, "template"), "Has '{{' without a closing '}}'.")
        for variable in used:
            if variable not in variables:
                report.error(
                    child(base, "template"),
                    f"Uses the undeclared variable {variable!r}: declare it under "
                    f"{child(base, 'variables')} with its source.",
                )
        for variable in variables:
            if variable not in used:
                report.warn(
                    child(base, "variables", variable), "Declared but not used in the template."
                )


# --------------------------------------------------------------------------- rules


def _check_rules(content: dict[str, Any], report: Report) -> None:
    tools = {t["name"]: t for _, t in tool_entries(content) if isinstance(t.get("name"), str)}
    names = valid_tool_names(content)
    for index, rule in rule_entries(content):
        if "when" not in rule:
            continue
        base = pointer("policies", "tool_rules", index, "when")
        arguments = check_condition(rule["when"], base, report)
        matched = rule_matches(rule, names) or []
        declared = [tool_properties(tools[name]) for name in matched]
        if not matched or any(props is None for props in declared):
            continue  # a tool without declared properties takes any argument
        for arg_pointer, path in arguments:
            first = path.split(".", 1)[0]
            if not any(first in props for props in declared if props is not None):
                report.error(
                    arg_pointer,
                    f"{first!r} is not a parameter of {', '.join(matched)}: "
                    "the condition could never be true.",
                )


# --------------------------------------------------------------------------- the rest


def _check_input(content: dict[str, Any], report: Report) -> None:
    patterns = as_list(
        as_dict(as_dict(content.get("policies")).get("input")).get("blocked_patterns")
    )
    for index, entry in enumerate(patterns):
        pattern = as_dict(entry).get("pattern")
        if not isinstance(pattern, str):
            continue
        problem = regex_problem(pattern)
        if problem is not None:
            report.error(
                pointer("policies", "input", "blocked_patterns", index, "pattern"),
                regex_message(problem),
            )


def _check_retrieval(content: dict[str, Any], report: Report) -> None:
    chunking = as_dict(as_dict(content.get("retrieval")).get("chunking"))
    size, overlap = chunking.get("size"), chunking.get("overlap")
    if is_number(size) and is_number(overlap) and size > 0 and overlap >= size:
        report.error(
            pointer("retrieval", "chunking", "overlap"),
            f"Must be smaller than the chunk size ({size}).",
        )


def _check_memory(content: dict[str, Any], report: Report) -> None:
    writers = as_dict(as_dict(content.get("memory")).get("writers"))
    names = {t.get("name") for _, t in tool_entries(content)}
    for index, name in enumerate(as_list(writers.get("tools"))):
        if isinstance(name, str) and name not in names:
            report.error(
                pointer("memory", "writers", "tools", index),
                f"No tool named {name!r} in this bundle.",
            )
