"""What changed between two bundle versions (pure functions over their content).

Prompts: a line diff of each template, side by side, plus changed fields (role, variables).
Tools: added, removed, and changed field by field (parameters included, by JSON pointer).
Policies: limits field by field; rules as an ordered list, because order decides (first match
wins); input and output settings field by field. Model, retrieval, memory: field by field."""

from __future__ import annotations

import difflib
import json
from dataclasses import asdict, dataclass, field
from itertools import zip_longest
from typing import Any

from .describe import rule_text
from .validation.report import escape


@dataclass(frozen=True)
class FieldChange:
    path: str
    kind: str  # added, removed, changed
    before: Any = None
    after: Any = None

    @property
    def before_text(self) -> str:
        return _show(self.before)

    @property
    def after_text(self) -> str:
        return _show(self.after)


@dataclass(frozen=True)
class LineRow:
    kind: str  # equal, changed, removed, added
    before_no: int | None
    before: str | None
    after_no: int | None
    after: str | None


@dataclass(frozen=True)
class PromptDiff:
    name: str
    kind: str  # added, removed, changed
    lines: list[LineRow] = field(default_factory=list)
    fields: list[FieldChange] = field(default_factory=list)


@dataclass(frozen=True)
class ToolDiff:
    name: str
    kind: str  # added, removed, changed
    fields: list[FieldChange] = field(default_factory=list)
    before: dict[str, Any] | None = None
    after: dict[str, Any] | None = None


@dataclass(frozen=True)
class RuleRow:
    kind: str  # equal, changed, removed, added
    before_position: int | None
    before: str | None
    after_position: int | None
    after: str | None


@dataclass
class BundleDiff:
    identical: bool
    prompts: list[PromptDiff]
    tools: list[ToolDiff]
    limits: list[FieldChange]
    rules: list[RuleRow]
    policies: list[FieldChange]
    model: list[FieldChange]
    retrieval: list[FieldChange]
    memory: list[FieldChange]
    other: list[FieldChange]

    @property
    def rules_changed(self) -> bool:
        return any(row.kind != "equal" for row in self.rules)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["rules_changed"] = self.rules_changed
        return data


def _show(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Leaves by JSON pointer. Lists of plain values are one leaf (they read as one value);
    lists of objects are walked item by item; empty containers are leaves, so they show."""
    if value is None and not prefix:
        return {}
    if isinstance(value, dict) and (value or not prefix):
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(flatten(item, f"{prefix}/{escape(key)}"))
        return out
    if isinstance(value, list) and value and any(isinstance(v, dict | list) for v in value):
        out = {}
        for index, item in enumerate(value):
            out.update(flatten(item, f"{prefix}/{index}"))
        return out
    return {prefix: value}


def field_changes(before: Any, after: Any, prefix: str = "") -> list[FieldChange]:
    old, new = flatten(before, prefix), flatten(after, prefix)
    changes = []
    for path in sorted(set(old) | set(new)):
        if path not in old:
            changes.append(FieldChange(path, "added", None, new[path]))
        elif path not in new:
            changes.append(FieldChange(path, "removed", old[path], None))
        elif old[path] != new[path] or type(old[path]) is not type(new[path]):
            changes.append(FieldChange(path, "changed", old[path], new[path]))
    return changes


def _section(content: dict[str, Any], key: str) -> Any:
    value = content.get(key)
    return value if value is not None else {}


def line_rows(before: str, after: str) -> list[LineRow]:
    a, b = before.splitlines(), after.splitlines()
    rows: list[LineRow] = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes():
        if tag == "equal":
            rows.extend(
                LineRow("equal", i + 1, a[i], j + 1, b[j])
                for i, j in zip(range(i1, i2), range(j1, j2), strict=True)
            )
        elif tag == "replace":
            for i, j in zip_longest(range(i1, i2), range(j1, j2)):
                kind = (
                    "changed"
                    if i is not None and j is not None
                    else "removed"
                    if j is None
                    else "added"
                )
                rows.append(
                    LineRow(
                        kind,
                        None if i is None else i + 1,
                        None if i is None else a[i],
                        None if j is None else j + 1,
                        None if j is None else b[j],
                    )
                )
        elif tag == "delete":
            rows.extend(LineRow("removed", i + 1, a[i], None, None) for i in range(i1, i2))
        else:
            rows.extend(LineRow("added", None, None, j + 1, b[j]) for j in range(j1, j2))
    return rows


def _prompts(before: dict[str, Any], after: dict[str, Any]) -> list[PromptDiff]:
    diffs = []
    for name in sorted(set(before) | set(after)):
        old, new = before.get(name), after.get(name)
        if old == new:
            continue
        old_d = old if isinstance(old, dict) else {}
        new_d = new if isinstance(new, dict) else {}
        kind = "added" if name not in before else "removed" if name not in after else "changed"
        lines = line_rows(str(old_d.get("template", "")), str(new_d.get("template", "")))
        fields = field_changes(
            {k: v for k, v in old_d.items() if k != "template"},
            {k: v for k, v in new_d.items() if k != "template"},
        )
        diffs.append(PromptDiff(name, kind, lines, fields))
    return diffs


def _tools_by_name(tools: Any) -> dict[str, dict[str, Any]]:
    return {
        t["name"]: t
        for t in (tools or [])
        if isinstance(t, dict) and isinstance(t.get("name"), str)
    }


def _tools(before: Any, after: Any) -> list[ToolDiff]:
    old, new = _tools_by_name(before), _tools_by_name(after)
    diffs = []
    for name in [n for n in old if n not in new]:
        diffs.append(ToolDiff(name, "removed", before=old[name]))
    for name in [n for n in new if n not in old]:
        diffs.append(ToolDiff(name, "added", after=new[name]))
    for name in [n for n in new if n in old and old[n] != new[n]]:
        diffs.append(
            ToolDiff(name, "changed", field_changes(old[name], new[name]), old[name], new[name])
        )
    return diffs


def _rule_line(rule: dict[str, Any]) -> str:
    description = rule.get("description")
    return rule_text(rule) + (f" — {description}" if description else "")


def _rules(before: Any, after: Any) -> list[RuleRow]:
    old = [r for r in (before or []) if isinstance(r, dict)]
    new = [r for r in (after or []) if isinstance(r, dict)]
    a, b = [_rule_line(r) for r in old], [_rule_line(r) for r in new]
    # Compared as data, shown as words: two rules that read alike but differ still count.
    keys_a = [json.dumps(r, sort_keys=True) for r in old]
    keys_b = [json.dumps(r, sort_keys=True) for r in new]
    rows: list[RuleRow] = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(
        a=keys_a, b=keys_b, autojunk=False
    ).get_opcodes():
        if tag == "equal":
            rows.extend(
                RuleRow("equal", i + 1, a[i], j + 1, b[j])
                for i, j in zip(range(i1, i2), range(j1, j2), strict=True)
            )
        elif tag == "replace":
            for i, j in zip_longest(range(i1, i2), range(j1, j2)):
                kind = (
                    "changed"
                    if i is not None and j is not None
                    else "removed"
                    if j is None
                    else "added"
                )
                rows.append(
                    RuleRow(
                        kind,
                        None if i is None else i + 1,
                        None if i is None else a[i],
                        None if j is None else j + 1,
                        None if j is None else b[j],
                    )
                )
        elif tag == "delete":
            rows.extend(RuleRow("removed", i + 1, a[i], None, None) for i in range(i1, i2))
        else:
            rows.extend(RuleRow("added", None, None, j + 1, b[j]) for j in range(j1, j2))
    return rows


def bundle_diff(before: dict[str, Any], after: dict[str, Any]) -> BundleDiff:
    old_policies, new_policies = _section(before, "policies"), _section(after, "policies")
    rest = ("$schema", "description")
    return BundleDiff(
        identical=before == after,
        prompts=_prompts(_section(before, "prompts"), _section(after, "prompts")),
        tools=_tools(before.get("tools"), after.get("tools")),
        limits=field_changes(old_policies.get("limits", {}), new_policies.get("limits", {})),
        rules=_rules(old_policies.get("tool_rules"), new_policies.get("tool_rules")),
        policies=field_changes(
            {k: old_policies.get(k) for k in ("input", "output") if k in old_policies},
            {k: new_policies.get(k) for k in ("input", "output") if k in new_policies},
        ),
        model=field_changes(_section(before, "model"), _section(after, "model")),
        retrieval=field_changes(before.get("retrieval"), after.get("retrieval")),
        memory=field_changes(before.get("memory"), after.get("memory")),
        other=field_changes(
            {k: before[k] for k in rest if k in before}, {k: after[k] for k in rest if k in after}
        ),
    )
