"""The analysis tick: every 30 s each shadowing or canary rollout is judged on the evidence
runtimes reported, and advanced, completed, paused or rolled back by it.

One tick of one rollout (``rollout_analyse``), in one transaction:

1. lock the environment, then the rollout (the lock order of every rollout write,
   ``services.rollouts``); a rollout no longer shadowing or in canary is left alone;
2. insert the ``RolloutAnalysis`` row of this 30-second ``tick`` FIRST: the row is unique per
   (rollout, tick), so when two beat processes (or a retried task) analyse the same rollout
   in the same slot, the second finds the row taken and does nothing — the tick records and
   acts once;
3. read the evidence from the MINUTE rollups (``apps.telemetry.selectors.variant_windows``,
   never raw records): the candidate's digest as served — variant ``shadow`` in the shadow
   phase, ``candidate`` in the canary — against the baseline's digest as ``stable``, in the
   same minutes;
4. judge each metric of the plan (``apps.rollouts.analysis.analyse``), the absolute guardrail
   on the last ``GUARDRAIL_WINDOW`` (``guardrail``) and take the decision (``decide``);
5. store the verdicts (statistic, interval, sample sizes, reason) and the decision, then act
   through ``rollout_transition`` (the state machine's one mover: audited, revision bumped),
   as the system actor, ``automatic=True``, the decision's reason naming the failing metric;
6. after an automatic rollback or pause, raise an alert (``_alert``).

Which minutes are evidence. The sequential tests of ``analysis`` are valid however often they
look and are written per minute, so the exposure share may change between minutes: the
evidence is every minute since the phase began (the shadow phase, or the first canary step),
which spends alpha once per rollout rather than once per step (``analysis``'s module docstring).
An operator's resume restarts the evidence: they have judged what came before. The sample
and dwell of the current step (``decide``'s gates) count from the step's start."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from django.conf import settings
from django.db import IntegrityError, transaction
from django.urls import reverse
from django.utils import timezone

from apps.alerts.services import alert_raise
from apps.core.authz import SystemActor
from apps.core.locks import lock_row
from apps.telemetry.selectors import VariantMinute, variant_windows
from apps.tenancy.services import environment_lock

from .. import analysis
from ..models import Rollout, RolloutAnalysis, RolloutTransition
from ..plans import DEFAULT_PLAN, METRIC_LABELS
from .rollouts import rollout_transition

log = structlog.get_logger(__name__)

State = Rollout.State
Event = Rollout.Event

# The guardrail looks at the candidate's recent minutes only: an SLO broken now, not diluted
# by a healthy past.
GUARDRAIL_WINDOW = timedelta(minutes=5)
ANALYST = SystemActor("canary analysis")
# The decision → the state machine's event (hold moves nothing).
EVENTS = {
    "advance": Event.ADVANCE,
    "complete": Event.COMPLETE,
    "pause": Event.PAUSE,
    "rollback": Event.ROLLBACK,
}
# A paused rollout still serves its share, so it stays watched: its verdicts are recorded and
# the guardrail and the roll-back gates still act; it never advances by itself.
ANALYSED = (State.SHADOW, State.CANARY, State.PAUSED)


def analysis_tick(moment: datetime) -> datetime:
    """The slot of ``ROLLOUT_ANALYSIS_EVERY_S`` seconds (30 by default) ``moment`` falls in
    (its start, aware UTC, slots counted from the epoch): the idempotency key of an analysis,
    with the rollout."""
    every = max(1, int(settings.ROLLOUT_ANALYSIS_EVERY_S))
    epoch = int(moment.timestamp())
    return datetime.fromtimestamp(epoch - epoch % every, tz=UTC)


def _minute(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(second=0, microsecond=0)


def _window(minute: VariantMinute) -> analysis.Window:
    return analysis.Window(
        start=minute.start,
        requests=minute.requests,
        errors=minute.errors,
        policy_denied=minute.policy_denied,
        escalated=minute.escalated,
        tool_calls=minute.tool_calls,
        tool_failures=minute.tool_failures,
        wrong_actions=minute.wrong_actions,
        cost_usd=float(minute.cost_usd),
        latency_sketch=minute.latency_sketch,
    )


def _specs(plan: dict[str, Any]) -> list[analysis.MetricSpec]:
    """The plan's metric gates as the analysis's specs, each at the plan's false-alarm rate
    ``alpha`` (the default for a plan saved before it existed); the minimum sample of each
    test stays the analysis's default (the step's sample gates the decision instead)."""
    alpha = float(plan.get("alpha", DEFAULT_PLAN["alpha"]))
    return [
        analysis.MetricSpec(
            metric=gate["metric"],
            alpha=alpha,
            tolerated_ratio=float(gate.get("tolerated_ratio", 1.5)),
            min_effect=gate.get("min_effect"),
            on_failure=gate.get("on_failure", "rollback"),
            critical=bool(gate.get("critical", True)),
            dry_run=bool(gate.get("dry_run", False)),
        )
        for gate in plan["metrics"]
    ]


def _evidence_since(rollout: Rollout) -> datetime:
    """When the evidence of the current phase begins: the start of the shadow phase, or the
    first move into the canary; an operator's later resume restarts it."""
    assert rollout.step_started_at is not None
    moves = RolloutTransition.objects.filter(rollout=rollout)
    since = rollout.step_started_at
    if rollout.phase == State.CANARY:
        first = (
            moves.filter(to_state=State.CANARY)
            .exclude(event=Event.RESUME)
            .order_by("id")
            .values_list("created_at", flat=True)
            .first()
        )
        since = min(since, first) if first is not None else since
    resumed = (
        moves.filter(event=Event.RESUME, to_state=rollout.phase)
        .order_by("-id")
        .values_list("created_at", flat=True)
        .first()
    )
    if resumed is not None:
        since = max(since, resumed)
    return since


@dataclass
class _Evidence:
    candidate: list[analysis.Window] = field(default_factory=list)
    stable: list[analysis.Window] = field(default_factory=list)

    def requests(self, windows: Sequence[analysis.Window], since: datetime) -> int:
        return sum(w.requests for w in windows if w.start >= since)


def _evidence(rollout: Rollout, *, since: datetime, until: datetime) -> _Evidence:
    variant = "shadow" if rollout.phase == State.SHADOW else "candidate"

    def read(digest: str, served_as: str) -> list[analysis.Window]:
        minutes = variant_windows(
            tenant_id=rollout.agent.tenant_id,
            environment_id=rollout.environment_id,
            agent_id=rollout.agent_id,
            version_digest=digest,
            variant=served_as,
            since=_minute(since),
            until=until,
        )
        return [_window(m) for m in minutes]

    return _Evidence(
        candidate=read(rollout.candidate.digest, variant),
        stable=read(rollout.baseline.digest, "stable"),
    )


def _decide(
    rollout: Rollout, evidence: _Evidence, *, now: datetime
) -> tuple[list[analysis.MetricVerdict], analysis.MetricVerdict | None, analysis.Decision]:
    plan = rollout.plan
    steps = plan["steps"]
    shadow = rollout.phase == State.SHADOW
    if shadow:
        stage = plan["shadow"]
        step_index, next_percentage, auto_advance = 0, float(steps[0]["percentage"]), True
    else:
        stage = steps[rollout.step_index]
        step_index = rollout.step_index
        following = rollout.step_index + 1
        next_percentage = float(steps[following]["percentage"]) if following < len(steps) else 100
        auto_advance = bool(stage.get("auto_advance", True))
    verdicts = analysis.analyse(evidence.candidate, evidence.stable, _specs(plan))
    guard = plan["guardrail"]
    recent = _minute(now - GUARDRAIL_WINDOW)
    guardrail_verdict = analysis.guardrail(
        [w for w in evidence.candidate if w.start >= recent],
        max_error_rate=float(guard["max_error_rate"]),
        min_requests=int(guard["min_requests"]),
    )
    assert rollout.step_started_at is not None
    # The step's sample counts from the minute it began in: at most a minute of the previous
    # step's (smaller) traffic more, never less than the step saw.
    step_requests = evidence.requests(evidence.candidate, _minute(rollout.step_started_at))
    decision = analysis.decide(
        verdicts,
        guardrail_verdict=guardrail_verdict,
        step_index=step_index,
        steps_total=len(steps),
        next_percentage=next_percentage,
        dwell_elapsed_s=max(0.0, (now - rollout.step_started_at).total_seconds()),
        min_dwell_s=float(stage.get("min_dwell_s", 0)),
        candidate_requests=step_requests,
        min_requests=int(stage.get("min_requests", 0)),
        auto_advance=auto_advance,
        consecutive_failures=rollout.consecutive_failures,
        failure_limit=int(plan.get("failure_limit", 1)),
    )
    if shadow:
        # decide() speaks of canary steps; the shadow phase is not one.
        reason = decision.reason.replace(f"step 1 of {len(steps)}", "shadow", 1)
        decision = analysis.Decision(decision.action, reason, decision.consecutive_failures)
    return verdicts, guardrail_verdict, decision


def rollout_analyse(*, rollout_id: int, now: datetime | None = None) -> RolloutAnalysis | None:
    """Run one analysis tick of rollout ``rollout_id`` at ``now`` (default: the current
    time; tests move it): record a ``RolloutAnalysis`` for the 30-second slot ``now`` falls
    in and act on its decision (advance, complete, pause, roll back; hold moves nothing).

    Returns the analysis, or None when there was nothing to do: the rollout is unknown, not
    shadowing, in canary or paused (pending, ended), or this slot was analysed already (by
    another beat process). Idempotent per slot. Raises what ``rollout_transition`` raises
    (it should not: the rollout is locked and the move checked against its state)."""
    now = now or timezone.now()
    tick = analysis_tick(now)
    environment_id = (
        Rollout.objects.filter(pk=rollout_id).values_list("environment_id", flat=True).first()
    )
    if environment_id is None:
        return None
    with transaction.atomic():
        environment_lock(environment_id=environment_id)
        rollout = lock_row(
            Rollout, rollout_id, related=("agent__tenant", "environment", "candidate", "baseline")
        )
        if rollout.state not in ANALYSED or rollout.step_started_at is None:
            return None
        try:
            with transaction.atomic():
                record = RolloutAnalysis.objects.create(
                    rollout=rollout,
                    tick=tick,
                    step_index=rollout.step_index,
                    percentage=rollout.percentage or rollout.shadow_percentage,
                    decision="hold",
                    reason="",
                )
        except IntegrityError:
            log.info("rollout.analysis.tick_taken", rollout_id=rollout_id, tick=tick.isoformat())
            return None
        # Judged as the phase it serves (``Rollout.phase``: a paused rollout, the phase it
        # paused in).
        evidence = _evidence(rollout, since=_evidence_since(rollout), until=now)
        verdicts, guardrail_verdict, decision = _decide(rollout, evidence, now=now)
        if rollout.state == State.PAUSED and decision.action != "rollback":
            decision = analysis.Decision(
                "hold",
                f"paused, waiting for an operator; still watched ({decision.reason})",
                decision.consecutive_failures,
            )
        record.verdicts = [v.as_dict() for v in verdicts] + (
            [guardrail_verdict.as_dict()] if guardrail_verdict is not None else []
        )
        record.decision = decision.action
        record.reason = decision.reason
        record.candidate_requests = sum(w.requests for w in evidence.candidate)
        record.stable_requests = sum(w.requests for w in evidence.stable)
        record.save(
            update_fields=[
                "verdicts",
                "decision",
                "reason",
                "candidate_requests",
                "stable_requests",
            ]
        )
        Rollout.objects.filter(pk=rollout.pk).update(
            consecutive_failures=decision.consecutive_failures, last_analysed_at=now
        )
        log.info(
            "rollout.analysis",
            rollout_id=rollout.pk,
            tick=tick.isoformat(),
            state=rollout.state,
            step=rollout.step_index,
            decision=decision.action,
            reason=decision.reason,
            candidate_requests=record.candidate_requests,
            stable_requests=record.stable_requests,
            failing=[v.metric for v in verdicts if v.verdict == "FAIL"],
        )
        event = EVENTS.get(decision.action)
        if event is not None:
            result = rollout_transition(
                actor=ANALYST,
                rollout_id=rollout.pk,
                event=event,
                reason=f"Canary analysis: {decision.reason}",
                automatic=True,
            )
            if decision.action in ("rollback", "pause"):
                _alert(result.rollout, decision, verdicts, guardrail_verdict)
        return record


def _alert(
    rollout: Rollout,
    decision: analysis.Decision,
    verdicts: Sequence[analysis.MetricVerdict] = (),
    guardrail_verdict: analysis.MetricVerdict | None = None,
) -> None:
    """Tell the team the analysis rolled back or paused ``rollout``
    (``apps.alerts.services.alert_raise``: shown in the UI, audited, POSTed to the
    configured webhook after commit). Called inside the tick's transaction: an alert exists
    exactly when the move does."""
    failing = [v for v in verdicts if v.verdict == "FAIL" and not v.dry_run]
    if guardrail_verdict is not None and guardrail_verdict.verdict == "FAIL":
        failing.insert(0, guardrail_verdict)
    names = ", ".join(METRIC_LABELS.get(v.metric, "error-rate guardrail") for v in failing)
    agent, environment = rollout.agent, rollout.environment
    what = "rolled back" if decision.action == "rollback" else "paused"
    alert_raise(
        tenant=agent.tenant,
        kind=f"rollout.{'rolled_back' if decision.action == 'rollback' else 'paused'}",
        severity="critical" if decision.action == "rollback" else "warning",
        title=(
            f"{agent.name} v{rollout.candidate.number} {what} in {environment.name}"
            + (f": {names}" if names else "")
        ),
        detail=decision.reason,
        link=_rollout_link(rollout),
        subject_type="rollout",
        subject_id=str(rollout.pk),
    )


def _rollout_link(rollout: Rollout) -> str:
    return reverse("rollouts:rollout_detail", args=[rollout.pk])


@dataclass
class DueReport:
    """What one beat run did: the rollouts ``analysed`` (with their decision), ``skipped``
    (slot taken or no longer analysable) and ``failed`` (id → the error, logged)."""

    analysed: dict[int, str] = field(default_factory=dict)
    skipped: list[int] = field(default_factory=list)
    failed: dict[int, str] = field(default_factory=dict)


def rollouts_analyse_due(now: datetime | None = None) -> DueReport:
    """Analyse every rollout that is shadowing or in canary now (``rollout_analyse``), but
    those of an archived tenant, agent or environment, each in its own transaction: a
    rollout whose tick fails is logged with its error and the others go on. Idempotent per
    30-second slot, so two beat processes may both run it."""
    now = now or timezone.now()
    report = DueReport()
    # What is archived is frozen (tenancy.services.refuse_archived): its rollouts wait for a
    # restore instead of failing each tick (their runtimes are refused meanwhile anyway).
    ids = list(
        Rollout.objects.filter(
            state__in=ANALYSED,
            agent__archived_at__isnull=True,
            environment__archived_at__isnull=True,
            agent__tenant__archived_at__isnull=True,
        )
        .order_by("id")
        .values_list("id", flat=True)
    )
    for rollout_id in ids:
        try:
            result = rollout_analyse(rollout_id=rollout_id, now=now)
        except Exception as exc:  # one broken rollout must not stop the others' analysis
            log.exception("rollout.analysis.failed", rollout_id=rollout_id)
            report.failed[rollout_id] = f"{type(exc).__name__}: {exc}"
            continue
        if result is None:
            report.skipped.append(rollout_id)
        else:
            report.analysed[rollout_id] = result.decision
    return report
