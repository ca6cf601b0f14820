"""A deny rule never silently stops matching because of a type.

Issue 8 (kind 6): YAML 1.1 stored ``value: no`` as ``false``; arguments are validated against the
tool's schema before rules run, so ``refund(region="no")`` was never equal to ``false`` and the
deny rule failed open. Now the file is read as YAML 1.2 (the rule keeps the text the author
wrote) and, for versions stored before, the runtime fails closed on a rule whose comparison
can never be true because of its type."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from apps.bundles.parsing import parse
from apps.bundles.validation import validate_source
from dataplane.guardrails import RequestContext, RequestGuard
from dataplane.policy import compile_policy
from dataplane.simulate.offline import snapshot_for

AGENT = "refund-agent"
CONTEXT = RequestContext(end_user_role="customer", tenant="globex", confidence=0.95)

BUNDLE = """\
model: {{provider: openai, name: gpt-4o-mini}}
prompts:
  system: {{role: system, template: You handle refunds.}}
tools:
  - name: issue_refund
    description: Refund an order.
    risk: write
    parameters:
      type: object
      required: [order_id, region]
      properties:
        order_id: {{type: string}}
        region: {{type: string}}
policies:
  limits: {{max_steps: 8, max_tool_calls: 6, max_total_tokens: 16000,
           max_cost_usd: 0.25, max_retries_per_tool: 2}}
  tool_rules:
    - {{tool: issue_refund, action: deny, when: {{arg: region, op: "==", value: {scalar}}}}}
    - {{tool: issue_refund, action: deny, when: {{arg: region, op: in, value: [{scalar}, XX]}}}}
    - {{tool: issue_refund, action: allow}}
"""


def _guard(bundle: dict[str, Any]) -> RequestGuard:
    return RequestGuard(snapshot_for(AGENT, bundle), agent=AGENT, session_id="s-1", context=CONTEXT)


@pytest.mark.parametrize("scalar", ["no", "NO", "off", "on", "yes", "y", "n", "1_000", "12:30"])
def test_deny_rule__yaml11_scalar_value__parsed_as_written_and_denies(scalar: str) -> None:
    source = BUNDLE.format(scalar=scalar)
    result = validate_source(source)
    assert result.ok, result.errors
    assert result.content is not None
    guard = _guard(result.content)

    denied = guard.check_tool_call("issue_refund", {"order_id": "A1", "region": scalar})
    allowed = guard.check_tool_call("issue_refund", {"order_id": "A1", "region": "SE"})

    assert denied.denied and "rule #0" in denied.reason
    assert allowed.allowed


def _legacy(value: Any) -> dict[str, Any]:
    """What the old YAML 1.1 reader stored for ``value: no``-style rules."""
    bundle = parse(BUNDLE.format(scalar="placeholder"), "yaml")
    bundle["policies"]["tool_rules"][0]["when"]["value"] = value
    bundle["policies"]["tool_rules"][1]["when"]["value"] = [value, "XX"]
    return bundle


@pytest.mark.parametrize("value", [False, True, 750, 1000, 12.5])
def test_deny_rule__stored_value_of_another_type__fails_closed(value: Any) -> None:
    guard = _guard(_legacy(value))

    for region in ("no", "SE", "anything"):
        decision = guard.check_tool_call("issue_refund", {"order_id": "A1", "region": region})
        assert decision.denied, decision
        assert "fail-closed" in decision.reason and "rule #0" in decision.reason


def test_ask_rule__stored_value_of_another_type__asks() -> None:
    bundle = _legacy(False)
    bundle["policies"]["tool_rules"][0]["action"] = "ask"
    bundle["policies"]["tool_rules"][1] = {"tool": "lookup_*", "action": "deny"}

    decision = _guard(bundle).check_tool_call("issue_refund", {"order_id": "A1", "region": "SE"})

    assert decision.needs_approval and "fail-closed" in decision.reason


def test_allow_rule__stored_value_of_another_type__never_allows() -> None:
    bundle = _legacy(False)
    rules = bundle["policies"]["tool_rules"]
    rules[:] = [{**rules[0], "action": "allow"}]

    decision = _guard(bundle).check_tool_call("issue_refund", {"order_id": "A1", "region": "no"})

    assert decision.denied and "default deny" in decision.reason


def test_compile_policy__well_typed_rules__nothing_marked() -> None:
    bundle = parse(BUNDLE.format(scalar="no"), "yaml")
    context_rule = {
        "tool": "issue_refund",
        "action": "deny",
        "when": {"any": [{"context": "confidence", "op": "<", "value": 0.5}]},
    }
    bundle["policies"]["tool_rules"].insert(0, copy.deepcopy(context_rule))

    assert all(not rule.ill_typed for rule in compile_policy(bundle).rules)


def test_compile_policy__context_compared_with_another_type__marked() -> None:
    bundle = parse(BUNDLE.format(scalar="no"), "yaml")
    bundle["policies"]["tool_rules"][0]["when"] = {
        "context": "confidence",
        "op": "==",
        "value": "high",
    }

    rule = compile_policy(bundle).rules[0]

    assert "confidence" in rule.ill_typed["issue_refund"]
