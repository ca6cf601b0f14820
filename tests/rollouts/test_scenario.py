"""The scenario of issue 12, end to end: a simulated fleet (the reference runtime) serves
``support-bot`` in staging through the real server, long-polling its snapshot and reporting
every request through the records API; the canary analysis runs on what it reported.

- v2, the demo's "friendlier" prompt (the simulated agent turns it into refunds nobody was
  owed: wrong actions), is caught before 50% and rolled back automatically; every runtime
  converges on v1 and the audit log and the analysis name the failed metric.
- A healthy candidate (v1's behaviour under a new digest) goes through every step to
  completed, and every runtime ends on it as the stable version.

Each runs with other seeds and traffic rates, so nothing depends on the demo's numbers. Time
is real but short: the plan's dwell times are seconds and the analysis slot is one second
(``ROLLOUT_ANALYSIS_EVERY_S``), the same code the beat runs every 30 s."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from django.test import override_settings

from apps.accounts.runtime_tokens import runtime_token_create
from apps.audit.models import AuditEvent
from apps.audit.services import SystemActor
from apps.bundles.models import BundleVersion
from apps.bundles.services import bundle_version_push
from apps.rollouts.models import Rollout, RolloutAnalysis
from apps.rollouts.plans import default_plan
from apps.rollouts.selectors import deployment_current
from apps.rollouts.services import deployment_create, rollout_plan_set, rollout_start
from apps.rollouts.services.analysing import rollouts_analyse_due
from apps.tenancy.models import Agent, Environment, Tenant
from dataplane.client import Backoff
from dataplane.simulate import Fleet

from ..factories import AgentFactory
from ..waiting import eventually

DEMO = Path(__file__).resolve().parents[2] / "apps" / "bundles" / "demo"
ACTOR = SystemActor("test")


def _push(agent: Agent, name: str, *, edit: tuple[str, str] | None = None) -> BundleVersion:
    source = (DEMO / f"{name}.yaml").read_text()
    if edit is not None:
        assert edit[0] in source
        source = source.replace(*edit, 1)
    return bundle_version_push(actor=ACTOR, agent=agent, source=source, message=name).version


def _staging_with_fleet(
    tenant: Tenant, url: str, tmp: Path, *, seed: str, rps: float
) -> tuple[Agent, Environment, BundleVersion, Fleet]:
    agent = AgentFactory(tenant=tenant, slug="support-bot", name="Support bot")
    v1 = _push(agent, "support-bot-v1")
    staging = tenant.environments.get(slug="staging")
    plan = default_plan()
    # The steps as the default (1% → 10% → 50%) would need minutes of this traffic to see
    # anything at 1%; the same shape, scaled to seconds of a test's traffic.
    plan["steps"] = [
        {"percentage": 5, "min_dwell_s": 2, "min_requests": 40, "auto_advance": True},
        {"percentage": 20, "min_dwell_s": 2, "min_requests": 400, "auto_advance": True},
        {"percentage": 50, "min_dwell_s": 2, "min_requests": 4000, "auto_advance": True},
    ]
    for gate in plan["metrics"]:
        if gate["metric"] == "wrong_action_rate":
            # A test's few thousand requests see a handful of wrong actions on either side: a
            # 1-point floor is what lets a healthy candidate show non-inferiority in seconds
            # (v2's wrong actions are ~10 points above stable, far beyond it).
            gate["min_effect"] = 0.01
    # Each gate's false-alarm rate is alpha over the whole rollout, 1% by default: a healthy
    # candidate is paused or rolled back by chance in about one rollout in a hundred per
    # metric, as designed. The scenario runs in every CI run, so it chooses 1 in 10,000: v2's
    # wrong actions still fail after about 90-130 candidate requests (87-101 at 1%: reports
    # arrive in bursts far past either bound), and the 20% step holds until 400 for margin.
    plan["alpha"] = 0.0001
    rollout_plan_set(actor=ACTOR, environment=staging, document=plan, reason="scenario")
    deployment_create(actor=ACTOR, agent=agent, environment=staging, version=v1, reason="v1")
    _, token = runtime_token_create(actor=ACTOR, tenant=tenant, environment=staging, name="sim")
    fleet = Fleet(
        url,
        token,
        runtimes=3,
        agent="support-bot",
        rps=rps,
        seed=seed,
        instance_prefix=f"sim-{seed}",
        cache_root=tmp / seed,
        backoff=Backoff(0.05, 0.5),
        heartbeat_interval_s=0.5,
        wait_s=2,  # a stop waits for the open long-poll to return
    )
    return agent, staging, v1, fleet


def _analyse_until_ended(rollout: Rollout, *, timeout_s: float = 150) -> Rollout:
    """Run the beat's analysis once a second (its slot here) until the rollout ends."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        rollouts_analyse_due()
        rollout.refresh_from_db()
        if not rollout.is_active:
            return rollout
        time.sleep(1.0)
    raise AssertionError(
        f"rollout #{rollout.pk} still {rollout.state} at step {rollout.step_index}; last: "
        f"{RolloutAnalysis.objects.filter(rollout=rollout).values_list('reason', flat=True)[:1]}"
    )


def _converged(fleet: Fleet, staging: Environment, *, stable: BundleVersion) -> bool:
    staging.refresh_from_db()
    for member in fleet.members:
        snapshot = member.runtime.snapshot
        if snapshot is None or snapshot.revision != staging.revision:
            return False
        release = snapshot.agents["support-bot"]
        if release.candidate is not None or release.stable.digest != stable.digest:
            return False
    return True


@pytest.mark.slow
@pytest.mark.parametrize(("seed", "rps"), [("north", 240.0), ("south", 150.0)])
@override_settings(ROLLOUT_ANALYSIS_EVERY_S=1)
def test_friendlier_prompt__caught_before_50_percent__rolled_back__fleet_back_on_v1(
    asgi_server: str, tenant: Tenant, tmp_path: Path, seed: str, rps: float
) -> None:
    agent, staging, v1, fleet = _staging_with_fleet(
        tenant, asgi_server, tmp_path, seed=seed, rps=rps
    )
    v2 = _push(agent, "support-bot-v2")
    fleet.start()
    try:
        rollout = rollout_start(
            actor=ACTOR, agent=agent, environment=staging, candidate=v2, reason="friendlier"
        )
        ended = _analyse_until_ended(rollout)

        assert ended.state == "rolled_back", ended.outcome
        reached = max(t.percentage for t in ended.transitions.all())
        assert reached < 50
        rollback = ended.transitions.get(to_state="rolled_back")
        assert rollback.automatic and rollback.actor_label == "canary analysis"
        assert "wrong-action rate" in rollback.reason
        event = AuditEvent.objects.get(action="rollout.rolled_back", target_id=str(ended.pk))
        assert "wrong-action rate" in event.reason
        failed = RolloutAnalysis.objects.filter(rollout=ended, decision="rollback").get()
        verdict = next(v for v in failed.verdicts if v["metric"] == "wrong_action_rate")
        assert verdict["verdict"] == "FAIL"
        assert verdict["candidate"]["requests"] > 0 and verdict["stable"]["requests"] > 0
        assert deployment_current(agent=agent, environment=staging).version == v1
        assert eventually(lambda: _converged(fleet, staging, stable=v1), timeout=20)
    finally:
        fleet.stop()


@pytest.mark.slow
@override_settings(ROLLOUT_ANALYSIS_EVERY_S=1)
def test_healthy_candidate__every_step_to_completed__fleet_on_it(
    asgi_server: str, tenant: Tenant, tmp_path: Path
) -> None:
    agent, staging, _, fleet = _staging_with_fleet(
        tenant, asgi_server, tmp_path, seed="east", rps=240.0
    )
    # v1's behaviour under a new digest: only the version's description changes.
    healthy = _push(agent, "support-bot-v1", edit=("description: ", "description: Same, "))
    fleet.start()
    try:
        rollout = rollout_start(
            actor=ACTOR, agent=agent, environment=staging, candidate=healthy, reason="same"
        )
        ended = _analyse_until_ended(rollout)

        assert ended.state == "completed", ended.outcome
        steps = [t.percentage for t in ended.transitions.order_by("id")]
        assert steps == [5.0, 20.0, 50.0, 100.0]
        assert all(t.automatic for t in ended.transitions.all()[1:])
        assert deployment_current(agent=agent, environment=staging).version == healthy
        assert eventually(lambda: _converged(fleet, staging, stable=healthy), timeout=20)
    finally:
        fleet.stop()
