"""Validation refuses what would break a runtime, naming every problem by JSON pointer; the
API answers 400 with them and stores nothing."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from apps.bundles.models import BundleVersion
from apps.bundles.schema import MAX_BUNDLE_BYTES
from apps.bundles.validation import validate_content, validate_source
from apps.tenancy.models import Agent

from ..conftest import api_as
from .conftest import as_yaml, demo_content, push, state

pytestmark = pytest.mark.django_db

Mutation = Callable[[dict[str, Any]], Any]


def _set(path: list[Any], value: Any) -> Mutation:
    def mutate(content: dict[str, Any]) -> None:
        node = content
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value

    return mutate


def _delete(path: list[Any]) -> Mutation:
    def mutate(content: dict[str, Any]) -> None:
        node = content
        for key in path[:-1]:
            node = node[key]
        del node[path[-1]]

    return mutate


def _append_tool_copy(content: dict[str, Any]) -> None:
    content["tools"].append(dict(content["tools"][0]))


def _nest(depth: int) -> Any:
    value: Any = "deep"
    for _ in range(depth):
        value = [value]
    return value


# (case, mutation, pointer that must be in errors, words the message must contain)
BAD_CONTENT: list[tuple[str, Mutation, str, str]] = [
    ("unknown top-level key", _set(["colour"], "red"), "/colour", "Unknown key 'colour'"),
    ("unknown tool key", _set(["tools", 0, "owner"], "x"), "/tools/0/owner", "Unknown key"),
    (
        "unknown limit key",
        _set(["policies", "limits", "max_fun"], 1),
        "/policies/limits/max_fun",
        "Unknown key",
    ),
    (
        "tool parameters not a JSON Schema",
        _set(["tools", 1, "parameters", "properties", "amount", "type"], "numbr"),
        "/tools/1/parameters/properties/amount/type",
        "Not a valid JSON Schema",
    ),
    (
        "tool parameters with a broken regex",
        _set(["tools", 0, "parameters", "properties", "order_id", "pattern"], "(["),
        "/tools/0/parameters/properties/order_id/pattern",
        "Not an RE2 regular expression",
    ),
    (
        "tool parameters not an object schema",
        _set(["tools", 0, "parameters"], {"type": "string"}),
        "/tools/0/parameters/type",
        "must describe an object",
    ),
    (
        "tool parameters with a remote $ref",
        _set(["tools", 0, "parameters", "properties", "x"], {"$ref": "https://evil.test/s.json"}),
        "/tools/0/parameters/properties/x/$ref",
        "Only references inside this schema",
    ),
    (
        "tool parameters with a dangling $ref",
        _set(["tools", 0, "parameters", "properties", "x"], {"$ref": "#/$defs/nope"}),
        "/tools/0/parameters/properties/x/$ref",
        "points at nothing",
    ),
    (
        "duplicate tool name",
        _append_tool_copy,
        "/tools/2/name",
        "Duplicate tool name 'lookup_order'",
    ),
    (
        "malformed tool name",
        _set(["tools", 0, "name"], "look up order!"),
        "/tools/0/name",
        "Tool names are",
    ),
    ("tool name too long", _set(["tools", 0, "name"], "t" * 65), "/tools/0/name", "Tool names are"),
    (
        "control character in a tool name",
        _set(["tools", 0, "name"], "look\x07up"),
        "/tools/0/name",
        "U+0007",
    ),
    (
        "bidi override in a prompt name",
        _set(["prompts", "sys\u202etem"], {"role": "user", "template": "hi"}),
        "/prompts/sys\u202etem",
        "U+202E",
    ),
    (
        "newline in a variable name",
        _set(["prompts", "system", "variables", "re\nquest"], {"source": "user"}),
        "/prompts/system/variables/re\nquest",
        "U+000A",
    ),
    (
        "prompt uses an undeclared variable",
        _set(["prompts", "system", "template"], "Refund {{ order }} now."),
        "/prompts/system/template",
        "undeclared variable 'order'",
    ),
    (
        "malformed placeholder",
        _set(["prompts", "system", "template"], "<r>{{ request }}</r> {{ 1st }}"),
        "/prompts/system/template",
        "Malformed placeholder",
    ),
    (
        "unclosed placeholder",
        _set(["prompts", "system", "template"], "<r>{{ request }}</r> {{ oops"),
        "/prompts/system/template",
        "without a closing",
    ),
    (
        "zero max_steps",
        _set(["policies", "limits", "max_steps"], 0),
        "/policies/limits/max_steps",
        "positive",
    ),
    (
        "negative max_tool_calls",
        _set(["policies", "limits", "max_tool_calls"], -3),
        "/policies/limits/max_tool_calls",
        "positive",
    ),
    (
        "zero max_total_tokens",
        _set(["policies", "limits", "max_total_tokens"], 0),
        "/policies/limits/max_total_tokens",
        "positive",
    ),
    (
        "zero max_cost_usd",
        _set(["policies", "limits", "max_cost_usd"], 0),
        "/policies/limits/max_cost_usd",
        "positive",
    ),
    (
        "negative retries",
        _set(["policies", "limits", "max_retries_per_tool"], -1),
        "/policies/limits/max_retries_per_tool",
        "at least 0",
    ),
    ("zero timeout", _set(["tools", 0, "timeout_s"], 0), "/tools/0/timeout_s", "positive"),
    (
        "zero rate limit",
        _set(["tools", 0, "rate_limit"], {"max_calls": 0, "per_s": 60}),
        "/tools/0/rate_limit/max_calls",
        "positive",
    ),
    (
        "missing limit",
        _delete(["policies", "limits", "max_cost_usd"]),
        "/policies/limits/max_cost_usd",
        "Required",
    ),
    ("missing tool risk", _delete(["tools", 1, "risk"]), "/tools/1/risk", "Required"),
    (
        "unknown risk",
        _set(["tools", 1, "risk"], "spicy"),
        "/tools/1/risk",
        "Must be one of read, write, critical",
    ),
    (
        "wrong type",
        _set(["tools", 1, "requires_approval"], "yes please"),
        "/tools/1/requires_approval",
        "Expected true or false",
    ),
    (
        "condition on an argument the tool lacks",
        _set(["policies", "tool_rules", 2, "when"], {"arg": "amont", "op": ">", "value": 100}),
        "/policies/tool_rules/2/when/arg",
        "'amont' is not a parameter of issue_refund",
    ),
    (
        "numeric comparison with text",
        _set(["policies", "tool_rules", 2, "when"], {"arg": "amount", "op": ">", "value": "100"}),
        "/policies/tool_rules/2/when/value",
        "Must be a number",
    ),
    (
        "condition with two subjects",
        _set(
            ["policies", "tool_rules", 2, "when"],
            {"arg": "amount", "context": "tenant", "op": "exists"},
        ),
        "/policies/tool_rules/2/when",
        "exactly one subject",
    ),
    (
        "confidence out of range",
        _set(
            ["policies", "tool_rules", 2, "when"], {"context": "confidence", "op": "<", "value": 85}
        ),
        "/policies/tool_rules/2/when/value",
        "between 0 and 1",
    ),
    (
        "unknown operator",
        _set(["policies", "tool_rules", 2, "when"], {"arg": "amount", "op": "=~", "value": 1}),
        "/policies/tool_rules/2/when/op",
        "Must be one of",
    ),
    (
        "nested condition problem",
        _set(
            ["policies", "tool_rules", 2, "when"],
            {
                "any": [
                    {"arg": "amount", "op": ">", "value": 1},
                    {"context": "mood", "op": "exists"},
                ]
            },
        ),
        "/policies/tool_rules/2/when/any/1/context",
        "Must be one of",
    ),
    (
        "bad regex in a condition",
        _set(
            ["policies", "tool_rules", 2, "when"], {"arg": "reason", "op": "matches", "value": "(("}
        ),
        "/policies/tool_rules/2/when/value",
        "regular expression",
    ),
    (
        "unknown rule action",
        _set(["policies", "tool_rules", 0, "action"], "maybe"),
        "/policies/tool_rules/0/action",
        "allow, deny, ask",
    ),
    (
        "bad blocked pattern",
        _set(["policies", "input"], {"blocked_patterns": [{"pattern": "(unclosed"}]}),
        "/policies/input/blocked_patterns/0/pattern",
        "regular expression",
    ),
    (
        "unknown redaction class",
        _set(["policies", "output", "redact"], ["email", "souls"]),
        "/policies/output/redact/1",
        "Must be one of",
    ),
    (
        "sensitive arg the tool lacks",
        _set(["tools", 1, "sensitive_args"], ["iban"]),
        "/tools/1/sensitive_args/0",
        "'iban' is not a parameter",
    ),
    (
        "memory writer that is no tool",
        _set(["memory"], {"ttl_s": 60, "max_entries": 5, "writers": {"tools": ["ghost"]}}),
        "/memory/writers/tools/0",
        "No tool named 'ghost'",
    ),
    (
        "chunk overlap not below size",
        _set(
            ["retrieval"],
            {
                "index": "kb",
                "embedding_model": "e",
                "chunking": {"strategy": "fixed", "size": 100, "overlap": 100},
            },
        ),
        "/retrieval/chunking/overlap",
        "smaller than the chunk size",
    ),
    (
        "nested deeper than sane",
        _set(["description"], _nest(40)),
        "/description" + "/0" * 31,
        "Nested deeper than 32",
    ),
    ("no prompts", _set(["prompts"], {}), "/prompts", "Must not be empty"),
    # secret scanning: refused, naming where
    (
        "OpenAI-style key in a prompt",
        _set(
            ["prompts", "system", "template"],
            "<r>{{ request }}</r> key sk-proj-4f8a9b0c1d2e3f4a5b6c7d8e9f0a",
        ),
        "/prompts/system/template",
        "API key",
    ),
    (
        "AWS key in a description",
        _set(["tools", 0, "description"], "Uses AKIAIOSFODNN7EXAMPLE to read S3."),
        "/tools/0/description",
        "AWS access key",
    ),
    (
        "GitHub token",
        _set(["description"], "deploy with ghp_" + "a1B2" * 10),
        "/description",
        "GitHub token",
    ),
    (
        "private key block",
        _set(["description"], "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXk=\n"),
        "/description",
        "private key",
    ),
    (
        "connection string with a password",
        _set(
            ["prompts", "system", "template"],
            "<r>{{ request }}</r> Orders are in postgres://app:s3cr3t-pw@db.internal:5432/orders",
        ),
        "/prompts/system/template",
        "connection string",
    ),
    (
        "bearer token",
        _set(
            ["tools", 0, "description"],
            "Send Authorization: Bearer eyJhbGciOiJIUzI1NiJ9abcdefghijkl",
        ),
        "/tools/0/description",
        "bearer token",
    ),
    (
        "credential in model parameters",
        _set(["model", "parameters", "api_key"], "not-a-placeholder-value"),
        "/model/parameters/api_key",
        "credential",
    ),
    (
        "password assignment in a prompt",
        _set(
            ["prompts", "system", "template"], "<r>{{ request }}</r> admin password: hunter2hunter2"
        ),
        "/prompts/system/template",
        "password or key",
    ),
]


@pytest.mark.parametrize(
    ("case", "mutate", "pointer", "words"), BAD_CONTENT, ids=[c[0] for c in BAD_CONTENT]
)
def test_push__invalid_bundle__400_with_pointer_and_nothing_stored(
    operator,
    agent: Agent,
    case: str,
    mutate: Mutation,
    pointer: str,
    words: str,  # type: ignore[no-untyped-def]
) -> None:
    content = demo_content()
    mutate(content)
    before = state()

    response = push(api_as(operator), agent, json.dumps(content), content_type="application/json")

    assert response.status_code == 400, response.content
    body = response.json()
    assert body["detail"]
    assert pointer in body["errors"], body["errors"]
    assert any(words in message for message in body["errors"][pointer]), body["errors"][pointer]
    assert "warnings" in body
    assert state() == before


BAD_FILES: list[tuple[str, str | bytes, str, str]] = [
    ("YAML syntax error", "model: {provider: openai\nprompts: [", "", "Line"),
    (
        "duplicate YAML key",
        "model: {provider: openai, name: a}\nmodel: {provider: openai, name: b}\n",
        "",
        "twice",
    ),
    ("duplicate JSON key", '{"model": {}, "model": {}}', "", "twice"),
    ("two YAML documents", "a: 1\n---\nb: 2\n", "", "exactly one YAML document"),
    ("empty file", "", "", "empty"),
    ("not a mapping", "- just\n- a list\n", "", "mapping at the top level"),
    ("not UTF-8", b"model: \xff\xfe\n", "", "not UTF-8"),
    ("NaN in JSON", '{"description": NaN}', "", "NaN"),
    ("YAML date", "description: 2024-01-01\nfoo: !!binary aGVsbG8=\n", "/foo", "no JSON form"),
    ("non-text key", "1: one\n", "/1", "Keys must be text"),
    ("JSON nesting that breaks the parser", "[" * 100_000 + "]" * 100_000, "", "Nested deeper"),
    (
        "YAML nesting past the limit",
        "description: " + "[" * 40 + "]" * 40,
        "/description" + "/0" * 31,
        "Nested deeper",
    ),
    (
        "alias bomb",
        "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
        + "".join(
            f"{n}: &{n} [{', '.join([f'*{p}'] * 10)}]\n"
            for p, n in zip("abcd", "bcde", strict=True)
        )
        + "f: [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\n",
        "",
        "more than",
    ),
]


@pytest.mark.parametrize(
    ("case", "body", "pointer", "words"), BAD_FILES, ids=[c[0] for c in BAD_FILES]
)
def test_push__unreadable_file__400_with_pointer_and_nothing_stored(
    operator,
    agent: Agent,
    case: str,
    body: str | bytes,
    pointer: str,
    words: str,  # type: ignore[no-untyped-def]
) -> None:
    before = state()
    response = push(
        api_as(operator),
        agent,
        body,
        content_type="application/json"
        if isinstance(body, str) and body[:2] in ('{"', "[[")
        else "application/yaml",
    )
    assert response.status_code == 400, response.content
    errors = response.json()["errors"]
    assert pointer in errors, errors
    assert any(words in message for message in errors[pointer]), errors
    assert state() == before


def test_push__over_one_mebibyte__400_and_nothing_stored(operator, agent: Agent) -> None:  # type: ignore[no-untyped-def]
    content = demo_content()
    content["description"] = "x" * MAX_BUNDLE_BYTES
    before = state()
    response = push(api_as(operator), agent, json.dumps(content), content_type="application/json")
    assert response.status_code == 400
    assert "1 MiB" in response.json()["errors"][""][0]
    assert state() == before


def test_push__without_message__400_on_message_and_nothing_stored(operator, agent: Agent) -> None:  # type: ignore[no-untyped-def]
    before = state()
    response = push(api_as(operator), agent, as_yaml(demo_content()), message=None)
    assert response.status_code == 400
    assert "message" in response.json()["errors"]
    assert state() == before


def test_push__form_encoded_body__415(operator, agent: Agent) -> None:  # type: ignore[no-untyped-def]
    response = api_as(operator).post(f"/api/v1/agents/{agent.pk}/bundles/?message=x", {"a": "b"})
    assert response.status_code == 415
    assert BundleVersion.objects.count() == 0


def test_push__every_problem_reported_at_once(operator, agent: Agent) -> None:  # type: ignore[no-untyped-def]
    content = demo_content()
    content["colour"] = "red"
    content["policies"]["limits"]["max_steps"] = 0
    content["tools"][0]["name"] = "bad name"
    response = push(api_as(operator), agent, as_yaml(content))
    assert response.status_code == 400
    assert {"/colour", "/policies/limits/max_steps", "/tools/0/name"} <= set(
        response.json()["errors"]
    )


# --------------------------------------------------------------------------- warnings


WARNINGS: list[tuple[str, Mutation, str, str]] = [
    (
        "declared but unused variable",
        _set(["prompts", "system", "variables", "extra"], {"source": "system"}),
        "/prompts/system/variables/extra",
        "not used",
    ),
    (
        "rule that matches no tool",
        _set(["policies", "tool_rules", 3, "tool"], "refund_*"),
        "/policies/tool_rules/3/tool",
        "Matches no tool",
    ),
    (
        "user variable in a system prompt without delimiters",
        _set(["prompts", "system", "template"], "Handle this: {{ request }}"),
        "/prompts/system/template",
        "without delimiters",
    ),
    (
        "rule shadowed by an earlier catch-all",
        lambda c: c["policies"]["tool_rules"].insert(0, {"tool": "*", "action": "deny"}),
        "/policies/tool_rules/1",
        "Never applies",
    ),
    (
        "tool no rule matches",
        lambda c: c["policies"]["tool_rules"].pop(0),
        "/tools/0/name",
        "default deny",
    ),
    (
        "critical tool allowed without approval",
        lambda c: (
            c["tools"][1].update(requires_approval=False),
            c["policies"]["tool_rules"].append({"tool": "issue_refund", "action": "allow"}),
        ),
        "/tools/1/requires_approval",
        "without a human",
    ),
    (
        "user-written memory without provenance",
        _set(
            ["memory"],
            {"ttl_s": 60, "max_entries": 5, "writers": {"user": True}, "require_provenance": False},
        ),
        "/memory/require_provenance",
        "provenance",
    ),
    (
        "invisible character in a prompt",
        _set(["prompts", "system", "template"], "<r>{{ request }}</r> Be nice.\u200b"),
        "/prompts/system/template",
        "U+200B",
    ),
]


@pytest.mark.parametrize(
    ("case", "mutate", "pointer", "words"), WARNINGS, ids=[c[0] for c in WARNINGS]
)
def test_validate__questionable_bundle__warns_without_refusing(
    case: str, mutate: Mutation, pointer: str, words: str
) -> None:
    content = demo_content()
    mutate(content)
    result = validate_content(content)
    assert result.ok, result.errors
    assert pointer in result.warnings, result.warnings
    assert any(words in message for message in result.warnings[pointer])


def test_push__warnings__stored_with_the_version_and_returned(operator, agent: Agent) -> None:  # type: ignore[no-untyped-def]
    content = demo_content()
    content["prompts"]["system"]["variables"]["extra"] = {"source": "system"}
    response = push(api_as(operator), agent, as_yaml(content))
    assert response.status_code == 201
    assert "/prompts/system/variables/extra" in response.json()["warnings"]
    assert "/prompts/system/variables/extra" in BundleVersion.objects.get().warnings


@pytest.mark.parametrize(
    "text",
    [
        "Our task-force-handbook-2024-edition covers this.",
        "We use sk-learn-style-pipelines-everywhere for scoring.",
        "Connect with postgres://app:${DB_PASSWORD}@db.internal/orders",
        "The password: is never shared.",
        "Send Authorization: Bearer <token>",
    ],
)
def test_secret_scan__ordinary_text__not_refused(text: str) -> None:
    content = demo_content()
    content["description"] = text
    assert validate_content(content).ok


@pytest.mark.parametrize("name", ["support-bot-v1", "support-bot-v2", "refund-agent-v1"])
def test_demo_bundles__valid_without_warnings(name: str) -> None:
    from .conftest import demo_text

    result = validate_source(demo_text(name))
    assert result.ok, result.errors
    assert result.warnings == {}
