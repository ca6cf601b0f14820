"""The on-call engineer's journeys through the incident panel (issue 17, part B), in Debian's
headless Chromium, with a fleet of reference runtimes (``dataplane.client.Runtime``,
long-polling this server in threads): from the overview, two clicks — open the panel, press
the action (the reason is prefilled) — then the panel counts the runtimes serving the agent
until every one has acknowledged the revision the action produced."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import Page, expect

from apps.accounts.runtime_tokens import runtime_token_create
from apps.audit.models import AuditEvent
from apps.audit.services import SystemActor
from apps.bundles.services import bundle_version_push
from apps.flags.models import KillSwitch
from apps.rollouts.models import Rollout
from apps.rollouts.services import deployment_create, rollout_start
from apps.tenancy.models import Agent, Environment, Tenant

from ..factories import AgentFactory
from .conftest import log_in

DEMO = Path(__file__).resolve().parents[2] / "apps" / "bundles" / "demo"
SHOTS = Path(__file__).resolve().parents[2] / "var" / "test" / "screenshots"
ACTOR = SystemActor("test")
FLEET = 3


def _wait_for(condition: Callable[[], bool], timeout_s: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return False


def _push(agent: Agent, name: str) -> Any:
    return bundle_version_push(
        actor=ACTOR,
        agent=agent,
        message=name,
        source=(DEMO / f"support-bot-{name}.yaml").read_text(),
    ).version


@pytest.fixture
def fleet(
    asgi_server: str, tenant: Tenant, tmp_path: Path
) -> Iterator[Callable[[Environment], list[Any]]]:
    """Starts ``FLEET`` reference runtimes on an environment; stops them after the test."""
    from dataplane.client import Runtime

    started: list[Any] = []

    def start(environment: Environment) -> list[Any]:
        _, token = runtime_token_create(
            actor=ACTOR, tenant=tenant, environment=environment, name="fleet"
        )
        for i in range(FLEET):
            runtime = Runtime(
                asgi_server,
                token,
                f"pod-{i}",
                cache_dir=tmp_path / str(i),
                heartbeat_interval_s=0.5,
                wait_s=10,
            )
            runtime.start()
            started.append(runtime)
        return started

    yield start
    for runtime in started:
        runtime.stop()


def test_incident__from_the_overview_two_clicks_disable_a_tool__every_runtime_acknowledges(
    asgi_server: str,
    page: Page,
    operator: User,
    tenant: Tenant,
    fleet: Callable[[Environment], list[Any]],
) -> None:
    agent = AgentFactory(tenant=tenant, slug="support-bot", name="Support bot")
    production = tenant.environments.get(slug="production")
    deployment_create(
        actor=ACTOR, agent=agent, environment=production, version=_push(agent, "v1"), reason="go"
    )
    runtimes = fleet(production)
    assert _wait_for(lambda: all(r.snapshot is not None for r in runtimes))
    try:
        log_in(page, asgi_server, operator.username)  # lands on the overview

        # click 1: open the panel; click 2: press the action (the reason is prefilled)
        page.get_by_role("link", name="Incident panel of Support bot in Production").click()
        expect(page.get_by_label("Reason for stopping harm")).to_have_value(
            # the incident, in the tenant's time zone (UTC here); the minute is not asserted
            re.compile(r"^Incident on support-bot in Production at \d\d:\d\d UTC")
        )
        page.get_by_role("button", name="Disable lookup_order").click()

        expect(page.get_by_role("status")).to_contain_text("engaged: tool lookup_order")
        switch = KillSwitch.objects.get()
        assert (switch.kind, switch.tool_pattern, switch.agent, switch.environment) == (
            "tool_disabled",
            "lookup_order",
            agent,
            production,
        )
        revision = switch.engaged_revisions[str(production.pk)]
        status = page.locator("#incident-propagation-status")
        expect(status).to_contain_text(
            f"{FLEET} of {FLEET} runtimes serving Support bot in Production acknowledged "
            f"revision {revision}",
            timeout=20_000,
        )
        expect(status).to_contain_text("every runtime acknowledged")
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / "incident-panel.png"), full_page=True)
        for runtime in runtimes:
            snapshot = runtime.snapshot
            assert snapshot is not None and snapshot.revision >= revision
            assert [s.kind for s in snapshot.switches_for("support-bot")] == ["tool_disabled"]
        event = AuditEvent.objects.get(action="kill_switch.engaged")
        assert event.reason.startswith("Incident on support-bot in Production at ")
        assert event.actor_label == operator.username
    finally:
        page.context.close()  # stop the page's polling before the database is flushed


def test_incident__from_the_overview_two_clicks_roll_back_a_rollout__every_runtime_converges(
    asgi_server: str,
    page: Page,
    operator: User,
    tenant: Tenant,
    fleet: Callable[[Environment], list[Any]],
) -> None:
    agent = AgentFactory(tenant=tenant, slug="support-bot", name="Support bot")
    development = tenant.environments.get(slug="development")
    v1, v2 = _push(agent, "v1"), _push(agent, "v2")
    deployment_create(actor=ACTOR, agent=agent, environment=development, version=v1, reason="go")
    rollout = rollout_start(
        actor=ACTOR, agent=agent, environment=development, candidate=v2, reason="friendlier"
    )
    runtimes = fleet(development)
    assert _wait_for(
        lambda: all(
            r.snapshot is not None and r.snapshot.agents["support-bot"].candidate is not None
            for r in runtimes
        )
    ), "the runtimes never received the candidate"
    try:
        log_in(page, asgi_server, operator.username)

        page.get_by_role("link", name="Incident panel of Support bot in Development").click()
        reason = page.get_by_label("Reason for stabilising")
        expect(reason).to_have_value(re.compile(r"^Incident on support-bot in Development at "))
        reason.fill("refund offers spiking")  # editable: the on-call says what they see
        page.get_by_role("button", name=f"Roll back rollout #{rollout.pk} to v1").click()

        expect(page.get_by_role("status")).to_contain_text(f"Rollout #{rollout.pk} rolled back")
        rollout.refresh_from_db()
        assert rollout.state == Rollout.State.ROLLED_BACK
        revision = rollout.transitions.order_by("-id")[0].revision
        status = page.locator("#incident-propagation-status")
        expect(status).to_contain_text(
            f"{FLEET} of {FLEET} runtimes serving Support bot in Development acknowledged "
            f"revision {revision}",
            timeout=20_000,
        )
        expect(status).to_contain_text("every runtime acknowledged")
        for runtime in runtimes:
            snapshot = runtime.snapshot
            assert snapshot is not None and snapshot.revision >= revision
            release = snapshot.agents["support-bot"]
            assert release.candidate is None and release.rollout is None
            assert release.stable is not None and release.stable.digest == v1.digest
        assert AuditEvent.objects.get(action="rollout.rolled_back").reason == (
            "refund offers spiking"
        )
    finally:
        page.context.close()


def test_incident__empty_reason__field_error_tied_to_the_field_and_nothing_engaged(
    asgi_server: str, page: Page, operator: User, tenant: Tenant
) -> None:
    agent = AgentFactory(tenant=tenant, slug="support-bot", name="Support bot")
    production = tenant.environments.get(slug="production")
    deployment_create(
        actor=ACTOR, agent=agent, environment=production, version=_push(agent, "v1"), reason="go"
    )
    try:
        log_in(page, asgi_server, operator.username)
        page.get_by_role("link", name="Incident panel of Support bot in Production").click()
        reason = page.get_by_label("Reason for stopping harm")
        reason.fill("")
        page.get_by_role("button", name="Stop Support bot").click()

        reason = page.get_by_label("Reason for stopping harm")
        expect(reason).to_have_attribute("aria-invalid", "true")
        expect(reason).to_have_accessible_description(
            "Say why: the reason is kept in the audit log and shown to runtimes."
        )
        assert not KillSwitch.objects.exists()
    finally:
        page.context.close()
