"""Cross-language: the real Unleash **Node.js** SDK (npm ``unleash-client``, pinned in
``package.json``) against the real ASGI server. Issue 8 kind 10 was found with it (a client
with ``namePrefix: 'app.'`` received every flag); these check what it knows with ``namePrefix``
and ``projectName``, that its gradual rollouts bucket users as ``dataplane.bucketing`` does,
that its registration and metrics are recorded, and that in streaming mode it is hydrated
from the event stream and sees a change there.

Node's side is ``unleash_node_sdk.mjs`` beside this file; its packages are installed by
``make install-dev`` (``npm ci`` here), never at test time."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from apps.flags.models import Flag, FlagUsage, SdkInstance
from apps.flags.services import flag_toggle, flags_import
from apps.tenancy.models import Environment, Tenant
from dataplane.bucketing import flexible_rollout_enabled, normalized_hash

from ..conformance.conftest import wait_until
from ..conftest import Served
from ..flags.conftest import SYSTEM, make_token

HERE = Path(__file__).resolve().parent
NODE = shutil.which("node")
pytestmark = pytest.mark.skipif(
    NODE is None or not (HERE / "node_modules" / "unleash-client").is_dir(),
    reason="needs node and npm unleash-client: run `make install-dev` (npm ci in tests/crosslang)",
)

ROLLOUT = {
    "name": "flexibleRollout",
    "parameters": {"rollout": "30", "stickiness": "userId", "groupId": "canary-7"},
    "constraints": [],
}
USERS = [f"user-{i}" for i in range(2_000)]


def _feature(
    name: str, project: str, *, enabled: bool = True, strategy: dict[str, Any] | None = None
) -> dict[str, Any]:
    return {
        "name": name,
        "type": "release",
        "enabled": enabled,
        "project": project,
        "strategies": [strategy or {"name": "default", "parameters": {}, "constraints": []}],
        "variants": [],
    }


def _seed(environment: Environment) -> None:
    # Projects only come from an Unleash import (docs/flags.md), so the flags arrive that way.
    flags_import(
        actor=SYSTEM,
        environment=environment,
        payload={
            "version": 2,
            "features": [
                _feature("app.checkout", "shop"),
                _feature("app.search", "search"),
                _feature("app.rollout", "shop", strategy=ROLLOUT),
                _feature("billing.invoices", "shop", enabled=False),
                _feature("appendix", "default"),
            ],
        },
        mode="merge",
        reason="test setup",
    )


def _node_sdk(base_url: str, token: str, **options: Any) -> dict[str, Any]:
    """Run the Node SDK once (see ``unleash_node_sdk.mjs`` for the request and answer)."""
    assert NODE is not None
    request = {
        "url": base_url + "/api/",
        "token": token,
        "appName": "node-crosslang",
        "instanceId": "node-test",
        "metrics": False,
        "checks": [],
        "timeoutMs": 15_000,
        **options,
    }
    done = subprocess.run(
        [NODE, str(HERE / "unleash_node_sdk.mjs")],
        input=json.dumps(request).encode(),
        capture_output=True,
        timeout=60,
        check=True,
        cwd=HERE,
    )
    return json.loads(done.stdout)


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({}, ["app.checkout", "app.rollout", "app.search", "appendix", "billing.invoices"]),
        ({"namePrefix": "app."}, ["app.checkout", "app.rollout", "app.search"]),
        ({"namePrefix": "app"}, ["app.checkout", "app.rollout", "app.search", "appendix"]),
        ({"projectName": "shop"}, ["app.checkout", "app.rollout", "billing.invoices"]),
        ({"projectName": "shop", "namePrefix": "app."}, ["app.checkout", "app.rollout"]),
        ({"projectName": "unknown"}, []),
        ({"namePrefix": "zzz"}, []),
    ],
    ids=[
        "all",
        "prefix-app-dot",
        "prefix-app",
        "project",
        "project-and-prefix",
        "no-project",
        "no-name",
    ],
)
def test_node_sdk__name_prefix_and_project__knows_only_those_flags(
    asgi_server: str, tenant: Tenant, options: dict[str, Any], expected: list[str]
) -> None:
    development = tenant.environments.get(slug="development")
    _seed(development)

    answer = _node_sdk(
        asgi_server,
        make_token(development),
        **options,
        checks=[{"name": name, "contexts": [{}]} for name in ["app.checkout", "appendix"]],
    )

    assert answer["synchronized"] is True, answer["errors"]
    assert answer["features"] == expected
    # A flag the SDK was not given is off for it, whatever the server holds.
    assert answer["enabled"] == {
        "app.checkout": ["app.checkout" in expected],
        "appendix": ["appendix" in expected],
    }


def test_node_sdk__flexible_rollout_on_user_id__same_users_as_dataplane(
    asgi_server: str, tenant: Tenant
) -> None:
    production = tenant.environments.get(slug="production")
    _seed(production)
    contexts = [{"userId": user} for user in USERS] + [{"sessionId": "no-user"}, {}]

    answer = _node_sdk(
        asgi_server,
        make_token(production),
        namePrefix="app.",
        checks=[{"name": "app.rollout", "contexts": contexts}],
    )

    assert answer["synchronized"] is True, answer["errors"]
    by_node = [
        user for user, on in zip(USERS, answer["enabled"]["app.rollout"], strict=False) if on
    ]
    by_hash = [user for user in USERS if normalized_hash(user, "canary-7") <= 30]
    by_dataplane = [
        user
        for user in USERS
        if flexible_rollout_enabled(30, "canary-7", "userId", {"userId": user})
    ]
    assert 0.26 <= len(by_node) / len(USERS) <= 0.34
    assert by_node == by_hash == by_dataplane
    # userId stickiness without a userId: nobody is in the rollout, in Node as in the data plane.
    assert answer["enabled"]["app.rollout"][-2:] == [False, False]
    assert not flexible_rollout_enabled(30, "canary-7", "userId", {"sessionId": "no-user"})


def test_node_sdk__register_and_metrics__recorded_for_the_tokens_environment(
    asgi_server: str, tenant: Tenant
) -> None:
    production = tenant.environments.get(slug="production")
    _seed(production)
    users = [{"userId": f"u-{i}"} for i in range(25)]

    answer = _node_sdk(
        asgi_server,
        make_token(production),
        appName="node-shop",
        instanceId="node-pod-3",
        namePrefix="app.",
        metrics=True,
        checks=[
            {"name": "app.checkout", "contexts": users},
            {"name": "app.rollout", "contexts": users},
        ],
    )

    assert answer["synchronized"] is True, answer["errors"]
    assert answer["registered"] is True and answer["metricsSent"] is True, answer["errors"]
    assert answer["errors"] == []
    instance = SdkInstance.objects.get(
        environment=production, app_name="node-shop", instance_id="node-pod-3"
    )
    assert instance.sdk_version == "unleash-node-sdk:6.12.1"  # the pinned one
    assert wait_until(
        lambda: FlagUsage.objects.filter(environment=production, app_name="node-shop").count() == 2
    )
    usage = {
        row.flag_name: (row.yes, row.no)
        for row in FlagUsage.objects.filter(environment=production, app_name="node-shop")
    }
    rollout_yes = sum(answer["enabled"]["app.rollout"])
    assert usage == {"app.checkout": (25, 0), "app.rollout": (rollout_yes, 25 - rollout_yes)}
    # Nothing was counted in an environment the token does not reach.
    assert not FlagUsage.objects.filter(app_name="node-shop").exclude(environment=production)


@pytest.mark.parametrize("token", ["", "cprt_forged", "Bearer nonsense"])
def test_node_sdk__refused_token__never_synchronises_and_reports_401(
    asgi_server: str, tenant: Tenant, token: str
) -> None:
    _seed(tenant.environments.get(slug="production"))

    answer = _node_sdk(asgi_server, token, namePrefix="app.", timeoutMs=3_000)

    assert answer["synchronized"] is False
    assert answer["features"] == []
    assert any("401" in error for error in answer["errors"]), answer["errors"]


def test_node_sdk__streaming_mode__hydrated_then_a_change_arrives_on_the_stream(
    asgi_server: str, tenant: Tenant, asgi_served: list[Served]
) -> None:
    production = tenant.environments.get(slug="production")
    _seed(production)
    request = {
        "url": asgi_server + "/api/",
        "token": make_token(production),
        "appName": "node-streaming",
        "instanceId": "node-stream-1",
        "metrics": False,
        "streaming": True,
        "checks": [
            {"name": "app.checkout", "contexts": [{}]},
            {"name": "billing.invoices", "contexts": [{}]},
        ],
        "awaitChange": {"name": "billing.invoices", "enabled": True},
        "timeoutMs": 15_000,
    }
    assert NODE is not None
    node = subprocess.Popen(
        [NODE, str(HERE / "unleash_node_sdk.mjs")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=HERE,
    )
    try:
        assert node.stdin is not None and node.stderr is not None and node.stdout is not None
        node.stdin.write(json.dumps(request).encode())
        node.stdin.close()
        line = node.stderr.readline()  # the SDK holds the hydrated state now
        if line.strip() == b"SYNCHRONIZED":
            flag_toggle(
                actor=SYSTEM,
                flag=Flag.objects.get(environment=production, name="billing.invoices"),
                enabled=True,
                reason="stream test",
            )
        stdout, stderr = node.stdout.read(), node.stderr.read()  # until the script ends
        node.wait(timeout=60)
    finally:
        if node.poll() is None:
            node.kill()
    answer = json.loads(stdout)

    assert answer["synchronized"] is True, (answer["errors"], stderr)
    assert answer["fetchMode"] == "streaming"  # never fell back to polling
    assert answer["features"] == [
        "app.checkout",
        "app.rollout",
        "app.search",
        "appendix",
        "billing.invoices",
    ]
    assert answer["enabled"] == {"app.checkout": [True], "billing.invoices": [False]}
    assert answer["changeSeen"] is True
    # Its EventSource (launchdarkly-eventsource) neither asks for gzip nor decodes it: the
    # stream went out plain (docs/decisions/0027-precompressed-bodies.md).
    streamed = [s for s in asgi_served if s.path == "/api/client/streaming"]
    assert streamed and all("accept-encoding" not in s.request_headers for s in streamed)
    assert all("content-encoding" not in s.headers for s in streamed)
