"""A bundle's policies compiled for fast checks: tools, argument validators, ordered rules.

Compiled once per bundle digest and shared by every request served from that version, so an
agent loop pays for JSON-Schema compilation once per deploy, not once per tool call. The format
is docs/bundle-format.md (``apps/bundles/schema.py`` is its machine-readable form)."""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from fnmatch import fnmatchcase
from typing import Any

from jsonschema import Draft202012Validator

from .regex import RE2Draft202012Validator, regex_problem, search

LIMIT_KEYS = (
    "max_steps",
    "max_tool_calls",
    "max_total_tokens",
    "max_cost_usd",
    "max_retries_per_tool",
)
CONTEXT_KEYS = ("end_user_role", "tenant", "environment", "confidence")

_MISSING = object()


@dataclass(frozen=True)
class Tool:
    name: str
    risk: str  # read | write | critical
    requires_approval: bool
    validator: Any  # RE2Draft202012Validator: JSON Schema 2020-12, patterns matched by RE2
    spec: Mapping[str, Any]
    rate_limit: tuple[int, float] | None = None  # (max_calls, per_s), per runtime

    @property
    def is_read(self) -> bool:
        return self.risk == "read"


@dataclass(frozen=True)
class Limits:
    max_steps: int | None = None
    max_tool_calls: int | None = None
    max_total_tokens: int | None = None
    max_cost_usd: Decimal | None = None
    max_retries_per_tool: int | None = None


@dataclass(frozen=True)
class Rule:
    index: int
    tool: str  # a glob
    action: str  # allow | deny | ask
    when: Mapping[str, Any] | None
    description: str
    # Comparisons that can never be true for this tool because the value is not of the type
    # the tool declares for the argument (e.g. ``false`` against a string, what YAML 1.1 made
    # of ``value: no``), by tool name. A deny or ask rule with one fails closed: it applies
    # whatever the condition says, rather than silently never applying.
    ill_typed: Mapping[str, str] = field(default_factory=dict)
    # The first ``matches`` pattern in ``when`` that RE2 cannot compile (a version stored
    # before the control plane checked with RE2, or RE2 missing here), described; None when
    # all compile. A deny or ask rule with one applies to every call of its tools (fail
    # closed); an allow rule with one never allows.
    broken_pattern: str | None = None

    def label(self) -> str:
        what = f": {self.description}" if self.description else ""
        return f"rule #{self.index} ({self.action} {self.tool}){what}"

    def applies(self, tool: str, arguments: Mapping[str, Any], context: Mapping[str, Any]) -> bool:
        """Whether the rule matches this call. An ill-typed condition on a deny or ask rule
        counts as matched (fail closed); on an allow rule it is evaluated, and never allows."""
        if not fnmatchcase(tool, self.tool):
            return False
        if self.when is None:
            return True
        if self.broken_pattern is not None:
            return self.action != "allow"
        if tool in self.ill_typed and self.action != "allow":
            return True
        try:
            return evaluate(self.when, arguments, context)
        except UncompilablePattern:
            # Checked at evaluation too, not only at compile time: under a ``not`` a pattern
            # that matches nothing would turn into "matches everything" for an allow rule.
            return self.action != "allow"


@dataclass(frozen=True)
class Policy:
    tools: Mapping[str, Tool]
    rules: tuple[Rule, ...]
    limits: Limits
    max_input_chars: int | None
    # (pattern, description) per input ``blocked_patterns`` entry, in order; RE2 syntax,
    # searched anywhere in the message (dataplane/regex.py).
    blocked_patterns: tuple[tuple[str, str], ...]

    def first_matching_rule(
        self, tool: str, arguments: Mapping[str, Any], context: Mapping[str, Any]
    ) -> Rule | None:
        """Ordered rules, first match wins; None means no rule matched (default deny)."""
        for rule in self.rules:
            if rule.applies(tool, arguments, context):
                return rule
        return None


def _tool(spec: Mapping[str, Any]) -> Tool:
    parameters = spec.get("parameters") or {"type": "object"}
    limit = spec.get("rate_limit")
    rate_limit = None
    if isinstance(limit, Mapping) and limit.get("max_calls") and limit.get("per_s"):
        rate_limit = (int(limit["max_calls"]), float(limit["per_s"]))
    return Tool(
        name=str(spec["name"]),
        risk=str(spec.get("risk") or "critical"),  # unknown risk is treated as the worst
        requires_approval=bool(spec.get("requires_approval", False)),
        validator=RE2Draft202012Validator(parameters),
        spec=spec,
        rate_limit=rate_limit,
    )


def _limits(raw: Mapping[str, Any]) -> Limits:
    def integer(key: str) -> int | None:
        value = raw.get(key)
        return (
            int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
        )

    cost = raw.get("max_cost_usd")
    return Limits(
        max_steps=integer("max_steps"),
        max_tool_calls=integer("max_tool_calls"),
        max_total_tokens=integer("max_total_tokens"),
        # Money is Decimal; str() first so 0.1 stays 0.1 instead of its binary approximation.
        max_cost_usd=Decimal(str(cost))
        if isinstance(cost, int | float) and not isinstance(cost, bool)
        else None,
        max_retries_per_tool=integer("max_retries_per_tool"),
    )


def compile_policy(bundle: Mapping[str, Any]) -> Policy:
    tools = {}
    for spec in bundle.get("tools") or []:
        if isinstance(spec, Mapping) and isinstance(spec.get("name"), str):
            tools[spec["name"]] = _tool(spec)
    policies = bundle.get("policies") or {}
    rules = tuple(
        Rule(
            index=index,
            tool=str(raw.get("tool", "")),
            action=str(raw.get("action", "deny")),
            when=raw.get("when"),
            description=str(raw.get("description") or ""),
            ill_typed=_ill_typed(str(raw.get("tool", "")), raw.get("when"), tools),
            broken_pattern=_broken_pattern(raw.get("when")),
        )
        for index, raw in enumerate(policies.get("tool_rules") or [])
        if isinstance(raw, Mapping)
    )
    input_policy = policies.get("input") or {}
    blocked = tuple(
        (str(entry["pattern"]), str(entry.get("description") or entry["pattern"]))
        for entry in input_policy.get("blocked_patterns") or []
        if isinstance(entry, Mapping) and entry.get("pattern")
    )
    max_chars = input_policy.get("max_chars")
    return Policy(
        tools=tools,
        rules=rules,
        limits=_limits(policies.get("limits") or {}),
        max_input_chars=int(max_chars) if isinstance(max_chars, int) else None,
        blocked_patterns=blocked,
    )


class _PolicyCache:
    """Compiled policies by bundle digest; bounded, since a long-lived runtime sees many
    deploys but serves at most a stable and a candidate per agent at a time."""

    def __init__(self, size: int = 64) -> None:
        self._size = size
        self._entries: OrderedDict[str, Policy] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, digest: str, bundle: Mapping[str, Any]) -> Policy:
        with self._lock:
            policy = self._entries.get(digest)
            if policy is not None:
                self._entries.move_to_end(digest)
                return policy
        policy = compile_policy(bundle)
        with self._lock:
            self._entries[digest] = policy
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)
        return policy


policy_cache = _PolicyCache()


# -- types of rule values -----------------------------------------------------------------------

# The context facts and their JSON types (docs/bundle-format.md).
_CONTEXT_TYPES = {
    "end_user_role": "string",
    "tenant": "string",
    "environment": "string",
    "confidence": "number",
}


def _declared_types(parameters: Any, path: str) -> list[str] | None:
    """The JSON-Schema types a tool declares for the argument at dotted ``path``; None when
    it declares none there (any value may come)."""
    schema = parameters
    for part in path.split("."):
        properties = schema.get("properties") if isinstance(schema, Mapping) else None
        if not isinstance(properties, Mapping) or part not in properties:
            return None
        schema = properties[part]
    declared = schema.get("type") if isinstance(schema, Mapping) else None
    if isinstance(declared, str):
        return [declared]
    if isinstance(declared, list) and all(isinstance(t, str) for t in declared):
        return list(declared)
    return None


def _fits(value: Any, types: list[str]) -> bool:
    return bool(Draft202012Validator({"type": types}).is_valid(value))


def _comparison_problem(comparison: Mapping[str, Any], types: list[str]) -> str | None:
    """What makes the comparison never true for a subject of ``types``, or None."""
    op, value = comparison.get("op"), comparison.get("value")
    declared = "/".join(types)
    if op in _NUMERIC and not ({"number", "integer"} & set(types)):
        return f"({declared}) with '{op}', which only numbers satisfy"
    if op == "matches" and "string" not in types:
        return f"({declared}) with 'matches', which only text satisfies"
    values = value if op in ("in", "not_in") and isinstance(value, list) else [value]
    if (
        op in ("==", "in")
        and values
        and all(
            v is not None and not isinstance(v, Mapping | list) and not _fits(v, types)
            for v in values
        )
    ):
        return f"({declared}) with {json.dumps(value)}, which no valid argument equals"
    return None


def _ill_typed(pattern: str, when: Any, tools: Mapping[str, Tool]) -> dict[str, str]:
    """Per tool the rule covers: the first comparison in ``when`` that can never be true
    because of a type (the control plane refuses such bundles; older versions may have one)."""
    found: dict[str, str] = {}
    if not isinstance(when, Mapping):
        return found
    for name, spec in tools.items():
        if not fnmatchcase(name, pattern):
            continue
        for comparison in _leaf_comparisons(when):
            if "context" in comparison:
                known = _CONTEXT_TYPES.get(str(comparison.get("context")))
                types = [known] if known else None
                subject = f"context {comparison.get('context')}"
            else:
                types = _declared_types(spec.spec.get("parameters"), str(comparison.get("arg")))
                subject = f"argument {comparison.get('arg')!r}"
            problem = _comparison_problem(comparison, types) if types else None
            if problem is not None:
                found[name] = f"{subject} {problem}"
                break
    return found


def _broken_pattern(when: Any) -> str | None:
    """The first ``matches`` value in ``when`` RE2 cannot compile, with why; None if none."""
    if not isinstance(when, Mapping):
        return None
    for comparison in _leaf_comparisons(when):
        value = comparison.get("value")
        if comparison.get("op") == "matches" and isinstance(value, str):
            problem = regex_problem(value)
            if problem is not None:
                return f"pattern {value!r} cannot be compiled by RE2 ({problem})"
    return None


def _leaf_comparisons(condition: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    for key in ("all", "any"):
        if key in condition:
            items = condition[key] if isinstance(condition[key], list) else []
            return [
                leaf
                for item in items
                if isinstance(item, Mapping)
                for leaf in _leaf_comparisons(item)
            ]
    if "not" in condition:
        inner = condition["not"]
        return _leaf_comparisons(inner) if isinstance(inner, Mapping) else []
    return [condition]


# -- conditions -------------------------------------------------------------------------------


class UncompilablePattern(ValueError):
    """A ``matches`` pattern RE2 cannot compile (or RE2 is missing): the condition has no
    truth value; Rule.applies turns this into fail-closed."""


def _resolve(arguments: Mapping[str, Any], path: str) -> Any:
    node: Any = arguments
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return _MISSING
        node = node[part]
    return node


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float | Decimal) and not isinstance(value, bool)


def _equal(left: Any, right: Any) -> bool:
    # JSON equality, not Python's: true is not 1, and 1 equals 1.0.
    if isinstance(left, bool) or isinstance(right, bool):
        return isinstance(left, bool) and isinstance(right, bool) and left == right
    if _is_number(left) and _is_number(right):
        return Decimal(str(left)) == Decimal(str(right))
    return type(left) is type(right) and bool(left == right)


_NUMERIC = {
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
}


def _compare(subject: Any, op: str, value: Any) -> bool:
    if subject is _MISSING:
        # Missing is false for every operator, `!=` and `not_in` included, so a rule never
        # fires (or stops firing) because the runtime lacked a fact.
        return False
    if op == "exists":
        return True
    if op == "==":
        return _equal(subject, value)
    if op == "!=":
        return not _equal(subject, value)
    if op in _NUMERIC:
        if not (_is_number(subject) and _is_number(value)):
            return False
        return bool(_NUMERIC[op](Decimal(str(subject)), Decimal(str(value))))
    if op in ("in", "not_in"):
        found = isinstance(value, Sequence) and any(_equal(subject, item) for item in value)
        return found if op == "in" else not found
    if op == "matches":
        # RE2, searched anywhere in the text (docs/bundle-format.md, "Regular expressions").
        if not (isinstance(subject, str) and isinstance(value, str)):
            return False
        matched = search(value, subject)
        if matched is None:
            raise UncompilablePattern(value)
        return matched
    return False


def evaluate(
    condition: Mapping[str, Any], arguments: Mapping[str, Any], context: Mapping[str, Any]
) -> bool:
    """Whether a rule's ``when`` holds for these arguments and this request context.

    Raises UncompilablePattern for a ``matches`` pattern RE2 cannot compile."""
    if "all" in condition:
        return all(evaluate(item, arguments, context) for item in condition["all"])
    if "any" in condition:
        return any(evaluate(item, arguments, context) for item in condition["any"])
    if "not" in condition:
        return not evaluate(condition["not"], arguments, context)
    if "arg" in condition:
        subject = _resolve(arguments, str(condition["arg"]))
    else:
        key = str(condition.get("context"))
        subject = context.get(key, _MISSING) if key in CONTEXT_KEYS else _MISSING
    # Null is missing (docs/bundle-format.md): a comparison on it is false, whatever the op.
    if subject is None:
        subject = _MISSING
    return _compare(subject, str(condition.get("op")), condition.get("value"))
