"""The pinned Unleash Python SDK against the control plane: rollout bucketing identical to the
data plane's, changes seen at the next refresh (or at once when streaming), constraints and
variants as configured, registration and metrics accepted and shown."""

from __future__ import annotations

import socket
from importlib.metadata import version

import pytest
from django.test import Client

from apps.flags import services
from apps.flags.models import FlagUsage, SdkInstance
from apps.tenancy.models import Tenant
from dataplane.bucketing import flexible_rollout_enabled, normalized_hash

from ..conftest import Served
from ..factories import AgentFactory
from ..flags.conftest import SYSTEM, make_flag, make_token
from .conftest import SdkFactory, wait_until

USERS = [f"user-{i}" for i in range(10_000)]


def test_sdk__pinned_version() -> None:
    # The conformance below is against this SDK; a new major needs a fresh look at
    # how it treats custom and unknown strategies (today: evaluated as false).
    assert version("UnleashClient").split(".")[0] == "6"


def test_sdk_flexible_rollout_30__30_percent_and_same_users_as_dataplane(
    asgi_server: str, tenant: Tenant, sdk: SdkFactory
) -> None:
    production = tenant.environments.get(slug="production")
    make_flag(
        production,
        "support-bot.candidate",
        strategies=[
            {
                "name": "flexibleRollout",
                "parameters": {"rollout": "30", "stickiness": "userId", "groupId": "canary-7"},
            }
        ],
    )
    client = sdk(make_token(production))

    enabled_by_sdk = {u for u in USERS if client.is_enabled("support-bot.candidate", {"userId": u})}
    by_hash = {u for u in USERS if normalized_hash(u, "canary-7") <= 30}
    by_dataplane = {
        u for u in USERS if flexible_rollout_enabled(30, "canary-7", "userId", {"userId": u})
    }

    assert 0.28 <= len(enabled_by_sdk) / len(USERS) <= 0.32
    assert enabled_by_sdk == by_hash == by_dataplane


def test_sdk_flexible_rollout_default_stickiness__session_when_no_user(
    asgi_server: str, tenant: Tenant, sdk: SdkFactory
) -> None:
    production = tenant.environments.get(slug="production")
    make_flag(
        production,
        "session-rollout",
        strategies=[
            {"name": "flexibleRollout", "parameters": {"rollout": "50", "groupId": "sessions"}}
        ],
    )
    client = sdk(make_token(production))
    sessions = [f"s-{i}" for i in range(2_000)]

    by_sdk = {s for s in sessions if client.is_enabled("session-rollout", {"sessionId": s})}
    by_dataplane = {
        s for s in sessions if flexible_rollout_enabled(50, "sessions", "default", {"sessionId": s})
    }

    assert by_sdk == by_dataplane


def test_sdk__flag_turned_off__seen_at_next_refresh(
    asgi_server: str, tenant: Tenant, sdk: SdkFactory
) -> None:
    production = tenant.environments.get(slug="production")
    flag = make_flag(production, "refunds.auto-approve")
    client = sdk(make_token(production), refresh_interval=1)
    assert client.is_enabled("refunds.auto-approve", {"userId": "1"}) is True

    services.flag_toggle(actor=SYSTEM, flag=flag, enabled=False, reason="300 wrong refunds")

    assert wait_until(lambda: client.is_enabled("refunds.auto-approve", {"userId": "1"}) is False)


def test_sdk_streaming__kill_switch_and_toggle_arrive_without_polling(
    asgi_server: str, tenant: Tenant, sdk: SdkFactory, asgi_served: list[Served]
) -> None:
    production = tenant.environments.get(slug="production")
    bot = AgentFactory(tenant=tenant, slug="support-bot")
    flag = make_flag(production, "support-bot.order-lookup")
    client = sdk(make_token(production), streaming=True)
    assert wait_until(lambda: client.is_enabled("support-bot.order-lookup", {}))
    assert client.is_enabled("kill.agent.support-bot", {}) is False

    services.kill_switch_engage(
        actor=SYSTEM,
        kind="agent_stopped",
        scope="agent",
        tenant=tenant,
        agent=bot,
        reason="answers in Klingon",
    )
    assert wait_until(lambda: client.is_enabled("kill.agent.support-bot", {}))

    services.flag_toggle(actor=SYSTEM, flag=flag, enabled=False, reason="order system down")
    assert wait_until(lambda: not client.is_enabled("support-bot.order-lookup", {}))
    # Its stream reader (launchdarkly-eventsource over urllib3) asks for no content coding
    # but identity, so the stream went out plain (docs/decisions/0027); it could not read gzip
    # anyway: urllib3 2's ``stream()`` leaves a chunked body coded unless
    # ``decode_content=True`` is passed, which the reader does not pass.
    streamed = [s for s in asgi_served if s.path == "/api/client/streaming"]
    asked = {s.request_headers.get("accept-encoding") for s in streamed}
    assert asked <= {None, "identity"}, asked  # http.client's own default: identity
    assert all("content-encoding" not in s.headers for s in streamed)


def test_sdk__constraints_and_variants__evaluate_as_configured(
    asgi_server: str, tenant: Tenant, sdk: SdkFactory
) -> None:
    production = tenant.environments.get(slug="production")
    services.segment_create(
        actor=SYSTEM,
        environment=production,
        name="eu",
        reason="t",
        constraints=[{"contextName": "region", "operator": "IN", "values": ["eu-west-1"]}],
    )
    make_flag(
        production,
        "new-checkout",
        strategies=[
            {
                "name": "default",
                "segments": [1],
                "constraints": [
                    {
                        "contextName": "email",
                        "operator": "STR_ENDS_WITH",
                        "values": ["@ACME.COM"],
                        "caseInsensitive": True,
                    },
                    {"contextName": "appVersion", "operator": "SEMVER_GTE", "value": "2.1.0"},
                    {"contextName": "orders", "operator": "NUM_GT", "value": "3"},
                    {
                        "contextName": "userId",
                        "operator": "IN",
                        "values": ["blocked"],
                        "inverted": True,
                    },
                ],
            }
        ],
        variants=[
            {
                "name": "blue",
                "weightType": "fix",
                "weight": 1000,
                "payload": {"type": "json", "value": '{"c": 1}'},
            },
            {
                "name": "green",
                "weightType": "fix",
                "weight": 0,
                "payload": {"type": "string", "value": "g"},
                "overrides": [{"contextName": "userId", "values": ["vip"]}],
            },
        ],
    )
    client = sdk(make_token(production))
    ok = {
        "userId": "u1",
        "email": "ann@acme.com",
        "appVersion": "2.3.0",
        "orders": "4",
        "region": "eu-west-1",
    }

    assert client.is_enabled("new-checkout", ok) is True
    for field, value in [
        ("email", "ann@globex.com"),
        ("appVersion", "2.0.9"),
        ("orders", "3"),
        ("userId", "blocked"),
        ("region", "us-east-1"),
    ]:
        assert client.is_enabled("new-checkout", {**ok, field: value}) is False, field
    assert client.get_variant("new-checkout", ok)["name"] == "blue"
    assert client.get_variant("new-checkout", ok)["payload"] == {
        "type": "json",
        "value": '{"c": 1}',
    }
    assert client.get_variant("new-checkout", {**ok, "userId": "vip"})["name"] == "green"
    assert client.get_variant("new-checkout", {**ok, "orders": "1"})["name"] == "disabled"


def test_sdk__register_and_metrics__accepted_and_shown_on_the_flag_page(
    asgi_server: str, tenant: Tenant, sdk: SdkFactory, operator
) -> None:  # type: ignore[no-untyped-def]
    production = tenant.environments.get(slug="production")
    flag = make_flag(
        production, "support-bot.tone", variants=[{"name": "friendly"}, {"name": "concise"}]
    )
    client = sdk(
        make_token(production),
        app_name="support-bot",
        instance_id="pod-7",
        register=True,
        metrics=True,
    )
    for i in range(20):
        client.get_variant("support-bot.tone", {"userId": str(i)})
        client.is_enabled("support-bot.tone", {"userId": str(i)})

    client.destroy()  # flushes the last metrics bucket

    assert SdkInstance.objects.filter(
        environment=production, app_name="support-bot", instance_id="pod-7"
    ).exists()
    assert wait_until(
        lambda: FlagUsage.objects.filter(
            environment=production, flag_name="support-bot.tone"
        ).exists()
    )
    usage = FlagUsage.objects.get(environment=production, flag_name="support-bot.tone")
    assert usage.yes + usage.no == 40
    browser = Client()
    browser.force_login(operator)
    page = browser.get(f"/flags/{flag.pk}/").content.decode()
    assert "pod-7" in page and "unleash-python-sdk" in page
    assert "plotly-graph-div" in page and "vendor/plotly/plotly.min.js" in page


class _EmailStrategy:
    """A custom strategy as an application registers it with the SDK."""

    def apply(self, parameters: dict, context: dict) -> bool:
        email = (context.get("properties") or {}).get("email") or context.get("email")
        return email in parameters.get("emails", "").split(",")


def test_sdk__imported_custom_strategy__false_unless_the_app_implements_it(
    asgi_server: str, tenant: Tenant, sdk: SdkFactory
) -> None:
    production = tenant.environments.get(slug="production")
    services.flags_import(
        actor=SYSTEM,
        environment=production,
        reason="migration",
        payload={
            "version": 2,
            "features": [
                {
                    "name": "beta-mail",
                    "enabled": True,
                    "strategies": [
                        {
                            "name": "ActiveForEmail",
                            "parameters": {"emails": "ann@acme.com,bob@acme.com"},
                        }
                    ],
                }
            ],
        },
    )
    token = make_token(production)

    plain = sdk(token)
    with_strategy = sdk(token, custom_strategies={"ActiveForEmail": _EmailStrategy()})

    assert plain.is_enabled("beta-mail", {"email": "ann@acme.com"}) is False
    assert with_strategy.is_enabled("beta-mail", {"email": "ann@acme.com"}) is True
    assert with_strategy.is_enabled("beta-mail", {"email": "eve@evil.com"}) is False


@pytest.mark.xfail(
    strict=True,
    reason=(
        "UnleashClient 6.9.1 (yggdrasil-engine 2.0.0) evaluates applicationHostname as false "
        "even when hostNames lists this machine's hostname (gethostname, getfqdn and $HOSTNAME "
        "tried), and its engine ignores a custom strategy registered under that built-in name. "
        "Other Unleash SDKs evaluate it natively. strict: this fails once the SDK evaluates it, "
        "to drop the marker."
    ),
)
def test_sdk__application_hostname__this_host__enabled(
    asgi_server: str, tenant: Tenant, sdk: SdkFactory
) -> None:
    production = tenant.environments.get(slug="production")
    make_flag(
        production,
        "this-host-only",
        strategies=[
            {"name": "applicationHostname", "parameters": {"hostNames": socket.gethostname()}}
        ],
    )
    client = sdk(make_token(production))

    assert client.is_enabled("this-host-only", {}) is True
