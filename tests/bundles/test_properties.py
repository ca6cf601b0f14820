"""Property-based: for any valid bundle, pushing then pulling gives the same content back,
and the pulled file pushes to the same version."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from apps.audit.services import SystemActor
from apps.bundles.exports import export_json, export_yaml
from apps.bundles.parsing import parse
from apps.bundles.services import bundle_version_push
from apps.bundles.validation import validate_content, validate_source
from apps.bundles.validation.secrets import find_secret
from apps.tenancy.models import Agent

from .conftest import writer_reads_back, yaml_text

pytestmark = pytest.mark.django_db
SYSTEM = SystemActor("system:test")

identifiers = st.from_regex(r"[a-z][a-z0-9_]{0,10}", fullmatch=True)
line = st.text(
    st.characters(blacklist_categories=("Cs", "Cc", "Cf", "Zl", "Zp"), blacklist_characters="{}"),
    max_size=60,
).filter(lambda t: find_secret(t) is None)
text = st.lists(line, min_size=1, max_size=4).map("\n".join).filter(lambda t: t.strip() != "")
positive_int = st.integers(min_value=1, max_value=10**9)


@st.composite
def prompts(draw: st.DrawFn) -> dict[str, Any]:
    out = {}
    for name in draw(st.lists(identifiers, min_size=1, max_size=3, unique=True)):
        variables = draw(
            st.dictionaries(
                identifiers,
                st.fixed_dictionaries(
                    {"source": st.sampled_from(["user", "system", "retrieval", "tool", "memory"])},
                    optional={"description": line},
                ),
                max_size=3,
            )
        )
        template = draw(text) + "".join(f"\n<{v}>{{{{ {v} }}}}</{v}>" for v in variables)
        prompt: dict[str, Any] = {
            "role": draw(st.sampled_from(["system", "user", "assistant"])),
            "template": template,
        }
        if variables:
            prompt["variables"] = variables
        out[name] = prompt
    return out


@st.composite
def tools(draw: st.DrawFn) -> list[dict[str, Any]]:
    found = []
    for name in draw(st.lists(identifiers, max_size=3, unique=True)):
        properties = draw(
            st.dictionaries(
                identifiers,
                st.fixed_dictionaries(
                    {"type": st.sampled_from(["string", "number", "integer", "boolean"])},
                    optional={"description": line},
                ),
                max_size=3,
            )
        )
        tool: dict[str, Any] = {
            "name": name,
            "description": draw(text),
            "risk": draw(st.sampled_from(["read", "write", "critical"])),
            "parameters": {
                "type": "object",
                "properties": properties,
                "required": sorted(properties)[:1],
            },
        }
        optional = draw(
            st.fixed_dictionaries(
                {},
                optional={
                    "requires_approval": st.booleans(),
                    "idempotent": st.booleans(),
                    "timeout_s": st.integers(1, 3600) | st.floats(0.5, 3600),
                    "rate_limit": st.fixed_dictionaries(
                        {"max_calls": positive_int, "per_s": positive_int}
                    ),
                },
            )
        )
        tool.update(optional)
        if properties and draw(st.booleans()):
            tool["sensitive_args"] = sorted(properties)[:1]
        found.append(tool)
    return found


@st.composite
def bundles(draw: st.DrawFn) -> dict[str, Any]:
    tool_list = draw(tools())
    names = [t["name"] for t in tool_list] + ["*"]
    bundle: dict[str, Any] = {
        "model": {
            "provider": draw(identifiers),
            "name": draw(line.filter(str.strip)),
            "parameters": draw(
                st.fixed_dictionaries(
                    {}, optional={"temperature": st.floats(0, 2), "max_output_tokens": positive_int}
                )
            ),
        },
        "prompts": draw(prompts()),
        "tools": tool_list,
        "policies": {
            "limits": {
                "max_steps": draw(positive_int),
                "max_tool_calls": draw(positive_int),
                "max_total_tokens": draw(positive_int),
                "max_cost_usd": draw(st.floats(0.001, 1000)),
                "max_retries_per_tool": draw(st.integers(0, 10)),
            },
            "tool_rules": draw(
                st.lists(
                    st.fixed_dictionaries(
                        {
                            "tool": st.sampled_from(names),
                            "action": st.sampled_from(["allow", "deny", "ask"]),
                        }
                    ),
                    max_size=4,
                )
            ),
        },
    }
    if draw(st.booleans()):
        bundle["description"] = draw(text)
    return bundle


def _shuffled(value: Any, rng: random.Random) -> Any:
    if isinstance(value, dict):
        keys = list(value)
        rng.shuffle(keys)
        return {k: _shuffled(value[k], rng) for k in keys}
    if isinstance(value, list):
        return [_shuffled(v, rng) for v in value]
    return value


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(bundle=bundles(), flow=st.sampled_from([False, None]))
def test_push_then_pull__round_trips_unchanged(
    agent: Agent, bundle: dict[str, Any], flow: bool | None
) -> None:
    source = yaml_text(bundle, flow=flow)
    assume(writer_reads_back(source, bundle))
    pushed = bundle_version_push(actor=SYSTEM, agent=agent, source=source, message="property")

    pulled_yaml = export_yaml(pushed.version)
    pulled_json = export_json(pushed.version)

    assert parse(pulled_yaml, "yaml") == bundle
    assert json.loads(pulled_json) == bundle
    for pulled in (pulled_yaml, pulled_json):
        again = bundle_version_push(actor=SYSTEM, agent=agent, source=pulled, message="pushed back")
        assert not again.created and again.version.pk == pushed.version.pk


@settings(max_examples=60, deadline=None)
@given(bundle=bundles(), seed=st.integers())
def test_canonical_digest__any_key_order_and_format__stable(
    bundle: dict[str, Any], seed: int
) -> None:
    reference = validate_content(bundle)
    assert reference.ok, reference.errors
    shuffled = _shuffled(bundle, random.Random(seed))
    for source in (
        json.dumps(shuffled),
        yaml_text(shuffled, flow=False),
        yaml_text(shuffled, flow=True, width=40),
    ):
        if not writer_reads_back(source, shuffled):
            continue
        assert validate_source(source).digest == reference.digest
