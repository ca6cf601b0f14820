"""The browser UI (Django's test client): flag editor with inline errors, confirmation and
reason for production toggles, the Kill switches page, import, the usage chart and plotly.js
served locally; plus the CLI import/export and the demo data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from apps.accounts.models import RuntimeToken
from apps.audit.models import AuditEvent
from apps.flags import services
from apps.flags.demo import seed
from apps.flags.models import Flag, FlagUsage, KillSwitch
from apps.tenancy.models import Environment, Tenant

from ..factories import AgentFactory
from ..html import get_form_urls
from .conftest import SYSTEM, make_flag, make_token

pytestmark = pytest.mark.django_db


@pytest.fixture
def browser(operator) -> Client:  # type: ignore[no-untyped-def]
    client = Client()
    client.force_login(operator)
    return client


def test_sidebar__flags_link__goes_to_flags(browser: Client, tenant: Tenant) -> None:
    page = browser.get("/").content.decode()
    assert 'href="/flags/"' in page
    assert browser.get("/flags/").status_code == 200


def test_flag_list__shows_environment_flags_and_empty_state(
    browser: Client, development: Environment, production: Environment
) -> None:
    make_flag(
        development,
        "dev-flag",
        strategies=[{"name": "flexibleRollout", "parameters": {"rollout": "10"}}],
    )

    dev_page = browser.get(f"/flags/?environment={development.pk}").content.decode()
    prod_page = browser.get(f"/flags/?environment={production.pk}").content.decode()

    assert "dev-flag" in dev_page and "flexibleRollout 10%" in dev_page
    assert "dev-flag" not in prod_page and "No flags in Production yet" in prod_page


def test_flag_create_form__bad_json_and_bad_strategy__inline_errors_nothing_stored(
    browser: Client, development: Environment
) -> None:
    bad_json = browser.post(
        f"/flags/new/?environment={development.pk}",
        {
            "name": "checkout",
            "type": "release",
            "strategies": "[{",
            "variants": "",
            "dependencies": "",
        },
    )
    bad_rollout = browser.post(
        f"/flags/new/?environment={development.pk}",
        {
            "name": "checkout",
            "type": "release",
            "variants": "",
            "dependencies": "",
            "strategies": json.dumps(
                [{"name": "flexibleRollout", "parameters": {"rollout": "300"}}]
            ),
        },
    )

    assert bad_json.status_code == 200 and "Not valid JSON" in bad_json.content.decode()
    page = bad_rollout.content.decode()
    assert "Strategy 1: rollout must be a whole number from 0 to 100." in page
    assert not Flag.objects.exists()


def test_flag_create_form__valid__created_and_redirected(
    browser: Client, development: Environment
) -> None:
    response = browser.post(
        f"/flags/new/?environment={development.pk}",
        {
            "name": "checkout",
            "type": "operational",
            "enabled": "on",
            "variants": "",
            "dependencies": "",
            "strategies": json.dumps([{"name": "userWithId", "parameters": {"userIds": "1,2"}}]),
        },
    )

    flag = Flag.objects.get(name="checkout")
    assert response.status_code == 302 and response["Location"] == f"/flags/{flag.pk}/"
    assert flag.enabled and flag.type == "operational"


def test_flag_edit_form__production__reason_required(
    browser: Client, production: Environment
) -> None:
    flag = make_flag(production, "checkout")
    data = {
        "type": "release",
        "strategies": "[]",
        "variants": "",
        "dependencies": "",
        "description": "x",
        "expected_version": flag.version,
    }

    refused = browser.post(f"/flags/{flag.pk}/edit/", data)
    saved = browser.post(f"/flags/{flag.pk}/edit/", {**data, "reason": "ticket 7"})

    assert refused.status_code == 200 and "errorlist" in refused.content.decode()
    assert saved.status_code == 302
    flag.refresh_from_db()
    assert flag.strategies == [] and flag.description == "x"


def test_flag_toggle__production__confirmation_then_reason(
    browser: Client, production: Environment
) -> None:
    flag = make_flag(production, "checkout")

    confirm = browser.get(f"/flags/{flag.pk}/toggle/").content.decode()
    assert f'name="expected_version" value="{flag.version}"' in confirm
    without_reason = browser.post(
        f"/flags/{flag.pk}/toggle/", {"reason": "", "expected_version": flag.version}
    )
    flag.refresh_from_db()
    assert flag.enabled
    with_reason = browser.post(
        f"/flags/{flag.pk}/toggle/", {"reason": "refund storm", "expected_version": flag.version}
    )

    assert "turns OFF in Production" in confirm
    assert without_reason.status_code == 200
    assert with_reason.status_code == 302
    flag.refresh_from_db()
    assert not flag.enabled
    assert AuditEvent.objects.get(action="flag.disabled").reason == "refund storm"


def test_flag_toggle__development__one_click(browser: Client, development: Environment) -> None:
    flag = make_flag(development, "checkout")
    response = browser.post(
        f"/flags/{flag.pk}/toggle/",
        {"next": f"/flags/?environment={development.pk}", "expected_version": flag.version},
    )
    flag.refresh_from_db()
    assert response.status_code == 302 and not flag.enabled


def test_flag_detail__usage_chart_and_instances(browser: Client, production: Environment) -> None:
    flag = make_flag(production, "checkout")
    FlagUsage.objects.create(
        environment=production,
        flag_name="checkout",
        app_name="web",
        hour=timezone.now().replace(minute=0, second=0, microsecond=0),
        yes=5,
        no=2,
    )

    page = browser.get(f"/flags/{flag.pk}/").content.decode()

    assert "plotly-graph-div" in page and "How often did SDKs find checkout on?" in page
    assert "/static/vendor/plotly/plotly.min.js" in page
    assert "No Unleash SDK has registered" in page


def test_plotly_js__served_locally_from_the_plotly_package(browser: Client) -> None:
    response = browser.get("/static/vendor/plotly/plotly.min.js")
    assert response.status_code == 200
    assert b"plotly" in b"".join(response.streaming_content)[:2000].lower()  # type: ignore[attr-defined]


def test_flag_pages__other_tenant__404(browser: Client, other_tenant: Tenant) -> None:
    foreign = make_flag(other_tenant.environments.get(), "secret")
    for url in (
        f"/flags/{foreign.pk}/",
        f"/flags/{foreign.pk}/edit/",
        f"/flags/{foreign.pk}/toggle/",
    ):
        assert browser.get(url).status_code == 404
    assert browser.post(f"/flags/{foreign.pk}/toggle/").status_code == 404
    assert Flag.objects.get(pk=foreign.pk).enabled


def test_flag_pages__viewer__reads_but_cannot_change(viewer, development: Environment) -> None:  # type: ignore[no-untyped-def]
    flag = make_flag(development, "checkout")
    client = Client()
    client.force_login(viewer)
    assert client.get(f"/flags/{flag.pk}/").status_code == 200
    assert "Turn off" not in client.get(f"/flags/{flag.pk}/").content.decode()
    assert client.post(f"/flags/{flag.pk}/toggle/").status_code == 403
    assert client.get(f"/flags/new/?environment={development.pk}").status_code == 403
    flag.refresh_from_db()
    assert flag.enabled


# --------------------------------------------------------------------------- kill switches page


def test_kill_switch_page__engage_confirms_effect_and_requires_reason(
    browser: Client, tenant: Tenant
) -> None:
    bot = AgentFactory(tenant=tenant, slug="support-bot", name="Support bot")
    page = browser.get("/flags/kill-switches/").content.decode()
    assert "Stop Support bot" in page and "No kill switch is engaged" in page

    params = {"kind": "agent_stopped", "scope": "agent", "agent": bot.pk}
    confirm = browser.get("/flags/kill-switches/engage/", params).content.decode()
    no_reason = browser.post("/flags/kill-switches/engage/", {**params, "reason": ""})
    assert not KillSwitch.objects.exists()
    engaged = browser.post(
        "/flags/kill-switches/engage/", {**params, "reason": "answers in Klingon"}
    )

    assert "Support bot stops entirely in every environment of Acme (3)" in confirm
    assert no_reason.status_code == 200 and "errorlist" in no_reason.content.decode()
    assert engaged.status_code == 302
    switch = KillSwitch.objects.get()
    listing = browser.get("/flags/kill-switches/").content.decode()
    assert "KILLED" in listing and "answers in Klingon" in listing
    for environment_id, revision in switch.engaged_revisions.items():
        assert (
            # an agent's switch: its propagation counts the runtimes serving that agent
            f'hx-get="/runtimes/propagation/?environment={environment_id}&revision={revision}'
            f'&agent={bot.pk}"' in listing
        )
    assert 'hx-trigger="load, every 2s"' in listing


def test_kill_switch_page__tool_form_errors_then_release(browser: Client, tenant: Tenant) -> None:
    production = tenant.environments.get(slug="production")
    bad = browser.get(
        "/flags/kill-switches/engage/",
        {"kind": "tool_disabled", "scope": "tenant", "tool_pattern": ""},
    )
    assert "Name the tool" in bad.content.decode()

    browser.post(
        "/flags/kill-switches/engage/",
        {
            "kind": "tool_disabled",
            "scope": "environment",
            "environment": production.pk,
            "tool_pattern": "issue_*",
            "reason": "refunds",
        },
    )
    switch = KillSwitch.objects.get()
    assert switch.environment == production and switch.tool_pattern == "issue_*"

    confirm = browser.get(f"/flags/kill-switches/{switch.pk}/release/").content.decode()
    released = browser.post(
        f"/flags/kill-switches/{switch.pk}/release/",
        {"reason": "tool fixed", "expected_version": switch.version},
    )

    assert "the stop is lifted in 1 environment" in confirm
    assert released.status_code == 302
    switch.refresh_from_db()
    assert switch.released_at is not None and switch.release_reason == "tool fixed"


def test_kill_switch_page__revoke_runtime_token(browser: Client, production: Environment) -> None:
    make_token(production)
    token = RuntimeToken.objects.get()
    page = browser.get("/flags/kill-switches/").content.decode()
    assert str(token) in page
    # the one revoke page, which comes back here
    revoke = f"/runtimes/tokens/{token.pk}/revoke/?next=/flags/kill-switches/"
    assert revoke in get_form_urls(page)  # a real button (a GET form carrying next=) opens it
    assert "Every runtime using it" in browser.get(revoke).content.decode()

    response = browser.post(revoke, {"reason": "leaked in a log"})

    token.refresh_from_db()
    assert response.status_code == 302 and token.revoked_at is not None
    assert response["Location"] == "/flags/kill-switches/"
    assert AuditEvent.objects.get(action="runtime_token.revoked").reason == "leaked in a log"


def test_kill_switch_page__global_scope__only_for_admins(
    browser: Client, admin, tenant: Tenant
) -> None:  # type: ignore[no-untyped-def]
    params = {"kind": "tool_disabled", "scope": "global", "tool_pattern": "shell", "reason": "cve"}
    browser.post("/flags/kill-switches/engage/", params)
    assert not KillSwitch.objects.exists()

    admin_browser = Client()
    admin_browser.force_login(admin)
    admin_browser.post("/flags/kill-switches/engage/", params)
    assert KillSwitch.objects.get().scope == "global"


# ------------------------------------------------------------ import (UI and CLI), demo


def test_import_page__pasted_payload__imported_with_summary(
    browser: Client, development: Environment
) -> None:
    payload = {
        "version": 2,
        "features": [
            {
                "name": "from-unleash",
                "enabled": True,
                "strategies": [{"name": "myCustom", "parameters": {}}],
            }
        ],
    }
    response = browser.post(
        "/flags/import/",
        {"environment": development.pk, "mode": "merge", "payload": json.dumps(payload)},
    )
    page = response.content.decode()
    assert response.status_code == 200 and "from-unleash" in page and "myCustom" in page
    assert Flag.objects.filter(environment=development, name="from-unleash").exists()


def test_flags_command__import_and_export_round_trip(
    tmp_path: Path, tenant: Tenant, development: Environment
) -> None:
    source = {
        "version": 2,
        "segments": [
            {
                "id": 7,
                "name": "beta",
                "constraints": [
                    {
                        "contextName": "userId",
                        "operator": "IN",
                        "values": ["1"],
                        "caseInsensitive": False,
                        "inverted": False,
                    }
                ],
            }
        ],
        "features": [
            {
                "name": "a",
                "type": "release",
                "enabled": True,
                "description": "",
                "project": "default",
                "stale": False,
                "impressionData": False,
                "variants": [],
                "strategies": [
                    {
                        "name": "default",
                        "parameters": {},
                        "constraints": [],
                        "segments": [7],
                        "variants": [],
                    }
                ],
            }
        ],
    }
    path = tmp_path / "features.json"
    path.write_text(json.dumps(source))

    call_command("flags", "import", str(path), "--tenant", "acme", "--environment", "development")
    out = tmp_path / "out.json"
    with out.open("w") as handle:
        call_command(
            "flags", "export", "--tenant", "acme", "--environment", "development", stdout=handle
        )
    exported = json.loads(out.read_text())

    assert exported["features"] == source["features"]
    assert exported["segments"] == source["segments"]


def test_flags_command__invalid_file__nothing_imported(tmp_path: Path, tenant: Tenant) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"features": [{"name": "x", "enabled": "yes"}]}))
    with pytest.raises(CommandError, match=r"payload\.features\.0\.enabled"):
        call_command(
            "flags", "import", str(path), "--tenant", "acme", "--environment", "development"
        )
    assert not Flag.objects.exists()


def test_demo_seed__idempotent(tenant: Tenant) -> None:
    first = seed(tenant)
    second = seed(tenant)
    assert len(first) == 3 * tenant.environments.count() and second == []
    rollout = Flag.objects.filter(name="support-bot.new-refund-flow").first()
    assert rollout is not None and rollout.strategies[0]["parameters"]["rollout"] == "10"


# --------------------------------------------------------------------------- query budgets


def _queries(client: Client, url: str) -> int:
    with CaptureQueriesContext(connection) as captured:
        assert client.get(url).status_code == 200
    return len(captured)


def _add_rows(tenant: Tenant, environment: Environment, start: int, count: int) -> None:
    for i in range(start, start + count):
        make_flag(
            environment,
            f"flag-{i}",
            strategies=[{"name": "flexibleRollout", "parameters": {"rollout": "5"}}],
        )
        agent = AgentFactory(tenant=tenant, slug=f"agent-{i}")
        services.kill_switch_engage(
            actor=SYSTEM,
            kind="agent_stopped",
            scope="agent",
            tenant=tenant,
            agent=agent,
            reason="r",
        )
        switch = services.kill_switch_engage(
            actor=SYSTEM,
            kind="tool_disabled",
            scope="agent",
            tenant=tenant,
            agent=agent,
            tool_pattern="t",
            reason="r",
        )
        services.kill_switch_release(actor=SYSTEM, switch=switch, reason="done")


@pytest.mark.parametrize(
    "url",
    [
        "/flags/?environment={env}",
        "/flags/kill-switches/",
        "/api/v1/flags/?environment={env}",
        "/api/v1/kill-switches/",
    ],
)
def test_list_pages__query_count_does_not_grow_with_rows(
    browser: Client, tenant: Tenant, development: Environment, url: str
) -> None:
    url = url.format(env=development.pk)
    _add_rows(tenant, development, 0, 2)
    _queries(browser, url)  # warm the per-process caches (content types, permissions)
    few = _queries(browser, url)
    _add_rows(tenant, development, 2, 10)

    assert _queries(browser, url) == few
