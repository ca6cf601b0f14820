"""Bundle regexes are RE2, validated and evaluated alike (issue 8, kind 4, for bundles).

Before, the control plane checked a rule's ``matches`` value, a ``blocked_patterns`` entry and a
tool parameter's JSON-Schema ``pattern`` with Python's backtracking ``re``, and the reference
runtime evaluated them with it: look-around and back-references were accepted although an
RE2-family runtime (Go, Rust, ``re2js``) cannot compile them, and ``(a+)+$`` put exponential
backtracking on the request path. docs/bundle-format.md, "Regular expressions"."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pytest

from apps.bundles.validation import validate_source
from dataplane import regex
from dataplane.guardrails import RequestContext, RequestGuard
from dataplane.simulate.offline import snapshot_for

AGENT = "refund-agent"
CONTEXT = RequestContext(end_user_role="customer", tenant="globex", confidence=0.95)

# A bundle with a regex in each of the four places an author writes one. Single-quoted YAML
# scalars keep backslashes as written.
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
      required: [order_id, note]
      properties:
        order_id: {{type: string, pattern: '{schema_pattern}'}}
        note: {{type: string}}
        meta:
          type: object
          patternProperties:
            '{key_pattern}': {{type: string}}
policies:
  limits: {{max_steps: 8, max_tool_calls: 6, max_total_tokens: 16000,
           max_cost_usd: 0.25, max_retries_per_tool: 2}}
  tool_rules:
    - tool: issue_refund
      action: deny
      when: {{arg: note, op: matches, value: '{rule_pattern}'}}
    - {{tool: issue_refund, action: allow}}
  input:
    blocked_patterns:
      - pattern: '{input_pattern}'
"""
FINE = {
    "schema_pattern": "^A[0-9]{8}$",
    "key_pattern": "^x-",
    "rule_pattern": "urgent",
    "input_pattern": "(?i)ignore previous",
}
POINTERS = {  # placeholder -> JSON pointer of the error
    "schema_pattern": "/tools/0/parameters/properties/order_id/pattern",
    "key_pattern": "/tools/0/parameters/properties/meta/patternProperties/{pattern}",
    "rule_pattern": "/policies/tool_rules/0/when/value",
    "input_pattern": "/policies/input/blocked_patterns/0/pattern",
}


def line_of(placeholder: str) -> int:
    """The 1-based line of the file where the placeholder's pattern is written."""
    lines = BUNDLE.splitlines()
    return next(n for n, text in enumerate(lines, 1) if "{" + placeholder + "}" in text)


NOT_RE2 = [
    "^(?!test-).*$",  # look-ahead (the flag example of issue 8)
    "(?=a)b",  # look-ahead
    "(?<=a)b",  # look-behind
    "(?<!a)b",  # negative look-behind
    r"(a)\1",  # back-reference
    "a++",  # possessive
    "(?>a+)b",  # atomic group
    r"a\Z",  # Python-only end anchor
]


def source(**patterns: str) -> str:
    return BUNDLE.format(**{**FINE, **patterns})


def _guard(bundle: dict[str, Any]) -> RequestGuard:
    return RequestGuard(snapshot_for(AGENT, bundle), agent=AGENT, session_id="s-1", context=CONTEXT)


def _content(**patterns: str) -> dict[str, Any]:
    result = validate_source(source(**patterns))
    assert result.ok, result.errors
    assert result.content is not None
    return copy.deepcopy(result.content)


def _stored(**patterns: str) -> dict[str, Any]:
    """What a version stored before the RE2 check may hold: the patterns, unvalidated."""
    content = _content()
    tool, policies = content["tools"][0], content["policies"]
    if "schema_pattern" in patterns:
        tool["parameters"]["properties"]["order_id"]["pattern"] = patterns["schema_pattern"]
    if "key_pattern" in patterns:
        tool["parameters"]["properties"]["meta"]["patternProperties"] = {
            patterns["key_pattern"]: {"type": "string"}
        }
    if "rule_pattern" in patterns:
        policies["tool_rules"][0]["when"]["value"] = patterns["rule_pattern"]
    if "input_pattern" in patterns:
        policies["input"]["blocked_patterns"][0]["pattern"] = patterns["input_pattern"]
    return content


# -- the control plane refuses what RE2 refuses, located --------------------------------------


@pytest.mark.parametrize("place", sorted(POINTERS))
@pytest.mark.parametrize("pattern", NOT_RE2)
def test_validation__pattern_re2_refuses__located_error(place: str, pattern: str) -> None:
    result = validate_source(source(**{place: pattern}))

    ptr = POINTERS[place].format(pattern=pattern)
    assert not result.ok
    assert list(result.errors) == [ptr], result.errors
    assert "Not an RE2 regular expression" in result.errors[ptr][0]
    assert result.lines[ptr] == line_of(place)


@pytest.mark.parametrize("place", sorted(POINTERS))
@pytest.mark.parametrize(
    "pattern",
    [
        "(a+)+$",  # catastrophic for a backtracking engine, linear for RE2
        r"\p{Lu}[a-z]+",  # Unicode class: RE2 has it, Python's re refused it
        r"^ref-\d+\z",  # RE2's end-of-text anchor: Python's re refused it
        "(?i)(?P<word>refund)",
    ],
)
def test_validation__re2_pattern__accepted(place: str, pattern: str) -> None:
    assert validate_source(source(**{place: pattern})).ok


# -- the runtime evaluates with RE2: linear time, RE2 semantics -------------------------------

LONG = "a" * 100_000 + "!"  # (a+)+$ against this backtracks exponentially in Python's re


def test_runtime__nested_quantifier__every_place_answers_on_a_long_input() -> None:
    guard = _guard(
        _content(
            schema_pattern="^(a+)+$",
            key_pattern="(a+)+$",
            rule_pattern="(a+)+$",
            input_pattern="(a+)+$",
        )
    )

    assert guard.check_input(LONG).allowed  # the blocked pattern does not match
    assert guard.check_input("a" * 100_000).denied  # ... and does here
    # The schema pattern does not match a long non-matching id: refused by the schema check.
    refused = guard.check_tool_call("issue_refund", {"order_id": LONG, "note": "ok"})
    assert refused.denied and refused.check == "schema"
    # The deny rule's pattern does not match the long note: the allow rule decides.
    arguments = {"order_id": "aaaa", "note": LONG, "meta": {LONG: "v"}}
    assert guard.check_tool_call("issue_refund", arguments).allowed
    denied = guard.check_tool_call("issue_refund", {**arguments, "note": "a" * 100_000})
    assert denied.denied and "rule #0" in denied.reason


@pytest.mark.parametrize(
    ("pattern", "text", "matched"),
    [
        ("urgent", "very urgent!", True),  # a search: anywhere in the text
        ("^urgent", "very urgent!", False),
        ("^urgent$", "urgent", True),
        ("b$", "ab\n", False),  # RE2's $ is end of text; Python's re matched before a newline
        ("(?m)b$", "ab\nc", True),
        (r"\d", "\u0663", False),  # RE2's \d is ASCII; Python's re matched an Arabic-Indic 3
        (r"\p{N}", "\u0663", True),
        ("(?i)ÉTÉ", "été", True),
        ("a.c", "a\nc", False),
        ("(?s)a.c", "a\nc", True),
    ],
)
def test_runtime__valid_pattern__same_in_validation_and_every_runtime_place(
    pattern: str, text: str, matched: bool
) -> None:
    escaped = pattern.replace("'", "''")
    content = _content(schema_pattern=escaped, rule_pattern=escaped, input_pattern=escaped)
    assert regex.search(pattern, text) is matched
    guard = _guard(content)

    assert guard.check_input(text).denied is matched
    rule = guard.check_tool_call("issue_refund", {"order_id": text, "note": text})
    assert rule.denied
    assert rule.check == ("rule" if matched else "schema"), rule.reason
    allowed_id = guard.check_tool_call("issue_refund", {"order_id": text, "note": "-"})
    assert allowed_id.allowed is matched


# -- versions stored before the RE2 check: fail closed ----------------------------------------


@pytest.mark.parametrize("pattern", NOT_RE2)
def test_stored_version__deny_rule_pattern_re2_refuses__denies_every_call(pattern: str) -> None:
    guard = _guard(_stored(rule_pattern=pattern))

    for note in ("test-1", "prod-1", "b", "ab", "aa", ""):
        decision = guard.check_tool_call("issue_refund", {"order_id": "A12345678", "note": note})
        assert decision.denied and "rule #0" in decision.reason, (note, decision.reason)
        assert "fail-closed" in decision.reason


@pytest.mark.parametrize("pattern", NOT_RE2)
@pytest.mark.parametrize("negated", [False, True])
def test_stored_version__allow_rule_pattern_re2_refuses__never_allows(
    pattern: str, negated: bool
) -> None:
    bundle = _stored(rule_pattern=pattern)
    rules = bundle["policies"]["tool_rules"]
    when = rules[0]["when"]
    rules[:] = [
        {"tool": "issue_refund", "action": "allow", "when": {"not": when} if negated else when}
    ]
    guard = _guard(bundle)

    for note in ("test-1", "prod-1", "b", "ab", "aa", ""):
        decision = guard.check_tool_call("issue_refund", {"order_id": "A12345678", "note": note})
        assert decision.denied and "default deny" in decision.reason, (note, decision.reason)


@pytest.mark.parametrize("pattern", NOT_RE2)
def test_stored_version__ask_rule_pattern_re2_refuses__asks_every_call(pattern: str) -> None:
    bundle = _stored(rule_pattern=pattern)
    bundle["policies"]["tool_rules"][0]["action"] = "ask"
    guard = _guard(bundle)

    for note in ("test-1", "prod-1", "b"):
        decision = guard.check_tool_call("issue_refund", {"order_id": "A12345678", "note": note})
        assert decision.needs_approval, (note, decision.reason)


@pytest.mark.parametrize("pattern", NOT_RE2)
def test_stored_version__blocked_pattern_re2_refuses__blocks_every_message(pattern: str) -> None:
    guard = _guard(_stored(input_pattern=pattern))

    for text in ("hello", "test-1", "ab", ""):
        decision = guard.check_input(text)
        assert decision.denied and "fail-closed" in decision.reason, text


@pytest.mark.parametrize("pattern", NOT_RE2)
def test_stored_version__schema_pattern_re2_refuses__no_argument_satisfies_it(
    pattern: str,
) -> None:
    guard = _guard(_stored(schema_pattern=pattern, key_pattern=pattern))

    for order_id in ("A12345678", "b", "ab", "test-1"):
        decision = guard.check_tool_call("issue_refund", {"order_id": order_id, "note": "-"})
        assert decision.denied and decision.check == "schema", order_id
    keyed = guard.check_tool_call(
        "issue_refund", {"order_id": "A12345678", "note": "-", "meta": {"b": "v"}}
    )
    assert keyed.denied and keyed.check == "schema"


# -- RE2 missing in the runtime: fail closed, never a silent fallback -------------------------


@pytest.fixture
def without_re2(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(regex, "RE2_AVAILABLE", False)
    regex.compile_pattern.cache_clear()
    yield
    regex.compile_pattern.cache_clear()


@pytest.mark.usefixtures("without_re2")
def test_runtime_without_re2__deny_rule_and_blocked_pattern_fail_closed() -> None:
    bundle = _content(input_pattern="^never-sent$", rule_pattern="^never-sent$")
    bundle["description"] = "compiled without RE2"  # its own digest: not a cached policy
    properties = bundle["tools"][0]["parameters"]["properties"]
    del properties["order_id"]["pattern"], properties["meta"]
    guard = _guard(bundle)

    blocked = guard.check_input("hello")
    assert blocked.denied and "not installed" in blocked.reason
    for note in ("ok", "never-sent", ""):
        decision = guard.check_tool_call("issue_refund", {"order_id": "A12345678", "note": note})
        assert decision.denied and "rule #0" in decision.reason
        assert "not installed" in decision.reason


@pytest.mark.usefixtures("without_re2")
def test_runtime_without_re2__schema_pattern__no_argument_satisfies_it() -> None:
    bundle = _content()
    bundle["description"] = "schema compiled without RE2"

    decision = _guard(bundle).check_tool_call(
        "issue_refund", {"order_id": "A12345678", "note": "-"}
    )
    assert decision.denied and decision.check == "schema"


# -- unevaluatedProperties next to patternProperties: jsonschema matches those with `re` ------


@pytest.mark.parametrize("value", ["false", "{type: string}"])
def test_validation__unevaluated_properties_with_pattern_properties__located_error(
    value: str,
) -> None:
    text = source().replace(
        "        meta:\n          type: object\n",
        f"        meta:\n          type: object\n          unevaluatedProperties: {value}\n",
    )
    result = validate_source(text)

    ptr = "/tools/0/parameters/properties/meta/unevaluatedProperties"
    assert list(result.errors) == [ptr], result.errors
    assert "patternProperties" in result.errors[ptr][0]


def test_stored_version__unevaluated_properties_with_pattern_properties__fails_closed() -> None:
    bundle = _stored(key_pattern="(a+)+$")
    bundle["tools"][0]["parameters"]["properties"]["meta"]["unevaluatedProperties"] = False
    guard = _guard(bundle)

    for meta in ({LONG: "v"}, {"aaa": "v"}, {"other": "v"}):
        decision = guard.check_tool_call(
            "issue_refund", {"order_id": "A12345678", "note": "-", "meta": meta}
        )
        assert decision.denied and decision.check == "schema", meta
    # Where the keyword does not apply (no object there), the call goes on as before.
    assert guard.check_tool_call("issue_refund", {"order_id": "A12345678", "note": "-"}).allowed
