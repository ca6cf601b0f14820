"""The Unleash client API through the real ASGI server: scope isolation by token, the v2
payload's shape, segments by client spec, kill switches as features, ETag/304, and the SDK
register and metrics endpoints."""

from __future__ import annotations

import datetime as dt

import pytest
import requests

from apps.accounts.models import RuntimeToken, hash_runtime_token
from apps.accounts.runtime_tokens import runtime_token_revoke
from apps.flags import services
from apps.flags.models import FlagUsage, FlagVariantUsage, SdkInstance
from apps.tenancy.models import Environment, Tenant

from ..factories import AgentFactory
from .conftest import SYSTEM, make_flag, make_token

SPEC = {"Unleash-Client-Spec": "5.0.0"}


def _features(base: str, token: str, **headers: str) -> dict:
    response = requests.get(
        f"{base}/api/client/features", headers={"Authorization": token, **headers}, timeout=10
    )
    assert response.status_code == 200, response.text
    return response.json()


def _names(payload: dict) -> set[str]:
    return {f["name"] for f in payload["features"]}


def test_client_features__token__serves_only_its_environments_flags(
    asgi_server: str, tenant: Tenant, other_tenant: Tenant
) -> None:
    development = tenant.environments.get(slug="development")
    production = tenant.environments.get(slug="production")
    foreign = other_tenant.environments.get()
    make_flag(development, "dev-only")
    make_flag(production, "prod-only")
    make_flag(foreign, "globex-secret")

    acme_prod = _features(asgi_server, make_token(production), **SPEC)
    acme_dev = _features(asgi_server, f"Bearer {make_token(development)}", **SPEC)
    globex = _features(asgi_server, make_token(foreign), **SPEC)

    assert _names(acme_prod) == {"prod-only"}
    assert _names(acme_dev) == {"dev-only"}
    assert _names(globex) == {"globex-secret"}


def test_client_features__no_forged_or_revoked_token__401(asgi_server: str, tenant: Tenant) -> None:
    production = tenant.environments.get(slug="production")
    make_flag(production, "secret")
    token = make_token(production)
    assert _features(asgi_server, token)["features"]
    runtime_token_revoke(
        actor=SYSTEM,
        token=RuntimeToken.objects.get(token_hash=hash_runtime_token(token)),
        reason="compromised",
    )

    for headers in ({}, {"Authorization": "cprt_forged"}, {"Authorization": token}):
        response = requests.get(f"{asgi_server}/api/client/features", headers=headers, timeout=10)
        assert response.status_code == 401
        assert "secret" not in response.text


def test_client_features__v2_payload__parameters_strings_and_meta(
    asgi_server: str, tenant: Tenant
) -> None:
    production = tenant.environments.get(slug="production")
    make_flag(
        production,
        "rollout",
        type="experiment",
        strategies=[
            {
                "name": "flexibleRollout",
                "parameters": {"rollout": 30, "groupId": "g"},
                "constraints": [{"contextName": "n", "operator": "NUM_GT", "value": 3}],
            }
        ],
        variants=[{"name": "blue", "payload": {"type": "string", "value": "b"}}],
    )

    payload = _features(asgi_server, make_token(production), **SPEC)

    assert payload["version"] == 2
    [feature] = payload["features"]
    assert feature["type"] == "experiment" and feature["enabled"] is True
    strategy = feature["strategies"][0]
    assert strategy["parameters"] == {"rollout": "30", "groupId": "g", "stickiness": "default"}
    assert all(isinstance(v, str) for v in strategy["parameters"].values())
    assert strategy["constraints"][0]["value"] == "3"
    assert feature["variants"][0]["weight"] == 1000
    assert payload["meta"]["revisionId"] == Environment.objects.get(pk=production.pk).revision
    assert set(payload["meta"]) == {"revisionId", "etag", "queryHash"}


def test_client_features__client_spec__top_level_segments_or_inlined(
    asgi_server: str, tenant: Tenant
) -> None:
    production = tenant.environments.get(slug="production")
    services.segment_create(
        actor=SYSTEM,
        environment=production,
        name="beta",
        reason="t",
        constraints=[{"contextName": "userId", "operator": "IN", "values": ["7"]}],
    )
    make_flag(production, "beta-only", strategies=[{"name": "default", "segments": [1]}])
    token = make_token(production)

    modern = _features(asgi_server, token, **{"Unleash-Client-Spec": "4.2.0"})
    old = _features(asgi_server, token, **{"Unleash-Client-Spec": "4.1.9"})
    unknown = _features(asgi_server, token)

    assert modern["segments"] == [
        {
            "id": 1,
            "name": "beta",
            "constraints": [
                {
                    "contextName": "userId",
                    "operator": "IN",
                    "values": ["7"],
                    "caseInsensitive": False,
                    "inverted": False,
                }
            ],
        }
    ]
    assert modern["features"][0]["strategies"][0]["segments"] == [1]
    for payload in (old, unknown):
        assert "segments" not in payload
        strategy = payload["features"][0]["strategies"][0]
        assert "segments" not in strategy
        assert strategy["constraints"] == modern["segments"][0]["constraints"]


def test_client_features__etag__304_then_200_after_a_change(
    asgi_server: str, tenant: Tenant
) -> None:
    production = tenant.environments.get(slug="production")
    flag = make_flag(production, "checkout")
    token = make_token(production)
    first = requests.get(
        f"{asgi_server}/api/client/features", headers={"Authorization": token, **SPEC}, timeout=10
    )
    etag = first.headers["ETag"]

    again = requests.get(
        f"{asgi_server}/api/client/features",
        headers={"Authorization": token, "If-None-Match": etag, **SPEC},
        timeout=10,
    )
    services.flag_toggle(actor=SYSTEM, flag=flag, enabled=False, reason="incident")
    changed = requests.get(
        f"{asgi_server}/api/client/features",
        headers={"Authorization": token, "If-None-Match": etag, **SPEC},
        timeout=10,
    )

    assert again.status_code == 304
    assert changed.status_code == 200
    assert changed.json()["features"][0]["enabled"] is False


def test_client_features__kill_switches__served_as_features_where_they_reach(
    asgi_server: str, tenant: Tenant, other_tenant: Tenant
) -> None:
    production = tenant.environments.get(slug="production")
    development = tenant.environments.get(slug="development")
    bot = AgentFactory(tenant=tenant, slug="support-bot")
    refunds = AgentFactory(tenant=tenant, slug="refund-agent")
    services.kill_switch_engage(
        actor=SYSTEM,
        kind="tool_disabled",
        scope="tenant",
        tenant=tenant,
        tool_pattern="search_*",
        reason="loops",
    )
    services.kill_switch_engage(
        actor=SYSTEM,
        kind="agent_stopped",
        scope="environment",
        tenant=tenant,
        environment=production,
        agent=refunds,
        reason="refund storm",
    )
    services.kill_switch_engage(
        actor=SYSTEM,
        kind="agent_mode",
        scope="agent",
        tenant=tenant,
        agent=bot,
        mode="draft_only",
        reason="drafts only",
    )

    in_production = _features(asgi_server, make_token(production), **SPEC)
    in_development = _features(asgi_server, make_token(development), **SPEC)
    bot_only = _features(asgi_server, make_token(production, agent=bot), **SPEC)
    globex = _features(asgi_server, make_token(other_tenant.environments.get()), **SPEC)

    assert _names(in_production) == {
        "kill.tool.search_*",
        "kill.agent.refund-agent",
        "kill.agent.support-bot.mode.draft_only",
    }
    assert _names(in_development) == {
        "kill.tool.search_*",
        "kill.agent.support-bot.mode.draft_only",
    }
    assert _names(bot_only) == {"kill.tool.search_*", "kill.agent.support-bot.mode.draft_only"}
    assert _names(globex) == set()
    kill = next(f for f in in_production["features"] if f["name"] == "kill.agent.refund-agent")
    assert kill["enabled"] is True and kill["type"] == "kill-switch"
    assert kill["strategies"][0]["name"] == "default" and "refund storm" in kill["description"]


# --------------------------------------------------------------------------- register and metrics


def _post(base: str, path: str, token: str | None, body: object) -> requests.Response:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = token
    return requests.post(f"{base}/api/client/{path}", json=body, headers=headers, timeout=10)


def test_client_register_and_metrics__202_and_counts_add_up(
    asgi_server: str, tenant: Tenant
) -> None:
    production = tenant.environments.get(slug="production")
    make_flag(production, "checkout")
    token = make_token(production)
    start = dt.datetime(2026, 11, 23, 10, 5, tzinfo=dt.UTC)
    bucket = {
        "start": start.isoformat(),
        "stop": (start + dt.timedelta(minutes=1)).isoformat(),
        "toggles": {"checkout": {"yes": 3, "no": 1, "variants": {"blue": 2, "disabled": 1}}},
    }

    registered = _post(
        asgi_server,
        "register",
        token,
        {
            "appName": "web",
            "instanceId": "web-1",
            "sdkVersion": "unleash-client-node:5.0.0",
            "strategies": ["default", "flexibleRollout"],
            "started": start.isoformat(),
            "interval": 60000,
        },
    )
    first = _post(
        asgi_server, "metrics", token, {"appName": "web", "instanceId": "web-1", "bucket": bucket}
    )
    second = _post(
        asgi_server,
        "metrics",
        f"Bearer {token}",
        {"appName": "web", "instanceId": "web-1", "bucket": bucket},
    )

    assert (registered.status_code, first.status_code, second.status_code) == (202, 202, 202)
    instance = SdkInstance.objects.get(environment=production, app_name="web", instance_id="web-1")
    assert instance.sdk_version == "unleash-client-node:5.0.0"
    assert instance.strategies == ["default", "flexibleRollout"]
    usage = FlagUsage.objects.get(environment=production, flag_name="checkout")
    assert (usage.yes, usage.no) == (6, 2)
    assert usage.hour == start.replace(minute=0)
    assert dict(FlagVariantUsage.objects.values_list("variant", "count")) == {
        "blue": 4,
        "disabled": 2,
    }


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("register", {"instanceId": "x"}, "appName"),
        ("register", {"appName": "web", "strategies": "default"}, "strategies"),
        ("register", {"appName": "web", "interval": -5}, "interval"),
        ("metrics", {"appName": "web"}, "bucket"),
        (
            "metrics",
            {
                "appName": "web",
                "bucket": {"start": "yesterday", "stop": "2026-01-01T00:00:00Z", "toggles": {}},
            },
            "bucket.start",  # a nested field is named by its path
        ),
        (
            "metrics",
            {
                "appName": "web",
                "bucket": {
                    "start": "2026-01-01T00:00:00Z",
                    "stop": "2026-01-01T00:01:00Z",
                    "toggles": {"f": {"yes": -1}},
                },
            },
            "bucket.toggles.f.yes",
        ),
    ],
)
def test_client_register_metrics__bad_input__400_nothing_stored(
    asgi_server: str, tenant: Tenant, path: str, body: dict, field: str
) -> None:
    token = make_token(tenant.environments.get(slug="production"))

    response = _post(asgi_server, path, token, body)

    assert response.status_code == 400
    assert field in response.json()["errors"]
    assert not SdkInstance.objects.exists() and not FlagUsage.objects.exists()


def test_client_register__no_token__401_and_token_grants_no_ui(
    asgi_server: str, tenant: Tenant
) -> None:
    token = make_token(tenant.environments.get(slug="production"))

    anonymous = _post(asgi_server, "register", None, {"appName": "web"})
    ui = requests.get(
        f"{asgi_server}/flags/", headers={"Authorization": token}, allow_redirects=False, timeout=10
    )
    operator_api = requests.get(
        f"{asgi_server}/api/v1/flags/", headers={"Authorization": token}, timeout=10
    )

    assert anonymous.status_code == 401
    assert ui.status_code == 302 and "/login/" in ui.headers["Location"]
    assert operator_api.status_code in (401, 403)
    assert not SdkInstance.objects.exists()
