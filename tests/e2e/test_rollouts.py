"""One-click rollback of a running rollout, in Debian's headless Chromium, with a fleet of
reference runtimes (``dataplane.client.Runtime``, long-polling this server in threads): the
operator opens the rollout page, clicks Roll back, confirms with a reason, and watches the
convergence panel reach every runtime; every runtime's applied snapshot then has no
candidate."""

from __future__ import annotations

import time
from pathlib import Path

from django.contrib.auth.models import User
from playwright.sync_api import Page, expect

from apps.accounts.runtime_tokens import runtime_token_create
from apps.audit.models import AuditEvent
from apps.audit.services import SystemActor
from apps.bundles.services import bundle_version_push
from apps.rollouts.models import Rollout
from apps.rollouts.services import deployment_create, rollout_start
from apps.rollouts.services.analysing import rollout_analyse
from apps.tenancy.models import Tenant

from ..factories import AgentFactory
from .conftest import log_in

DEMO = Path(__file__).resolve().parents[2] / "apps" / "bundles" / "demo"
SHOTS = Path(__file__).resolve().parents[2] / "var" / "test" / "screenshots"
ACTOR = SystemActor("test")
FLEET = 3


def _wait_for(condition, timeout_s: float = 20.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return False


def test_rollout_page__one_click_rollback__convergence_reaches_every_runtime(
    asgi_server: str, page: Page, operator: User, tenant: Tenant, tmp_path: Path
) -> None:
    from dataplane.client import Runtime

    agent = AgentFactory(tenant=tenant, slug="support-bot", name="Support bot")
    development = tenant.environments.get(slug="development")
    v1, v2 = (
        bundle_version_push(
            actor=ACTOR,
            agent=agent,
            message=name,
            source=(DEMO / f"support-bot-{name}.yaml").read_text(),
        ).version
        for name in ("v1", "v2")
    )
    deployment_create(actor=ACTOR, agent=agent, environment=development, version=v1, reason="go")
    rollout = rollout_start(
        actor=ACTOR, agent=agent, environment=development, candidate=v2, reason="friendlier"
    )
    _, token = runtime_token_create(
        actor=ACTOR, tenant=tenant, environment=development, name="fleet"
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
        for i in range(FLEET)
    ]
    for runtime in runtimes:
        runtime.start()
    try:
        # Given: every runtime serves the candidate to its 1% of sessions.
        assert _wait_for(
            lambda: all(
                r.snapshot is not None and r.snapshot.agents["support-bot"].candidate is not None
                for r in runtimes
            )
        ), "the runtimes never received the candidate"

        log_in(page, asgi_server, operator.username)
        page.goto(f"{asgi_server}/rollouts/{rollout.pk}/")
        expect(page.get_by_role("heading", level=1)).to_contain_text(
            f"Rollout #{rollout.pk}: Support bot v2 in Development"
        )
        expect(page.locator(".steps [aria-current=step]")).to_contain_text("1%")
        expect(page.locator(".convergence-panel")).to_contain_text(
            f"{FLEET}/{FLEET} runtimes on revision", timeout=20_000
        )

        # When: one click, a confirmation stating the effect, a reason.
        page.get_by_role("button", name="Roll back…").click()
        expect(page.get_by_role("heading", name="Roll back Support bot in Development to v1?"))
        expect(page.get_by_text(f"goes back to v1 on {FLEET} live runtimes")).to_be_visible()
        page.get_by_label("Reason").fill("refund offers spiking")
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / "rollout-rollback-confirm.png"), full_page=True)
        page.get_by_role("button", name="Roll back to v1 now").click()

        # Then: back on the rollout page, the panel counts runtimes on the new revision
        # until every one has acknowledged it.
        expect(page.get_by_role("status")).to_contain_text(f"Rollout #{rollout.pk} is rolled back")
        rollout.refresh_from_db()
        assert rollout.state == Rollout.State.ROLLED_BACK
        revision = rollout.transitions.order_by("-id").first().revision  # type: ignore[union-attr]
        expect(page.locator(".convergence-panel")).to_contain_text(
            f"{FLEET}/{FLEET} runtimes on revision {revision}", timeout=20_000
        )
        expect(page.locator(".convergence-panel")).to_contain_text("every runtime acknowledged")
        expect(page.locator(".steps [aria-current=step]")).to_contain_text("rolled back here")
        page.screenshot(path=str(SHOTS / "rollout-rolled-back.png"), full_page=True)
        for runtime in runtimes:
            snapshot = runtime.snapshot
            assert snapshot is not None and snapshot.revision >= revision
            release = snapshot.agents["support-bot"]
            assert release.candidate is None and release.rollout is None
            assert release.stable is not None and release.stable.digest == v1.digest
        event = AuditEvent.objects.get(action="rollout.rolled_back")
        assert event.reason == "refund offers spiking"
    finally:
        page.context.close()  # stop the page's polling before the database is flushed
        for runtime in runtimes:
            runtime.stop()


def test_rollout_page__verdicts_and_charts__drawn_in_the_browser(
    asgi_server: str, page: Page, operator: User, tenant: Tenant
) -> None:
    """The charts of candidate against stable (plotly, served from static/, no inline
    script) and the verdict table with each metric's reason, as an operator sees them."""
    from django.utils import timezone

    from apps.telemetry.services import records_ingest

    agent = AgentFactory(tenant=tenant, slug="support-bot", name="Support bot")
    development = tenant.environments.get(slug="development")
    v1, v2 = (
        bundle_version_push(
            actor=ACTOR,
            agent=agent,
            message=name,
            source=(DEMO / f"support-bot-{name}.yaml").read_text(),
        ).version
        for name in ("v1", "v2")
    )
    deployment_create(actor=ACTOR, agent=agent, environment=development, version=v1, reason="go")
    rollout = rollout_start(
        actor=ACTOR, agent=agent, environment=development, candidate=v2, reason="friendlier"
    )
    token, _ = runtime_token_create(
        actor=ACTOR, tenant=tenant, environment=development, name="fleet"
    )
    now = timezone.now()
    records_ingest(
        token=token,
        records=[
            {
                "request_id": f"{variant}-{i}",
                "agent": "support-bot",
                "session_id": f"s-{i}",
                "variant": variant,
                "version_digest": version.digest,
                "started_at": now.isoformat(),
                "latency_ms": 200 + i,
                "cost_usd": "0.002",
                "outcome": "error" if i % (3 if variant == "candidate" else 25) == 0 else "success",
            }
            for variant, version in (("stable", v1), ("candidate", v2))
            for i in range(50)
        ],
    )
    # The real analysis tick on what was reported: a third of the candidate's requests fail
    # against 4% of stable's, so it rolls the rollout back and says why.
    record = rollout_analyse(rollout_id=rollout.pk)
    assert record is not None and record.decision == "rollback"
    try:
        log_in(page, asgi_server, operator.username)
        page.goto(f"{asgi_server}/rollouts/{rollout.pk}/")
        verdicts = page.get_by_role("row").filter(has_text="error_rate")
        expect(verdicts.first).to_contain_text("FAIL")
        expect(page.get_by_text("rolled back", exact=True).first).to_be_visible()
        charts = page.locator("#rollout-charts .plotly-graph-div .main-svg")
        expect(charts.first).to_be_visible(timeout=20_000)
        assert charts.count() >= 4
        expect(
            page.get_by_role("img", name="error rate of the candidate against stable")
        ).to_be_visible()
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / "rollout-page.png"), full_page=True)
    finally:
        page.context.close()
