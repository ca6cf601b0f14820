"""Bundle parts in words, for pages and diffs (pure functions)."""

from __future__ import annotations

import json
from typing import Any

_ACTION_WORDS = {"allow": "allow", "deny": "deny", "ask": "ask a human before"}


def _value(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def condition_text(condition: Any, *, nested: bool = False) -> str:
    """``{any: [{arg: amount, op: '>', value: 100}, {context: confidence, op: '<', value: 0.85}]}``
    -> ``amount > 100 or context.confidence < 0.85``."""
    if not isinstance(condition, dict):
        return _value(condition)
    for key, joiner in (("all", " and "), ("any", " or ")):
        if key in condition and isinstance(condition[key], list):
            text = joiner.join(condition_text(c, nested=True) for c in condition[key])
            return f"({text})" if nested and len(condition[key]) > 1 else text
    if "not" in condition:
        return f"not ({condition_text(condition['not'])})"
    subject = condition.get("arg") if "arg" in condition else f"context.{condition.get('context')}"
    op = condition.get("op")
    if op == "exists":
        return f"{subject} is present"
    if op == "matches":
        return f"{subject} matches /{condition.get('value')}/"
    if op in ("in", "not_in"):
        return f"{subject} {'in' if op == 'in' else 'not in'} {_value(condition.get('value'))}"
    return f"{subject} {op} {_value(condition.get('value'))}"


def rule_text(rule: dict[str, Any]) -> str:
    """``ask a human before issue_refund when amount > 100 or context.confidence < 0.85``."""
    action = _ACTION_WORDS.get(str(rule.get("action")), str(rule.get("action")))
    text = f"{action} {rule.get('tool')}"
    if "when" in rule:
        text += f" when {condition_text(rule['when'])}"
    return text
