"""Cross-language: a Node.js runtime following docs/runtime-api.md, with an independent RFC 8785
implementation (npm ``canonicalize``) and ``node:crypto``, gets the control plane's canonical
bytes, digests and Ed25519 signatures, for the served snapshot and the bundles in it.

Node's side is ``canonicalize.mjs`` beside this file; its package is installed by
``make install-dev`` (``npm ci`` here), never at test time."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from apps.accounts.runtime_tokens import runtime_token_create
from apps.audit.services import SystemActor
from apps.bundles import signing
from apps.bundles.services import bundle_version_push
from apps.bundles.validation import validate_source
from apps.core.canonical import canonical_json as control_plane_canonical_json
from apps.rollouts.services import deployment_create
from apps.tenancy.models import Tenant
from dataplane.canonical import PYTHON_JSON, canonical_json

from ..factories import AgentFactory

HERE = Path(__file__).resolve().parent
NODE = shutil.which("node")
pytestmark = pytest.mark.skipif(
    NODE is None or not (HERE / "node_modules" / "canonicalize").is_dir(),
    reason="needs node and npm canonicalize: run `make install-dev` (npm ci in tests/crosslang)",
)
ACTOR = SystemActor("test")


def _node(request: dict[str, Any]) -> Any:
    assert NODE is not None
    done = subprocess.run(
        [NODE, str(HERE / "canonicalize.mjs")],
        input=json.dumps(request).encode(),
        capture_output=True,
        timeout=60,
        check=True,
    )
    return json.loads(done.stdout)


# Each differs from Python's json.dumps spelling or order somewhere.
VALUES: list[Any] = [
    {"temperature": 0.0000001},
    {"n": 1e-7},
    {"n": 1e-6},
    {"n": 1e21},
    {"n": 1e16},
    {"n": -0.0},
    {"n": 5e-324},
    {"n": 1.7976931348623157e308},
    {"n": 0.1 + 0.2},
    {"n": 1.0},
    {"n": 2**53 - 1, "m": -(2**53 - 1)},
    {"n": [123e-20, 4.5e15, 1e-5, 333333333.33333329]},
    # UTF-16 code-unit order (RFC 8785) differs from code-point order for these keys.
    {"\U0001f600": 1, "\ufb01": 2, "é": 3, "a": 4, "\u20ac": 5},
    {"s": '\x00\x1f\u2028\u2029"\\/ \x7f é 😀'},
    [None, True, False, "", [], {}],
]


def test_canonical_json__values_python_spells_otherwise__same_bytes_as_node() -> None:
    node = [base64.b64decode(item) for item in _node({"task": "canonicalize", "values": VALUES})]

    assert [canonical_json(value) for value in VALUES] == node
    assert [control_plane_canonical_json(value) for value in VALUES] == node
    # What the old, json.dumps-defined form wrote for most of them (the reported fault).
    legacy = [canonical_json(value, PYTHON_JSON) for value in VALUES]
    assert sum(ours != theirs for ours, theirs in zip(legacy, node, strict=True)) >= 8


@pytest.mark.parametrize(
    "number", ["9007199254740993", "-9007199254740993", "18446744073709551616"]
)
def test_bundle__integer_beyond_i_json__refused_with_a_clear_error(number: str) -> None:
    # A Node runtime would read another number: RFC 8785 requires I-JSON, so it is refused.
    source = f"model: {{provider: openai, name: gpt-4o-mini, parameters: {{seed: {number}}}}}\n"

    result = validate_source(source)

    assert not result.ok
    assert any("2**53-1" in message for message in result.errors["/model/parameters/seed"])


BUNDLE = """\
description: numbers a Node.js runtime spells otherwise than Python
model:
  provider: openai
  name: gpt-4o-mini
  parameters:
    temperature: 0.0000001
    top_p: 1e-7
    tiny: 5e-324
    huge: 1e21
    sixteen: 1e16
    negative_zero: -0.0
    largest_safe: 9007199254740991
prompts:
  system:
    role: system
    template: Help with orders, in any language — é, €, 😀.
policies:
  limits:
    max_steps: 8
    max_tool_calls: 6
    max_total_tokens: 16000
    max_cost_usd: 0.25
    max_retries_per_tool: 2
"""


def test_served_snapshot__node_runtime__same_digests_and_signatures_verify(
    asgi_server: str, tenant: Tenant
) -> None:
    agent = AgentFactory(tenant=tenant, slug="numbers-bot", name="Numbers bot")
    version = bundle_version_push(actor=ACTOR, agent=agent, message="floats", source=BUNDLE).version
    production = tenant.environments.get(slug="production")
    deployment_create(
        actor=ACTOR, agent=agent, environment=production, version=version, reason="launch"
    )
    _, token = runtime_token_create(
        actor=ACTOR, tenant=tenant, environment=production, name="node fleet"
    )
    request = urllib.request.Request(
        f"{asgi_server}/api/runtime/v1/config", headers={"Authorization": token}
    )
    with urllib.request.urlopen(request, timeout=30) as response:  # loopback test server
        body = response.read().decode("utf-8")
    envelope = json.loads(body)
    keys = {key["kid"]: key["public_key"] for key in signing.public_keys()}

    node = _node({"task": "envelope", "body": body, "keys": keys})

    assert envelope["snapshot"]["canonical"] == "rfc8785"
    assert node["digest"] == envelope["digest"]
    assert node["signature_ok"] is True
    assert node["body_is_canonical"] is True
    assert node["bundles"] == {
        "numbers-bot/stable": {"digest": version.digest, "signature_ok": True}
    }
    assert b"1e-7" in version.canonical_bytes and b"1e-07" not in version.canonical_bytes
