"""An incident in a real headless Chromium (Debian's, never a downloaded build): from the Kill
switches page, stop an agent with one click plus a confirmation and a reason; the switch is
listed as engaged with its propagation fragment, and the audit log has the event."""

from __future__ import annotations

from pathlib import Path

from django.contrib.auth.models import User
from playwright.sync_api import Page, expect

from apps.flags.models import KillSwitch
from apps.tenancy.models import Tenant

from ..factories import AgentFactory
from .conftest import log_in


def test_kill_switch__stop_agent_from_the_page__engaged_and_audited(
    asgi_server: str,
    page: Page,
    operator: User,
    tenant: Tenant,
) -> None:
    AgentFactory(tenant=tenant, slug="support-bot", name="Support bot")
    log_in(page, asgi_server, operator.username)

    page.get_by_role("navigation", name="Main").get_by_role(
        "link", name="Flags & kill switches"
    ).click()
    page.get_by_role("navigation", name="Flags and kill switches").get_by_role(
        "link", name="Kill switches"
    ).click()
    expect(page.get_by_text("No kill switch is engaged in Acme.")).to_be_visible()

    # one click on the big button, then a confirmation that states the effect
    page.get_by_role("link", name="Stop Support bot…").click()
    expect(page.get_by_role("status")).to_contain_text(
        "Support bot stops entirely in every environment of Acme"
    )
    page.get_by_role("button", name="Engage kill switch").click()
    expect(page.locator(".errorlist")).to_contain_text("required")  # no reason, nothing engaged
    assert not KillSwitch.objects.exists()
    page.get_by_label("Reason").fill("support bot answers in Klingon")
    page.get_by_role("button", name="Engage kill switch").click()

    engaged = page.locator(".kill-engaged")
    expect(engaged).to_have_count(1)
    expect(engaged).to_contain_text("KILLED")
    expect(engaged).to_contain_text("support-bot stopped")
    expect(engaged).to_contain_text("support bot answers in Klingon")
    switch = KillSwitch.objects.get()
    assert switch.is_engaged and switch.reason == "support bot answers in Klingon"
    for environment_id, revision in switch.engaged_revisions.items():
        expect(
            engaged.locator(
                f'[hx-get^="/runtimes/propagation/?environment={environment_id}&revision={revision}"]'
            )
        ).to_have_count(1)

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Audit").click()
    row = page.get_by_role("row").filter(has_text="kill_switch.engaged")
    expect(row).to_have_count(1)
    expect(row).to_contain_text(operator.username)
    expect(row).to_contain_text("support bot answers in Klingon")


def test_kill_switch__engaged_in_the_browser__propagation_count_reaches_the_runtimes(
    asgi_server: str,
    page: Page,
    operator: User,
    tenant: Tenant,
    tmp_path: Path,
) -> None:
    """Three reference runtimes (dataplane.Runtime, long-polling this server) serve production;
    the operator stops the agent in the browser and watches the propagation count on the Kill
    switches page reach 3/3 as the runtimes apply the revision and acknowledge it."""
    from apps.accounts.runtime_tokens import runtime_token_create
    from apps.audit.services import SystemActor
    from dataplane.client import Runtime

    AgentFactory(tenant=tenant, slug="support-bot", name="Support bot")
    production = tenant.environments.get(slug="production")
    _, token = runtime_token_create(
        actor=SystemActor("test"), tenant=tenant, environment=production, name="fleet"
    )
    runtimes = [
        Runtime(
            asgi_server,
            token,
            f"pod-{i}",
            cache_dir=tmp_path / str(i),
            heartbeat_interval_s=0.5,
            wait_s=10,
        )
        for i in range(3)
    ]
    for runtime in runtimes:
        runtime.start()
    try:
        log_in(page, asgi_server, operator.username)
        page.goto(f"{asgi_server}/flags/kill-switches/")
        page.get_by_role("link", name="Stop Support bot…").click()
        page.get_by_label("Reason").fill("refund loop in production")
        page.get_by_role("button", name="Engage kill switch").click()

        switch = KillSwitch.objects.get()
        revision = switch.engaged_revisions[str(production.pk)]
        fragment = page.locator(
            f'[hx-get^="/runtimes/propagation/?environment={production.pk}&revision={revision}"]'
        )
        expect(fragment).to_contain_text(f"3/3 runtimes on revision {revision}", timeout=20_000)
        for runtime in runtimes:
            assert runtime.snapshot is not None
            assert [s.kind for s in runtime.snapshot.switches_for("support-bot")] == [
                "agent_stopped"
            ]
    finally:
        for runtime in runtimes:
            runtime.stop()
