"""Warnings: legal bundles that are probably not what their author meant. They never block a
push; they are stored with the version and shown beside the field."""

from __future__ import annotations

import re
from typing import Any

from ..schema import UNTRUSTED_SOURCES
from .report import Report, child, pointer
from .semantics import (
    as_dict,
    placeholders,
    rule_entries,
    rule_matches,
    tool_entries,
    valid_tool_names,
)

# Characters that reorder or hide text (Trojan Source): a reviewer reads something else than
# the model does.
_INVISIBLE = re.compile("[\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff]")

_OPENING_TAG = re.compile(r"<([A-Za-z][\w.-]*)(?:\s[^<>]*)?>$")
_FENCE = re.compile(r"```[\w-]*$")
_PAIRS = (('"""', '"""'), ("'''", "'''"), ("<<<", ">>>"))

_WHO = {
    "user": "the end user",
    "retrieval": "retrieved documents",
    "tool": "a tool's result",
    "memory": "remembered facts",
}


def is_delimited(template: str, start: int, end: int) -> bool:
    """Does a placeholder sit alone between a delimiter pair: <tag>…</tag>, ``` fences,
    triple quotes or <<< >>>? Plain quotes do not count: a value can close them."""
    before, after = template[:start].rstrip(), template[end:].lstrip()
    tag = _OPENING_TAG.search(before)
    if tag and after.startswith(f"</{tag.group(1)}>"):
        return True
    if _FENCE.search(before) and after.startswith("```"):
        return True
    return any(
        before.endswith(opening) and after.startswith(closing) for opening, closing in _PAIRS
    )


def lint(content: dict[str, Any], report: Report) -> None:
    _lint_prompts(content, report)
    _lint_rules(content, report)
    _lint_memory(content, report)


def _lint_prompts(content: dict[str, Any], report: Report) -> None:
    for name, prompt in as_dict(content.get("prompts")).items():
        if not isinstance(prompt, dict) or not isinstance(prompt.get("template"), str):
            continue
        template: str = prompt["template"]
        hidden = _INVISIBLE.search(template)
        if hidden:
            report.warn(
                pointer("prompts", name, "template"),
                "Contains an invisible or direction-changing character "
                f"(U+{ord(hidden.group()):04X}) that shows reviewers different text than the "
                "model reads.",
            )
        if prompt.get("role") != "system":
            continue
        variables = as_dict(prompt.get("variables"))
        warned: set[str] = set()
        for placeholder in placeholders(template):
            source = as_dict(variables.get(placeholder.name)).get("source")
            if source not in UNTRUSTED_SOURCES or placeholder.name in warned:
                continue
            if not is_delimited(template, placeholder.start, placeholder.end):
                warned.add(placeholder.name)
                var = placeholder.name
                report.warn(
                    pointer("prompts", name, "template"),
                    f"{{{{ {var} }}}} comes from {_WHO[source]} and is inserted into a system "
                    f"prompt without delimiters: wrap it, e.g. <{var}>{{{{ {var} }}}}</{var}>, "
                    "and tell the model to treat it as data, not instructions.",
                )


def _lint_rules(content: dict[str, Any], report: Report) -> None:
    names = valid_tool_names(content)
    rules = rule_entries(content)
    matched_by: dict[int, list[str]] = {}
    for index, rule in rules:
        matched = rule_matches(rule, names)
        if matched is None:
            continue
        matched_by[index] = matched
        if not matched:
            report.warn(
                pointer("policies", "tool_rules", index, "tool"),
                f"Matches no tool of this bundle ({rule['tool']!r}).",
            )
            continue
        for earlier, earlier_rule in rules:
            if earlier >= index or "when" in earlier_rule or earlier not in matched_by:
                continue
            if set(matched) <= set(matched_by[earlier]):
                report.warn(
                    pointer("policies", "tool_rules", index),
                    f"Never applies: /policies/tool_rules/{earlier} comes first, has no "
                    "condition and matches every tool this rule matches.",
                )
                break
    covered = {name for matched in matched_by.values() for name in matched}
    allowing = {
        name
        for index, rule in rules
        if rule.get("action") == "allow"
        for name in matched_by.get(index, [])
    }
    for index, tool in tool_entries(content):
        name = tool.get("name")
        if not isinstance(name, str) or name not in names:
            continue
        if name not in covered:
            report.warn(
                pointer("tools", index, "name"),
                f"No rule matches {name}: default deny applies, so the agent can never call it.",
            )
        if (
            tool.get("risk") == "critical"
            and tool.get("requires_approval") is not True
            and name in allowing
        ):
            report.warn(
                pointer("tools", index, "requires_approval"),
                "A critical tool that a rule allows can run without a human: set "
                "requires_approval: true, or make its rules ask.",
            )


def _lint_memory(content: dict[str, Any], report: Report) -> None:
    memory = as_dict(content.get("memory"))
    if (
        as_dict(memory.get("writers")).get("user") is True
        and memory.get("require_provenance") is False
    ):
        report.warn(
            child("/memory", "require_provenance"),
            "End users may write memory and facts carry no provenance: a poisoned memory "
            "could not be traced or purged.",
        )
