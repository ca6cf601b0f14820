"""The analysis tick (PostgreSQL in CI; SQLite, the embedded default, too, but for the race):
evidence reported as runtimes report it (10-second buckets through the telemetry ingestion
service, merged into minute rollups), a rollout started with the rollout services, and
``rollout_analyse`` moving time with ``now=``.

A clear regression is rolled back automatically and the audit log and the analysis say which
metric failed; a healthy candidate advances step by step and completes; too few requests
hold with INCONCLUSIVE reasons; the guardrail rolls back at once; two beats analysing the
same slot record and act once; ``rollouts_analyse_due`` isolates a failing rollout."""

from __future__ import annotations

import base64
import math
import random
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from apps.accounts.models import RuntimeToken
from apps.accounts.runtime_tokens import runtime_token_create
from apps.audit.models import AuditEvent
from apps.audit.services import SystemActor
from apps.bundles.models import BundleVersion
from apps.bundles.services import bundle_version_push
from apps.rollouts.models import Rollout, RolloutAnalysis, RolloutTransition
from apps.rollouts.selectors import deployment_current
from apps.rollouts.services import analysing, deployment_create, rollout_plan_set, rollout_start
from apps.rollouts.services.analysing import (
    analysis_tick,
    rollout_analyse,
    rollouts_analyse_due,
)
from apps.telemetry.services import buckets_ingest
from apps.telemetry.sketches import sketch_of, sketch_to_bytes
from apps.tenancy.models import Agent, Environment, Tenant

from ..factories import AgentFactory
from ..races import postgresql_only, race

DEMO = Path(__file__).resolve().parents[2] / "apps" / "bundles" / "demo"
ACTOR = SystemActor("test")

PLAN = {
    "shadow": {"percentage": 0},
    "steps": [
        {"percentage": 1, "min_dwell_s": 60, "min_requests": 100},
        {"percentage": 10, "min_dwell_s": 60, "min_requests": 100},
        {"percentage": 50, "min_dwell_s": 60, "min_requests": 100},
    ],
    "failure_limit": 2,
    "guardrail": {"max_error_rate": 0.25, "min_requests": 20},
}


class Fleet:
    """An agent's runtimes in one environment, reporting 10-second buckets through the
    telemetry ingestion service, as ``dataplane.usage.UsageReporter(mode="buckets")`` does."""

    def __init__(self, token: RuntimeToken, agent: Agent) -> None:
        self.token, self.agent = token, agent
        self.rng = random.Random(7)

    def report(
        self,
        start: datetime,
        *,
        digest: str,
        variant: str,
        requests: int,
        errors: int = 0,
        denied: int = 0,
        wrong: int = 0,
        latency_ms: float = 400.0,
    ) -> None:
        """One minute of one version: a bucket at the minute's start."""
        latencies = [self.rng.lognormvariate(0, 0.3) * latency_ms for _ in range(requests)]
        body = {
            "bucket_start": start.isoformat(),
            "agent": self.agent.slug,
            "version_digest": digest,
            "variant": variant,
            "count_success": requests - errors - denied,
            "count_error": errors,
            "count_policy_denied": denied,
            "latency_sketch": base64.b64encode(sketch_to_bytes(sketch_of(latencies))).decode(),
            "latency_sum_ms": int(sum(latencies)),
            "cost_usd": f"{requests * 0.002:.4f}",
            "wrong_actions": wrong,
        }
        result = buckets_ingest(
            token=self.token, instance_id=f"rt-{variant}", buckets=[body], now=start
        )
        assert result.accepted == 1, result.as_json()

    def minutes(
        self, rollout: Rollout, first: datetime, count: int, *, candidate: dict[str, int],
        stable: dict[str, int] | None = None,
    ) -> datetime:  # fmt: skip
        """``count`` minutes of both variants from ``first``; returns the minute after."""
        stable = stable or {"requests": 2000, "errors": 40, "denied": 40, "wrong": 40}
        for n in range(count):
            at = first + timedelta(minutes=n)
            self.report(at, digest=rollout.baseline.digest, variant="stable", **stable)
            self.report(at, digest=rollout.candidate.digest, variant="candidate", **candidate)
        return first + timedelta(minutes=count)


# Candidate and stable alike: 2% errors, policy denials and wrong actions each.
HEALTHY = {"requests": 1000, "errors": 20, "denied": 20, "wrong": 20}


@pytest.fixture
def agent(tenant: Tenant) -> Agent:
    return AgentFactory(tenant=tenant, slug="support-bot", name="Support bot")  # type: ignore[return-value]


@pytest.fixture
def environment(tenant: Tenant) -> Environment:
    # The first environment in promotion order: no predecessor gate.
    return tenant.environments.get(slug="development")


def _versions(agent: Agent) -> dict[int, BundleVersion]:
    source = (DEMO / "support-bot-v1.yaml").read_text()
    return {
        n: bundle_version_push(
            actor=ACTOR,
            agent=agent,
            message=f"build {n}",
            source=source.replace(
                "Answers customer questions", f"Answers customer questions (build {n})"
            ),
        ).version
        for n in (1, 2)
    }


def _start(
    tenant: Tenant, agent: Agent, environment: Environment, plan: dict[str, Any] = PLAN
) -> tuple[Rollout, Fleet]:
    """v1 stable, v2 rolled out under ``plan``, and the fleet reporting for the agent."""
    versions = _versions(agent)
    deployment_create(
        actor=ACTOR, agent=agent, environment=environment, version=versions[1], reason="first"
    )
    rollout_plan_set(actor=ACTOR, environment=environment, document=plan, reason="test plan")
    rollout = rollout_start(
        actor=ACTOR, agent=agent, environment=environment, candidate=versions[2], reason="v2"
    )
    token, _ = runtime_token_create(
        actor=ACTOR, tenant=tenant, environment=environment, agent=agent, name="fleet"
    )
    return rollout, Fleet(token, agent)


@pytest.fixture
def started(tenant: Tenant, agent: Agent, environment: Environment) -> tuple[Rollout, Fleet]:
    return _start(tenant, agent, environment)


def _first_minute(rollout: Rollout) -> datetime:
    assert rollout.step_started_at is not None
    return rollout.step_started_at.replace(second=0, microsecond=0)


def _verdicts(record: RolloutAnalysis) -> dict[str, dict[str, Any]]:
    return {v["metric"]: v for v in record.verdicts}


def test_regression__rolled_back_automatically_naming_the_failed_metric(
    started: tuple[Rollout, Fleet], agent: Agent, environment: Environment
) -> None:
    rollout, fleet = started
    # 10x the stable error rate (20% against 2%), below the guardrail's 25%.
    bad = {"requests": 200, "errors": 40, "denied": 4, "wrong": 4}
    first = _first_minute(rollout)
    after = fleet.minutes(rollout, first, 4, candidate=bad)

    one = rollout_analyse(rollout_id=rollout.pk, now=after)
    assert one is not None
    assert one.decision == "hold"  # the plan's failure limit is 2 consecutive failing ticks
    assert _verdicts(one)["error_rate"]["verdict"] == "FAIL"
    assert "failing tick 1 of 2" in one.reason
    rollout.refresh_from_db()
    assert (rollout.state, rollout.consecutive_failures) == ("canary", 1)

    two = rollout_analyse(rollout_id=rollout.pk, now=after + timedelta(seconds=30))
    assert two is not None and two.decision == "rollback"
    failed = _verdicts(two)["error_rate"]
    assert failed["verdict"] == "FAIL"
    assert failed["candidate"]["requests"] == 800 and failed["stable"]["requests"] == 8000
    assert failed["interval"][0] > 1.5  # the ratio's interval lies beyond the tolerance
    assert failed["statistic"] >= failed["thresholds"][1]
    rollout.refresh_from_db()
    assert rollout.state == "rolled_back"
    assert "error_rate" in rollout.outcome
    transition = rollout.transitions.get(event="rollback")
    assert transition.automatic and transition.actor_label == "canary analysis"
    audit = AuditEvent.objects.get(action="rollout.rolled_back", target_id=str(rollout.pk))
    assert audit.reason.startswith("Canary analysis: error_rate: error rate 20.0% vs stable 2.0%")
    assert "2 consecutive failing ticks" in audit.reason
    # The candidate left every runtime: v1 stays stable, nothing serves v2.
    current = deployment_current(agent=agent, environment=environment)
    assert current is not None and current.version_id == rollout.baseline_id
    # Ended: later ticks do nothing.
    assert rollout_analyse(rollout_id=rollout.pk, now=after + timedelta(minutes=1)) is None


@pytest.mark.parametrize(
    ("alpha", "verdict", "decision", "reason"),
    [(None, "FAIL", "hold", "failing tick 1 of 2"), (0.01, "FAIL", "hold", "failing tick 1 of 2"),
     (0.0001, "INCONCLUSIVE", "advance", "no metric failing")],
)  # fmt: skip
def test_plan_alpha__the_same_evidence__fails_at_the_default_not_at_a_stricter_rate(
    tenant: Tenant,
    agent: Agent,
    environment: Environment,
    alpha: float | None,
    verdict: str,
    decision: str,
    reason: str,
) -> None:
    """The plan's false-alarm rate is each test's alpha: 5.5% errors against 2% on 400 candidate
    requests is a log-likelihood ratio of 6.1, past log(0.95/0.01) = 4.6 but short of
    log(0.95/0.0001) = 9.2. A plan without ``alpha`` (saved before it existed) reads 0.01."""
    plan = PLAN if alpha is None else {**PLAN, "alpha": alpha}
    rollout, fleet = _start(tenant, agent, environment, plan)
    worse = {"requests": 200, "errors": 11, "denied": 4, "wrong": 4}
    after = fleet.minutes(rollout, _first_minute(rollout), 2, candidate=worse)

    record = rollout_analyse(rollout_id=rollout.pk, now=after)
    assert record is not None and record.decision == decision
    errors = _verdicts(record)["error_rate"]
    assert errors["verdict"] == verdict, errors["reason"]
    assert 4.6 < errors["statistic"] < 9.2
    expected = 0.01 if alpha is None else alpha
    assert errors["thresholds"][1] == pytest.approx(math.log(0.95 / expected))
    assert reason in record.reason


def test_healthy__advances_after_dwell_and_completes_when_every_critical_metric_passes(
    started: tuple[Rollout, Fleet], agent: Agent, environment: Environment
) -> None:
    rollout, fleet = started
    minute = _first_minute(rollout)
    # Dwell not yet met: the first minute is still running.
    early = rollout_analyse(rollout_id=rollout.pk, now=minute + timedelta(seconds=50))
    assert early is not None and early.decision == "hold"
    assert "dwell" in early.reason

    minute = fleet.minutes(rollout, minute, 2, candidate=HEALTHY)
    decisions = []
    now = minute
    for _ in range(12):
        record = rollout_analyse(rollout_id=rollout.pk, now=now)
        assert record is not None
        decisions.append((record.percentage, record.decision))
        rollout.refresh_from_db()
        if rollout.state == "completed":
            break
        # Another healthy minute before the next tick a minute on.
        minute = fleet.minutes(rollout, minute, 1, candidate=HEALTHY)
        now = minute
    assert rollout.state == "completed", decisions
    assert [d for d in decisions if d[1] != "hold"][:2] == [(1.0, "advance"), (10.0, "advance")]
    assert decisions[-1] == (50.0, "complete")
    last = rollout.analyses.first()
    assert last is not None
    for metric in ("error_rate", "policy_denied_rate", "wrong_action_rate"):
        assert _verdicts(last)[metric]["verdict"] == "PASS", _verdicts(last)[metric]["reason"]
    events = list(rollout.transitions.values_list("event", "to_state", "automatic"))
    assert events == [
        ("start", "canary", False),
        ("advance", "canary", True),
        ("advance", "canary", True),
        ("complete", "completed", True),
    ]
    current = deployment_current(agent=agent, environment=environment)
    assert current is not None and current.version_id == rollout.candidate_id


def test_too_few_requests__holds_with_inconclusive_reasons(
    started: tuple[Rollout, Fleet],
) -> None:
    rollout, fleet = started
    few = {"requests": 5, "errors": 1, "denied": 0, "wrong": 0}
    after = fleet.minutes(rollout, _first_minute(rollout), 3, candidate=few)

    record = rollout_analyse(rollout_id=rollout.pk, now=after)
    assert record is not None and record.decision == "hold"
    assert "15 of 100 candidate requests" in record.reason
    verdicts = _verdicts(record)
    assert verdicts["error_rate"]["verdict"] == "INCONCLUSIVE"
    assert "15 of 20 candidate requests needed" in verdicts["error_rate"]["reason"]
    assert verdicts["error_rate"]["candidate"]["requests"] == 15
    assert record.candidate_requests == 15 and record.stable_requests == 6000
    rollout.refresh_from_db()
    assert (rollout.state, rollout.step_index, rollout.consecutive_failures) == ("canary", 0, 0)
    assert rollout.last_analysed_at == after


def test_guardrail__rolls_back_at_once_whatever_the_failure_limit(
    started: tuple[Rollout, Fleet],
) -> None:
    rollout, fleet = started
    broken = {"requests": 30, "errors": 20, "denied": 0, "wrong": 0}
    after = fleet.minutes(rollout, _first_minute(rollout), 1, candidate=broken)

    record = rollout_analyse(rollout_id=rollout.pk, now=after)
    assert record is not None and record.decision == "rollback"
    assert record.reason.startswith("guardrail: candidate error rate 66.7% (20 of 30 requests)")
    assert _verdicts(record)["guardrail_error_rate"]["verdict"] == "FAIL"
    rollout.refresh_from_db()
    assert rollout.state == "rolled_back"
    assert AuditEvent.objects.filter(
        action="rollout.rolled_back", target_id=str(rollout.pk), reason__contains="guardrail"
    ).exists()


def test_same_slot_twice__analysed_and_acted_on_once(started: tuple[Rollout, Fleet]) -> None:
    rollout, fleet = started
    after = fleet.minutes(rollout, _first_minute(rollout), 3, candidate=HEALTHY)
    assert rollout_analyse(rollout_id=rollout.pk, now=after) is not None
    assert rollout_analyse(rollout_id=rollout.pk, now=after + timedelta(seconds=29)) is None
    assert rollout.analyses.count() == 1
    assert analysis_tick(after + timedelta(seconds=29)) == analysis_tick(after)


@pytest.mark.django_db(transaction=True)
def test_two_beats_same_tick__one_analysis_one_transition(
    tenant: Tenant, agent: Agent, environment: Environment
) -> None:
    postgresql_only()
    rollout, fleet = _start(tenant, agent, environment)
    after = fleet.minutes(rollout, _first_minute(rollout), 3, candidate=HEALTHY)

    results, refused = race(
        lambda: rollout_analyse(rollout_id=rollout.pk, now=after),
        lambda: rollout_analyse(rollout_id=rollout.pk, now=after + timedelta(seconds=5)),
    )
    assert refused == []
    assert len(results) == 2
    assert sorted(r is None for r in results) == [False, True]
    assert RolloutAnalysis.objects.filter(rollout=rollout).count() == 1
    assert RolloutTransition.objects.filter(rollout=rollout, event="advance").count() == 1
    rollout.refresh_from_db()
    assert (rollout.step_index, rollout.percentage) == (1, 10.0)


def test_analyse_due__a_failing_rollout_does_not_stop_the_others(
    tenant: Tenant, started: tuple[Rollout, Fleet], monkeypatch: pytest.MonkeyPatch
) -> None:
    rollout, fleet = started
    other_agent: Agent = AgentFactory(tenant=tenant, slug="refund-agent", name="Refund agent")  # type: ignore[assignment]
    other, other_fleet = _start(tenant, other_agent, rollout.environment)
    after = fleet.minutes(rollout, _first_minute(rollout), 3, candidate=HEALTHY)
    other_fleet.minutes(other, _first_minute(other), 3, candidate=HEALTHY)
    real = analysing._evidence

    def broken(analysed: Rollout, **kwargs: Any) -> Any:
        if analysed.pk == rollout.pk:
            raise RuntimeError("rollups unreadable")
        return real(analysed, **kwargs)

    monkeypatch.setattr(analysing, "_evidence", broken)
    # The broken one is analysed first (by id): the loop goes on past it.
    assert rollout.pk < other.pk
    report = rollouts_analyse_due(after)
    assert report.failed == {rollout.pk: "RuntimeError: rollups unreadable"}
    assert report.analysed == {other.pk: "advance"}
    rollout.refresh_from_db()
    assert rollout.state == "canary" and not rollout.analyses.exists()  # nothing half-written
    # The next slot retries it.
    monkeypatch.setattr(analysing, "_evidence", real)
    again = rollouts_analyse_due(after + timedelta(seconds=30))
    assert rollout.pk in again.analysed


def test_paused__still_watched__holds_but_the_guardrail_rolls_back(
    started: tuple[Rollout, Fleet],
) -> None:
    # A paused rollout keeps serving its share: the analysis records it and never advances
    # it, but a broken candidate is still rolled back at once.
    from apps.rollouts.services import rollout_transition

    rollout, fleet = started
    rollout_transition(actor=ACTOR, rollout_id=rollout.pk, event="pause", reason="looking")
    after = fleet.minutes(rollout, _first_minute(rollout), 3, candidate=HEALTHY)
    held = rollout_analyse(rollout_id=rollout.pk, now=after)
    assert held is not None and held.decision == "hold"
    assert held.reason.startswith("paused, waiting for an operator")
    rollout.refresh_from_db()
    assert rollout.state == "paused"

    broken = {"requests": 3000, "errors": 2000, "denied": 0, "wrong": 0}
    later = fleet.minutes(rollout, after, 1, candidate=broken)
    record = rollout_analyse(rollout_id=rollout.pk, now=later)
    assert record is not None and record.decision == "rollback"
    rollout.refresh_from_db()
    assert rollout.state == "rolled_back"
    assert rollout_analyse(rollout_id=rollout.pk, now=later + timedelta(minutes=1)) is None
    assert rollout_analyse(rollout_id=10**9) is None


def test_shadow__advances_to_the_first_canary_step_when_dwell_and_sample_are_met(
    tenant: Tenant, agent: Agent, environment: Environment
) -> None:
    versions = _versions(agent)
    deployment_create(
        actor=ACTOR, agent=agent, environment=environment, version=versions[1], reason="first"
    )
    plan = {**PLAN, "shadow": {"percentage": 20, "min_dwell_s": 60, "min_requests": 300}}
    rollout_plan_set(actor=ACTOR, environment=environment, document=plan, reason="shadow first")
    rollout = rollout_start(
        actor=ACTOR, agent=agent, environment=environment, candidate=versions[2], reason="v2"
    )
    assert (rollout.state, rollout.shadow_percentage) == ("shadow", 20.0)
    token, _ = runtime_token_create(
        actor=ACTOR, tenant=tenant, environment=environment, agent=agent, name="fleet"
    )
    fleet = Fleet(token, agent)
    first = _first_minute(rollout)
    stable = {"requests": 2000, "errors": 40, "denied": 40, "wrong": 40}
    shadowed = {"requests": 100, "errors": 2, "denied": 2, "wrong": 2}
    fleet.report(first, digest=rollout.baseline.digest, variant="stable", **stable)
    fleet.report(first, digest=rollout.candidate.digest, variant="shadow", **shadowed)
    # A candidate variant of the same digest is not shadow evidence.
    fleet.report(first, digest=rollout.candidate.digest, variant="candidate", **stable)

    held = rollout_analyse(rollout_id=rollout.pk, now=first + timedelta(minutes=2))
    assert held is not None and held.decision == "hold"
    assert held.reason.startswith("shadow: 100 of 300 candidate requests"), held.reason
    assert held.candidate_requests == 100

    later = first + timedelta(minutes=1)
    for n in range(3):
        at = later + timedelta(minutes=n)
        fleet.report(at, digest=rollout.baseline.digest, variant="stable", **stable)
        fleet.report(at, digest=rollout.candidate.digest, variant="shadow", **shadowed)
    moved = rollout_analyse(rollout_id=rollout.pk, now=later + timedelta(minutes=3))
    assert moved is not None and moved.decision == "advance"
    assert moved.reason.startswith("shadow: dwell and sample met, no metric failing; advancing")
    rollout.refresh_from_db()
    assert (rollout.state, rollout.step_index, rollout.percentage) == ("canary", 0, 1.0)
    assert rollout.transitions.filter(event="advance", from_state="shadow", automatic=True).exists()


def test_automatic_rollback__raises_an_alert_in_the_same_transaction(
    started: tuple[Rollout, Fleet],
) -> None:
    from apps.alerts.models import Alert

    rollout, fleet = started
    broken = {"requests": 30, "errors": 20, "denied": 0, "wrong": 0}
    after = fleet.minutes(rollout, _first_minute(rollout), 1, candidate=broken)
    record = rollout_analyse(rollout_id=rollout.pk, now=after)
    assert record is not None and record.decision == "rollback"
    alert = Alert.objects.get()
    assert (alert.kind, alert.severity) == ("rollout.rolled_back", "critical")
    assert alert.title.startswith("Support bot v2 rolled back in Development: error-rate guardrail")
    assert alert.detail.startswith("guardrail: candidate error rate 66.7%")
    assert (alert.subject_type, alert.subject_id) == ("rollout", str(rollout.pk))
    assert alert.tenant == rollout.agent.tenant
    assert alert.link == f"/rollouts/{rollout.pk}/"
    # The alert and the rollback are one transaction: both audited, the alert after the move.
    actions = list(
        AuditEvent.objects.filter(action__in=["rollout.rolled_back", "alert.raised"])
        .order_by("id")
        .values_list("action", flat=True)
    )
    assert actions == ["rollout.rolled_back", "alert.raised"]


def test_beat_task__analyses_what_is_due_now(started: tuple[Rollout, Fleet]) -> None:
    from apps.rollouts.tasks import analyse_rollouts

    rollout, _ = started
    result = analyse_rollouts()  # what the worker runs for beat's rollouts.analyse
    assert result["failed"] == {}
    assert result["analysed"] == {str(rollout.pk): "hold"}  # nothing reported yet
    assert rollout.analyses.get().decision == "hold"


def test_paused_by_the_analysis_then_resumed__judged_on_evidence_since_the_resume(
    tenant: Tenant, agent: Agent, environment: Environment, monkeypatch: pytest.MonkeyPatch
) -> None:
    from django.utils import timezone

    from apps.rollouts.services import rollout_transition

    versions = _versions(agent)
    deployment_create(
        actor=ACTOR, agent=agent, environment=environment, version=versions[1], reason="first"
    )
    plan = {
        **PLAN,
        "failure_limit": 1,
        "metrics": [{"metric": "error_rate", "on_failure": "pause"}],
    }
    rollout_plan_set(actor=ACTOR, environment=environment, document=plan, reason="pause only")
    rollout = rollout_start(
        actor=ACTOR, agent=agent, environment=environment, candidate=versions[2], reason="v2"
    )
    token, _ = runtime_token_create(
        actor=ACTOR, tenant=tenant, environment=environment, agent=agent, name="fleet"
    )
    fleet = Fleet(token, agent)
    bad = {"requests": 200, "errors": 40, "denied": 0, "wrong": 0}
    after = fleet.minutes(rollout, _first_minute(rollout), 3, candidate=bad)
    paused = rollout_analyse(rollout_id=rollout.pk, now=after)
    assert paused is not None and paused.decision == "pause"
    rollout.refresh_from_db()
    assert (rollout.state, rollout.paused_from) == ("paused", "canary")
    assert rollout.transitions.get(event="pause").automatic

    # The operator resumes a little later (the reported minutes lie ahead of the clock here:
    # the resume is put after them, where it happens in life).
    monkeypatch.setattr(timezone, "now", lambda: after + timedelta(seconds=10))
    rollout_transition(actor=ACTOR, rollout_id=rollout.pk, event="resume", reason="known blip")
    monkeypatch.undo()
    # What came before the resume was judged by the operator: not held against it again.
    resumed = rollout_analyse(rollout_id=rollout.pk, now=after + timedelta(seconds=30))
    assert resumed is not None and resumed.decision == "hold"
    assert _verdicts(resumed)["error_rate"]["verdict"] == "INCONCLUSIVE"
    assert "0 of 100 candidate requests" in resumed.reason  # a fresh sample is needed
    rollout.refresh_from_db()
    assert rollout.state == "canary"
