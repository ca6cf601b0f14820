"""Two operators open the rollback confirmation of one agent at the same time, in Chromium:
the page names the target, the first confirms, the second is told who rolled back first and
nothing else changes; the next rollback goes further back."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from playwright.sync_api import Browser, expect

from apps.audit.services import SystemActor
from apps.bundles.services import bundle_version_push
from apps.core.roles import Role
from apps.rollouts.models import Deployment
from apps.rollouts.selectors import deployment_current
from apps.rollouts.services import deployment_create
from apps.tenancy.models import Tenant

from ..factories import AgentFactory, make_user
from .conftest import log_in

DEMO = Path(__file__).resolve().parents[2] / "apps" / "bundles" / "demo"
SHOTS = Path(__file__).resolve().parents[2] / "var" / "test" / "screenshots"


def test_two_operators_roll_back_at_once__second_is_told_who(
    live_server: Any, browser: Browser, tenant: Tenant
) -> None:
    agent = AgentFactory(tenant=tenant, slug="support-bot", name="Support bot")
    source = (DEMO / "support-bot-v1.yaml").read_text()
    staging = tenant.environments.get(slug="staging")
    for n in (1, 2, 3):
        version = bundle_version_push(
            actor=SystemActor("test"),
            agent=agent,
            message=f"build {n}",
            source=source.replace("Answers customer", f"Answers (build {n}) customer"),
        ).version
        deployment_create(
            actor=SystemActor("test"), agent=agent, environment=staging, version=version, reason="s"
        )
    for name in ("alice", "bob"):
        make_user(Role.OPERATOR, tenant, username=name)
    contexts = [browser.new_context(viewport={"width": 1280, "height": 900}) for _ in range(2)]
    try:
        _race_in_two_tabs(live_server.url, contexts, agent, staging)
    finally:
        # Close the tabs before the database is flushed: their htmx polling would hold it.
        for context in contexts:
            context.close()


def _race_in_two_tabs(base_url: str, contexts: list[Any], agent: Any, staging: Any) -> None:
    pages = []
    for name, context in zip(("alice", "bob"), contexts, strict=True):
        page = context.new_page()
        page.set_default_timeout(15_000)
        log_in(page, base_url, name)
        page.goto(f"{base_url}/agents/{agent.pk}/environments/{staging.pk}/rollback/")
        expect(
            page.get_by_role("heading", name="Roll back Support bot in Staging to v2?")
        ).to_be_visible()
        expect(page.get_by_text("goes back from v3 to v2")).to_be_visible()
        page.get_by_label("Reason").fill(f"{name}: refunds spiked")
        pages.append(page)
    alice, bob = pages
    SHOTS.mkdir(parents=True, exist_ok=True)
    bob.screenshot(path=str(SHOTS / "rollback-confirm.png"), full_page=True)

    alice.get_by_role("button", name="Roll back to v2 now").click()
    expect(alice.get_by_role("status")).to_contain_text("serves v2 again")
    bob.get_by_role("button", name="Roll back to v2 now").click()
    expect(bob.get_by_role("alert")).to_contain_text("was changed by alice")
    bob.screenshot(path=str(SHOTS / "rollback-refused.png"), full_page=True)

    assert deployment_current(agent=agent, environment=staging).version.number == 2
    assert Deployment.objects.filter(kind="rollback").count() == 1
    # The refusal restates the current effect — further back, never to v3 again — and a
    # second, informed click acts on what is now shown.
    expect(bob.get_by_text("goes back from v2 to v1")).to_be_visible()
    bob.get_by_role("button", name="Roll back to v1 now").click()
    expect(bob.get_by_role("status")).to_contain_text("serves v1 again")
    assert deployment_current(agent=agent, environment=staging).version.number == 1
