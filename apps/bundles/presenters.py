"""Bundle content shaped for templates: prompts with their variables marked, tools as table
rows, rules in words, validation findings placed on the lines of the file (pure functions)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from .describe import condition_text
from .parsing import finding_line, pointer_lines, scalar_spans
from .validation.semantics import PLACEHOLDER, as_dict, as_list

RISK_BADGES = {"read": "neutral", "write": "warn", "critical": "bad"}
ACTION_BADGES = {"allow": "ok", "ask": "warn", "deny": "bad"}
GATE_BADGES = {"none": "neutral", "met": "ok", "waiting": "warn", "failing": "bad"}


def highlight_template(template: str) -> SafeString:
    """The template, escaped, with each {{ variable }} marked."""
    escaped = str(escape(template))
    return mark_safe(PLACEHOLDER.sub(lambda m: f'<mark class="var">{m.group(0)}</mark>', escaped))  # noqa: S308 - input escaped above


def prompts(content: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for name, prompt in as_dict(content.get("prompts")).items():
        prompt = as_dict(prompt)
        variables = [
            {"name": var, **as_dict(spec)} for var, spec in as_dict(prompt.get("variables")).items()
        ]
        rows.append(
            {
                "name": name,
                "role": prompt.get("role"),
                "description": prompt.get("description", ""),
                "template": highlight_template(str(prompt.get("template", ""))),
                "variables": variables,
            }
        )
    return rows


def _parameter_rows(schema: dict[str, Any]) -> list[dict[str, Any]]:
    required = set(as_list(schema.get("required")))
    rows = []
    for name, spec in as_dict(schema.get("properties")).items():
        spec = as_dict(spec)
        kind = spec.get("type") or ("enum" if "enum" in spec else "any")
        rules = {k: v for k, v in spec.items() if k not in ("type", "description")}
        rows.append(
            {
                "name": name,
                "type": kind if isinstance(kind, str) else " | ".join(map(str, kind)),
                "required": name in required,
                "description": spec.get("description", ""),
                "constraints": ", ".join(
                    f"{k}: {json.dumps(v, ensure_ascii=False)}" for k, v in rules.items()
                ),
            }
        )
    return rows


def tools(content: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for tool in as_list(content.get("tools")):
        tool = as_dict(tool)
        parameters = as_dict(tool.get("parameters"))
        rate = as_dict(tool.get("rate_limit"))
        rows.append(
            {
                "name": tool.get("name"),
                "description": tool.get("description", ""),
                "risk": tool.get("risk"),
                "risk_badge": RISK_BADGES.get(str(tool.get("risk")), "neutral"),
                "requires_approval": tool.get("requires_approval", False) is True,
                "idempotent": tool.get("idempotent", False) is True,
                "timeout_s": tool.get("timeout_s", 30),
                "rate_limit": f"{rate['max_calls']} per {rate['per_s']} s" if rate else "",
                "sensitive_args": as_list(tool.get("sensitive_args")),
                "parameters": _parameter_rows(parameters),
                "schema": json.dumps(parameters, indent=2, ensure_ascii=False),
            }
        )
    return rows


def rules(content: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for position, rule in enumerate(
        as_list(as_dict(content.get("policies")).get("tool_rules")), start=1
    ):
        rule = as_dict(rule)
        rows.append(
            {
                "position": position,
                "action": rule.get("action"),
                "badge": ACTION_BADGES.get(str(rule.get("action")), "neutral"),
                "tool": rule.get("tool"),
                "when": condition_text(rule["when"]) if "when" in rule else "",
                "description": rule.get("description", ""),
            }
        )
    return rows


# --------------------------------------------------------------------------- findings on lines


@dataclass
class Finding:
    level: str  # error or warning
    pointer: str
    message: str
    line: int | None


@dataclass
class SourceLine:
    number: int
    text: str
    findings: list[Finding] = field(default_factory=list)


def findings(
    source: str, errors: dict[str, list[str]], warnings: dict[str, list[str]]
) -> list[Finding]:
    lines, spans = pointer_lines(source), scalar_spans(source)
    found = [
        Finding(level, ptr, message, finding_line(source, ptr, message, lines, spans))
        for level, table in (("error", errors), ("warning", warnings))
        for ptr, messages in table.items()
        for message in messages
    ]
    return sorted(found, key=lambda f: (f.line or 0, f.level != "error"))


def annotated_source(source: str, found: list[Finding]) -> list[SourceLine]:
    """Every line of the file, with the findings that point at it."""
    rows = [
        SourceLine(number, text) for number, text in enumerate(source.splitlines() or [""], start=1)
    ]
    for finding in found:
        if finding.line is not None and 1 <= finding.line <= len(rows):
            rows[finding.line - 1].findings.append(finding)
    return rows


_TRAILING_SPACES = re.compile(r"[ \t]+$", re.M)


def editor_text(text: str) -> str:
    """What the editor starts from: the file as pushed, trailing blanks trimmed."""
    return _TRAILING_SPACES.sub("", text)
