"""Bundle YAML is read as YAML 1.2 core schema: YAML 1.1's implicit typing (``no`` -> false,
``1_000`` -> 1000, ``12:30`` -> 750 ...) never changes a value behind the author's back; each
scalar a YAML 1.1 tool reads otherwise is warned about at its pointer and line; and untyped
positions (rule values, ``in`` entries, enum/const/default) are checked against the declared
type, so a deny rule can never silently stop matching."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client
from ruamel.yaml import YAML

from apps.bundles.models import BundleVersion
from apps.bundles.parsing import ambiguous_scalars, parse, pointer_lines, to_yaml, yaml11_value
from apps.bundles.validation import validate_content, validate_source
from apps.tenancy.models import Agent

from ..conftest import api_as
from .conftest import push, state

# (as written unquoted, what YAML 1.2 core reads, what YAML 1.1 read)
YAML11_SCALARS: list[tuple[str, Any, Any]] = [
    ("no", "no", False),
    ("NO", "NO", False),
    ("yes", "yes", True),
    ("on", "on", True),
    ("off", "off", False),
    ("y", "y", True),
    ("n", "n", False),
    ("0o14", 12, "0o14"),
    ("014", 14, 12),
    ("1_000", "1_000", 1000),
    ("12:30", "12:30", 750),
    ("1:20:30", "1:20:30", 4830),
    ("0b101", "0b101", 5),
    ("1e3", 1000.0, "1e3"),
    ("+.5", 0.5, "+.5"),
]


@pytest.mark.parametrize(("written", "core", "yaml11"), YAML11_SCALARS)
def test_parse__yaml11_scalar__core_schema_value_and_a_located_warning(
    written: str, core: Any, yaml11: Any
) -> None:
    text = f"a: 1\nb:\n  value: {written}\n"

    data = parse(text, "yaml")
    found = ambiguous_scalars(text)

    assert data["b"]["value"] == core and type(data["b"]["value"]) is type(core)
    assert yaml11_value(written) == yaml11 and type(yaml11_value(written)) is type(yaml11)
    line, message = found["/b/value"]
    assert line == 3
    assert written in message and "YAML 1.1" in message
    assert list(found) == ["/b/value"]


@pytest.mark.parametrize(
    "text",
    [
        "a: 'no'\n",
        'a: "on"\n',
        "a: !!str off\n",
        "a: true\n",
        "a: ~\n",
        "a: 12\n",
        "a: 0.25\n",
        "a: 1.0e-7\n",
        "a: 2024-05-01\n",
        "a: Norway\n",
    ],
)
def test_ambiguous_scalars__quoted_or_unambiguous__no_warning(text: str) -> None:
    assert ambiguous_scalars(text) == {}


def test_ambiguous_scalars__key_and_flow_list__each_located() -> None:
    text = "on: 1\nregions: [SE, NO, DK]\nlimit: 1_000\n"

    found = ambiguous_scalars(text)

    assert {pointer: line for pointer, (line, _) in found.items()} == {
        "/on": 1,
        "/regions/1": 2,
        "/limit": 3,
    }
    assert parse(text, "yaml") == {"on": 1, "regions": ["SE", "NO", "DK"], "limit": "1_000"}


REFUND_BUNDLE = """\
model: {provider: openai, name: gpt-4o-mini}
prompts:
  system: {role: system, template: You handle refunds.}
tools:
  - name: issue_refund
    description: Refund an order.
    risk: critical
    requires_approval: true
    parameters:
      type: object
      required: [order_id, region]
      properties:
        order_id: {type: string}
        region: {type: string, enum: [SE, NO, DK]}
        amount: {type: number}
policies:
  limits: {max_steps: 8, max_tool_calls: 6, max_total_tokens: 16000,
           max_cost_usd: 0.25, max_retries_per_tool: 2}
  tool_rules:
    - {tool: issue_refund, action: deny, when: {arg: region, op: "==", value: no}}
    - {tool: issue_refund, action: allow}
"""


def test_push__yaml11_booleans__stored_as_text_with_warnings(operator, agent: Agent) -> None:  # type: ignore[no-untyped-def]
    response = push(api_as(operator), agent, REFUND_BUNDLE)

    assert response.status_code == 201, response.content
    content = BundleVersion.objects.get(agent=agent).content
    assert content["tools"][0]["parameters"]["properties"]["region"]["enum"] == ["SE", "NO", "DK"]
    assert content["policies"]["tool_rules"][0]["when"]["value"] == "no"
    warnings = response.json()["warnings"]
    assert "/policies/tool_rules/0/when/value" in warnings
    assert "/tools/0/parameters/properties/region/enum/1" in warnings
    lines = pointer_lines(REFUND_BUNDLE)
    assert lines["/policies/tool_rules/0/when/value"] == 20
    assert lines["/tools/0/parameters/properties/region/enum/1"] == 14


def _refund(**changes: Any) -> dict[str, Any]:
    content = parse(REFUND_BUNDLE, "yaml")
    for pointer, value in changes.items():
        node = content
        *path, last = pointer.strip("/").split("/")
        for token in path:
            node = node[int(token)] if isinstance(node, list) else node[token]
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value
    return content


WRONG_TYPES = [
    # what YAML 1.1 made of `value: no`, against a text argument: the reported fail-open
    ("/policies/tool_rules/0/when/value", False, "/policies/tool_rules/0/when/value"),
    ("/policies/tool_rules/0/when/value", True, "/policies/tool_rules/0/when/value"),
    ("/policies/tool_rules/0/when/value", 12, "/policies/tool_rules/0/when/value"),
    (
        "/policies/tool_rules/0/when",
        {"arg": "region", "op": "in", "value": ["SE", False]},
        "/policies/tool_rules/0/when/value/1",
    ),
    (
        "/policies/tool_rules/0/when",
        {"arg": "amount", "op": "==", "value": "1_000"},
        "/policies/tool_rules/0/when/value",
    ),
    (
        "/policies/tool_rules/0/when",
        {"arg": "region", "op": ">", "value": 3},
        "/policies/tool_rules/0/when/op",
    ),
    (
        "/policies/tool_rules/0/when",
        {"context": "confidence", "op": "==", "value": "high"},
        "/policies/tool_rules/0/when/value",
    ),
    (
        "/policies/tool_rules/0/when",
        {
            "all": [
                {"arg": "amount", "op": ">", "value": 10},
                {"not": {"arg": "region", "op": "==", "value": False}},
            ]
        },
        "/policies/tool_rules/0/when/all/1/not/value",
    ),
    (
        "/tools/0/parameters/properties/region/enum",
        ["SE", False, "DK"],
        "/tools/0/parameters/properties/region/enum/1",
    ),
    (
        "/tools/0/parameters/properties/region/default",
        False,
        "/tools/0/parameters/properties/region/default",
    ),
    (
        "/tools/0/parameters/properties/amount/const",
        "12:30",
        "/tools/0/parameters/properties/amount/const",
    ),
]


@pytest.mark.parametrize(("where", "value", "pointer"), WRONG_TYPES)
def test_push__value_of_another_type_than_declared__refused_at_its_pointer(
    operator, agent: Agent, where: str, value: Any, pointer: str
) -> None:  # type: ignore[no-untyped-def]
    before = state()

    response = push(
        api_as(operator),
        agent,
        json.dumps(_refund(**{where: value})),
        content_type="application/json",
    )

    assert response.status_code == 400, response.content
    assert pointer in response.json()["errors"], response.json()["errors"]
    assert state() == before


def test_validate__examples_of_another_type__warning_not_error() -> None:
    content = _refund(**{"/tools/0/parameters/properties/region/examples": ["SE", False]})

    result = validate_content(content)

    assert result.ok, result.errors
    assert "/tools/0/parameters/properties/region/examples/1" in result.warnings


def test_validate__matching_types__no_type_findings() -> None:
    content = _refund(
        **{
            "/policies/tool_rules/0/when": {
                "any": [
                    {"arg": "region", "op": "in", "value": ["NO", "DK"]},
                    {"arg": "amount", "op": ">=", "value": 1000},
                    {"arg": "amount", "op": "==", "value": 1000.0},
                    {"context": "confidence", "op": "<", "value": 0.5},
                    {"context": "tenant", "op": "==", "value": "globex"},
                ]
            }
        }
    )

    assert validate_content(content).ok


@pytest.mark.parametrize("text", ["no", "on", "y", "1_000", "12:30", "0o14", "014", "+.5", "1e3"])
def test_to_yaml__text_a_yaml11_tool_would_type__quoted_so_both_read_text(text: str) -> None:
    content = {"description": text, "list": [text], text: 1}

    written = to_yaml(content)
    yaml11 = YAML(typ="safe", pure=True)
    yaml11.version = (1, 1)

    assert parse(written, "yaml") == content
    assert yaml11.load(written) == content
    assert ambiguous_scalars(written) == {}


def test_validate_source__yaml11_scalars__warned_with_pointers_json__not() -> None:
    yaml_result = validate_source(REFUND_BUNDLE)
    json_result = validate_source(json.dumps(parse(REFUND_BUNDLE, "yaml")))

    assert yaml_result.ok and json_result.ok
    assert yaml_result.digest == json_result.digest
    assert "/policies/tool_rules/0/when/value" in yaml_result.warnings
    assert "/policies/tool_rules/0/when/value" not in json_result.warnings


def test_editor__check__yaml11_warning_and_type_error_on_their_lines(
    client: Client, operator, agent: Agent
) -> None:  # type: ignore[no-untyped-def]
    # Line 14: enum [SE, NO, DK] (a warning); line 20: the deny rule, here `value: false`.
    source = REFUND_BUNDLE.replace("value: no}", "value: false}")
    client.force_login(operator)

    response = client.post(
        f"/bundles/agents/{agent.pk}/new/", {"source": source, "message": "", "action": "check"}
    )

    html = response.content.decode()
    assert response.status_code == 200
    assert 'href="#L14">line 14</a>' in html and "YAML 1.1" in html
    assert 'href="#L20">line 20</a>' in html and "can never be true" in html
    assert not BundleVersion.objects.filter(agent=agent).exists()


def test_validate_api__findings__located_by_pointer_and_line(operator) -> None:  # type: ignore[no-untyped-def]
    client = api_as(operator)

    def validate(text: str) -> Any:
        return client.generic(
            "POST", "/api/v1/bundles/validate/", text, content_type="application/yaml"
        )

    warned = validate(REFUND_BUNDLE)
    refused = validate(REFUND_BUNDLE.replace("value: no}", "value: false}"))

    assert warned.status_code == 200, warned.content
    assert warned.json()["lines"]["/policies/tool_rules/0/when/value"] == 20
    assert warned.json()["lines"]["/tools/0/parameters/properties/region/enum/1"] == 14
    assert refused.status_code == 400, refused.content
    assert "/policies/tool_rules/0/when/value" in refused.json()["errors"]
    assert refused.json()["lines"]["/policies/tool_rules/0/when/value"] == 20


def test_parse__merge_keys__still_merge_without_warning() -> None:
    text = "base: &base {risk: read, idempotent: true}\ntool:\n  <<: *base\n  risk: write\n"

    assert parse(text, "yaml")["tool"] == {"risk": "write", "idempotent": True}
    assert ambiguous_scalars(text) == {}
