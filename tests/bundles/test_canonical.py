"""The digest is of canonical JSON: key order, YAML formatting and number spelling do not
change it; content does."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from apps.bundles.parsing import parse, to_json, to_yaml
from apps.bundles.validation import validate_source
from apps.core.canonical import canonical_bytes, digest, normalize

from .conftest import demo_content, demo_text, writer_reads_back, yaml_text

BLOCK = """\
model:
  provider: openai
  name: gpt-4o-mini
  parameters: {temperature: 1, max_output_tokens: 800}
prompts:
  system:
    role: system
    template: |
      You help with orders.
      Be brief.
policies:
  limits:
    max_steps: 8
    max_tool_calls: 6
    max_total_tokens: 16000
    max_cost_usd: 0.25
    max_retries_per_tool: 2
"""

# The same bundle: keys reordered, flow style, comments, other quoting, 1.0 for 1.
REFORMATTED = """\
# a comment that changes nothing
policies: {limits: {max_retries_per_tool: 2, max_cost_usd: 0.250, max_total_tokens: 16000,
  max_tool_calls: 6, max_steps: 8}}
prompts:
  "system":
    template: "You help with orders.\\nBe brief.\\n"   # same text, double-quoted
    role: 'system'
model: {parameters: {max_output_tokens: 800, temperature: 1.0}, name: gpt-4o-mini, provider: openai}
"""


def _digest_of(text: str) -> str:
    result = validate_source(text)
    assert result.ok, result.errors
    assert result.digest is not None
    return result.digest


def test_digest__key_order_and_yaml_formatting__unchanged() -> None:
    assert _digest_of(BLOCK) == _digest_of(REFORMATTED)


def test_digest__json_file_of_the_same_content__unchanged() -> None:
    content = parse(BLOCK, "yaml")
    assert _digest_of(json.dumps(content, indent=4)) == _digest_of(BLOCK)
    assert _digest_of(json.dumps(content, separators=(",", ":"))) == _digest_of(BLOCK)


def test_digest__any_content_change__changes() -> None:
    assert _digest_of(BLOCK) != _digest_of(BLOCK.replace("Be brief.", "Be brief!"))
    assert _digest_of(BLOCK) != _digest_of(BLOCK.replace("max_steps: 8", "max_steps: 9"))
    assert _digest_of(BLOCK) != _digest_of(BLOCK.replace("temperature: 1,", "temperature: 1.5,"))


def test_canonical_bytes__sorted_compact_utf8() -> None:
    assert canonical_bytes({"b": [1, 2.5, "é"], "a": {"y": True, "x": None}}) == (
        '{"a":{"x":null,"y":true},"b":[1,2.5,"é"]}'.encode()
    )


def test_normalize__integral_floats_become_integers_and_non_json_is_refused() -> None:
    assert normalize({"t": 1.0, "u": -0.0, "v": 0.5, "w": 1e300}) == {
        "t": 1,
        "u": 0,
        "v": 0.5,
        "w": 1e300,
    }
    for bad in ({"x": float("nan")}, {"x": float("inf")}, {1: "x"}, {"x": {1, 2}}):
        with pytest.raises(ValueError):
            normalize(bad)


def test_digest__demo_file_and_its_export__same() -> None:
    content = demo_content("support-bot-v1")
    assert (
        _digest_of(to_yaml(content))
        == _digest_of(demo_text("support-bot-v1"))
        == _digest_of(to_json(content))
    )


# --------------------------------------------------------------------------- properties

_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=30)
_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53 - 1), max_value=2**53 - 1)
    | _text
    | st.floats(allow_nan=False, allow_infinity=False)
)
json_values = st.recursive(
    _scalars,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(_text, children, max_size=5),
    max_leaves=40,
)


def _shuffled(value: Any, rng: random.Random) -> Any:
    """The same value with every object's keys in another insertion order."""
    if isinstance(value, dict):
        keys = list(value)
        rng.shuffle(keys)
        return {k: _shuffled(value[k], rng) for k in keys}
    if isinstance(value, list):
        return [_shuffled(v, rng) for v in value]
    return value


@settings(deadline=None)
@given(json_values, st.integers())
def test_canonical_bytes__key_insertion_order__never_matters(value: Any, seed: int) -> None:
    assert canonical_bytes(_shuffled(value, random.Random(seed))) == canonical_bytes(value)


@settings(deadline=None)
@given(json_values)
def test_canonical_bytes__reparsed__fixed_point(value: Any) -> None:
    once = canonical_bytes(value)
    assert canonical_bytes(json.loads(once)) == once


# The emitter writes NEL (U+0085) raw with allow_unicode and reads it back as a line break, so
# files it formats with NEL cannot round-trip; our exporter quotes such strings (tested below).
_yaml_text = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x85"), max_size=30
)
_yaml_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53 - 1), max_value=2**53 - 1)
    | _yaml_text
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(_yaml_text, children, max_size=5)
    ),
    max_leaves=40,
)


@settings(max_examples=150, deadline=None)
@given(_yaml_values, st.sampled_from([None, True, False]), st.sampled_from([None, '"', "'"]))
def test_digest__through_any_yaml_style__unchanged(
    value: Any, flow: bool | None, quote: str | None
) -> None:
    text = yaml_text({"data": value}, flow=flow, quote=quote)
    assume(writer_reads_back(text, {"data": value}))
    assert digest(parse(text, "yaml")) == digest({"data": value})


@settings(deadline=None)
@given(json_values)
def test_to_yaml__exported_file__reads_back_to_the_same_content(value: Any) -> None:
    content = {"data": value, "text": "line\x85next\u2028sep\nlast"}
    assert parse(to_yaml(content), "yaml") == content
    assert json.loads(to_json(content)) == content


def test_validate_source__yaml_flow_mapping_starting_with_a_brace__read_as_yaml() -> None:
    flow = yaml_text(parse(BLOCK, "yaml"), flow=True, quote=None)
    assert flow.startswith("{")
    result = validate_source(flow)
    assert result.ok and result.source_format == "yaml"
    assert result.digest == _digest_of(BLOCK)
