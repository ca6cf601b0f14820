"""Stored markup stays text in a real browser (issue 9, the nets): an agent, a flag, a
kill-switch reason and a budget (name, description, degrade model) whose text is a script are
shown on their pages as the literal text, and none of it runs. Debian's headless Chromium,
never a downloaded build."""

from __future__ import annotations

from django.contrib.auth.models import User
from playwright.sync_api import Page, expect

from apps.audit.services import SystemActor
from apps.budgets.services import budget_create
from apps.flags.services import flag_create, kill_switch_engage
from apps.tenancy.models import Tenant
from apps.tenancy.services import agent_create

from .conftest import log_in

ACTOR = SystemActor("test")
PAYLOADS = [
    "<script>window.__xss = 1</script>",
    '"><img src=x onerror="window.__xss = 2">',
    '</title><svg onload="window.__xss = 3">',
]


def test_stored_script__agent_flag_and_reason_pages__rendered_as_text_never_run(
    asgi_server: str, page: Page, operator: User, tenant: Tenant
) -> None:
    development = tenant.environments.get(slug="development")
    agents = [
        agent_create(actor=ACTOR, tenant=tenant, slug=f"hostile-{i}", name=payload)
        for i, payload in enumerate(PAYLOADS)
    ]
    flag_create(
        actor=ACTOR, environment=development, name="hostile", description=PAYLOADS[0], reason="t"
    )
    kill_switch_engage(
        actor=ACTOR,
        kind="agent_stopped",
        scope="agent",
        tenant=tenant,
        agent=agents[1],
        reason=PAYLOADS[2],
    )
    budget = budget_create(
        actor=ACTOR,
        tenant=tenant,
        data={
            "name": PAYLOADS[1],
            "scope": "agent",
            "agent": agents[2],
            "window": "day",
            "limits": {"cost_usd": "5"},
            "action": "degrade",
            "degrade_mode": "model",
            "degrade_model": PAYLOADS[2],
            "description": PAYLOADS[0],
        },
    )
    log_in(page, asgi_server, operator.username)

    for path in (
        "/agents/",
        f"/agents/{agents[0].pk}/",
        "/flags/kill-switches/",
        "/audit/",
        "/budgets/",
        f"/budgets/{budget.pk}/",
        f"/budgets/{budget.pk}/edit/",
        f"/budgets/{budget.pk}/delete/",
    ):
        page.goto(f"{asgi_server}{path}")
        expect(page.locator("main")).to_be_visible()
        assert page.evaluate("window.__xss") is None, path
        assert page.locator("main script").count() == 0, path
        assert page.locator("main img[src='x'], main svg[onload]").count() == 0, path

    page.goto(f"{asgi_server}/agents/")
    expect(page.get_by_text(PAYLOADS[0]).first).to_be_visible()
    page.goto(f"{asgi_server}/flags/?environment={development.pk}")
    expect(page.get_by_text(PAYLOADS[0]).first).to_be_visible()
    assert page.evaluate("window.__xss") is None
