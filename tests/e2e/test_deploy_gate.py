"""The deploy form in Chromium, against production's promotion gate (golden ≥ 95%,
adversarial ≥ 90%): the page shows before the click that v2 misses one evaluation and is
short on the other; an Operator who deploys anyway is refused with the same lines and
nothing changes; an Admin ticks the override, gives a reason, and the deploy goes through
with the reason in its audit event."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

from playwright.sync_api import Page, expect

from apps.audit.models import AuditEvent
from apps.audit.services import SystemActor
from apps.bundles.services import bundle_version_push, evaluation_record, promotion_gate_set
from apps.core.roles import Role
from apps.rollouts.models import Deployment
from apps.rollouts.selectors import deployment_current
from apps.rollouts.services import deployment_create
from apps.tenancy.models import Agent, Tenant

from ..factories import AgentFactory, make_user
from .conftest import log_in

DEMO = Path(__file__).resolve().parents[2] / "apps" / "bundles" / "demo"
SHOTS = Path(__file__).resolve().parents[2] / "var" / "test" / "screenshots"
ACTOR = SystemActor("test")
MISSING = "adversarial: no results yet (needs 90.0%)"
SHORT = "golden: 91.0% < 95.0% required (9 of 100 failed)"


def _setup(tenant: Tenant) -> Agent:
    agent = AgentFactory(tenant=tenant, slug="support-bot", name="Support bot")
    source = (DEMO / "support-bot-v1.yaml").read_text()
    production = tenant.environments.get(slug="production")
    promotion_gate_set(
        actor=ACTOR,
        environment=production,
        requirements=[
            {"suite": "golden", "min_pass_rate": Decimal("0.95")},
            {"suite": "adversarial", "min_pass_rate": Decimal("0.9")},
        ],
    )
    versions = [
        bundle_version_push(
            actor=ACTOR,
            agent=agent,
            message=f"build {n}",
            source=source.replace("Answers customer", f"Answers (build {n}) customer"),
        ).version
        for n in (1, 2)
    ]
    evaluation_record(actor=ACTOR, version=versions[0], suite="golden", passed=99, failed=1)
    evaluation_record(actor=ACTOR, version=versions[0], suite="adversarial", passed=48, failed=2)
    evaluation_record(actor=ACTOR, version=versions[1], suite="golden", passed=91, failed=9)
    deployment_create(
        actor=ACTOR, agent=agent, environment=production, version=versions[0], reason="first"
    )
    return agent


def _open_deploy_of_v2(page: Page, base_url: str, agent: Agent, tenant: Tenant) -> None:
    production = tenant.environments.get(slug="production")
    page.goto(f"{base_url}/agents/{agent.pk}/deploy/?environment={production.pk}")
    page.get_by_label("Show the gates of").select_option(label="v2")
    page.get_by_role("button", name="Show", exact=True).click()  # choosing alone changes nothing
    expect(page.get_by_role("heading", name="Promotion gates for v2")).to_be_visible()
    row = page.locator('[data-testid="deploy-gates"] tr[data-environment="production"]')
    # before the click: the gate's state, suite by suite
    expect(row.get_by_text("gate not met")).to_be_visible()
    expect(row.get_by_text(MISSING)).to_be_visible()
    expect(row.get_by_text(SHORT)).to_be_visible()
    staging = page.locator('[data-testid="deploy-gates"] tr[data-environment="staging"]')
    expect(staging.get_by_text("no gate")).to_be_visible()
    page.get_by_label("Environment").select_option(value=str(production.pk))
    page.get_by_label("Version").select_option(label="v2 — build 2")
    page.get_by_label("Reason").fill("friendlier tone")


def test_deploy__gate_not_met__operator_refused_admin_overrides_with_reason(
    live_server: Any, page: Page, tenant: Tenant
) -> None:
    agent = _setup(tenant)
    production = tenant.environments.get(slug="production")
    make_user(Role.OPERATOR, tenant, username="olivia")
    make_user(Role.ADMIN, username="ada")
    SHOTS.mkdir(parents=True, exist_ok=True)

    log_in(page, live_server.url, "olivia")
    _open_deploy_of_v2(page, live_server.url, agent, tenant)
    expect(page.get_by_label("Override the promotion gate (Admins)")).to_have_count(0)
    page.get_by_role("button", name="Deploy now").click()
    errors = page.locator("#id_version_error")
    expect(errors).to_contain_text(MISSING)
    expect(errors).to_contain_text(SHORT)
    page.screenshot(path=str(SHOTS / "deploy-gate-refused.png"), full_page=True)
    assert deployment_current(agent=agent, environment=production).version.number == 1
    assert not AuditEvent.objects.filter(action="deployment.deployed", actor_label="olivia")

    page.context.clear_cookies()
    log_in(page, live_server.url, "ada")
    _open_deploy_of_v2(page, live_server.url, agent, tenant)
    override = page.get_by_label("Override the promotion gate (Admins)")
    override.check()
    page.get_by_role("button", name="Deploy now").click()
    expect(page.locator("#id_override_reason_error")).to_contain_text("Say why")
    assert deployment_current(agent=agent, environment=production).version.number == 1
    page.get_by_label("Override the promotion gate (Admins)").check()
    page.get_by_label("Why the gate may be passed").fill("adversarial suite is being rebuilt")
    page.screenshot(path=str(SHOTS / "deploy-gate-override-form.png"), full_page=True)
    page.get_by_role("button", name="Deploy now").click()
    expect(page.get_by_role("status")).to_contain_text("v2 is now stable")
    expect(page.get_by_role("status")).to_contain_text("promotion gate was overridden")
    page.screenshot(path=str(SHOTS / "deploy-gate-overridden.png"), full_page=True)

    live = deployment_current(agent=agent, environment=production)
    assert live.version.number == 2 and live.gate_override == "adversarial suite is being rebuilt"
    event = AuditEvent.objects.get(action="deployment.deployed", actor_label="ada")
    assert event.reason == "friendlier tone"
    assert event.after["gate_override"] == "adversarial suite is being rebuilt"
    assert event.after["gate_failures"] == [MISSING, SHORT]
    assert Deployment.objects.filter(agent=agent).count() == 2
