# ruff: noqa: RUF001, RUF002, RUF003 - the reasons are written with ×, as operators read them
"""The canary analysis on synthetic minute rollups: verdicts (regression, healthy, too few
samples, floor, latency, cost), the guardrail and the decision table. Pure: no database."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from types import SimpleNamespace

import numpy as np
import pytest

from apps.rollouts.analysis import (
    Decision,
    MetricSpec,
    MetricVerdict,
    Window,
    analyse,
    count_above,
    decide,
    guardrail,
    window_from_rollup,
)
from apps.telemetry.sketches import sketch_from_bytes, sketch_of, sketch_to_bytes

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
ERROR = MetricSpec("error_rate")


def minutes(n: int, **counts: float) -> list[Window]:
    """``n`` minute buckets with the same counts each (``requests``, ``errors``, …)."""
    return [Window(start=T0 + timedelta(minutes=i), **counts) for i in range(n)]  # type: ignore[arg-type]


def one(verdicts: list[MetricVerdict]) -> MetricVerdict:
    assert len(verdicts) == 1
    return verdicts[0]


# --- rate metrics -----------------------------------------------------------------------


def test_a_clear_regression_fails_with_the_numbers_in_the_reason():
    candidate = minutes(20, requests=100, errors=10)
    stable = minutes(20, requests=900, errors=18)
    verdict = one(analyse(candidate, stable, [ERROR]))
    assert verdict.verdict == "FAIL"
    assert verdict.statistic >= verdict.thresholds[1] == pytest.approx(math.log(0.95 / 0.01))
    assert verdict.reason.startswith("error rate 10.0% vs stable 2.0% (5.0×), beyond the tolerated")
    assert "log-likelihood ratio" in verdict.reason
    assert verdict.interval is not None and verdict.interval[0] > 1.5
    assert verdict.candidate == {"requests": 2000, "events": 200, "value": 0.1}
    assert verdict.stable["requests"] == 18000 and verdict.stable["events"] == 360


def test_a_healthy_candidate_passes_with_the_interval_below_the_tolerated_ratio():
    candidate = minutes(30, requests=500, errors=10)
    stable = minutes(30, requests=500, errors=10)
    verdict = one(analyse(candidate, stable, [ERROR]))
    assert verdict.verdict == "PASS"
    assert verdict.interval is not None
    assert verdict.interval[0] < 1 < verdict.interval[1] < 1.5
    assert "below the tolerated 1.5×" in verdict.reason or "within" in verdict.reason
    assert verdict.statistic < verdict.thresholds[1]


def test_too_few_candidate_requests_is_inconclusive_and_says_how_many():
    verdict = one(analyse(minutes(1, requests=12, errors=5), minutes(1, requests=988), [ERROR]))
    assert verdict.verdict == "INCONCLUSIVE"
    assert verdict.reason == "INCONCLUSIVE: 12 of 20 candidate requests needed"


def test_too_few_events_is_inconclusive_and_says_which():
    spec = MetricSpec("error_rate", min_events=10)
    verdict = one(analyse(minutes(2, requests=50), minutes(2, requests=50, errors=1), [spec]))
    assert verdict.verdict == "INCONCLUSIVE"
    assert verdict.reason == ("INCONCLUSIVE: 2 of 10 errors needed (candidate and stable together)")


def test_a_rare_event_with_enough_traffic_passes_on_the_floor():
    """No wrong actions on either side: the ratio is unknowable, but the candidate's rate is
    shown to be within the 0.5-point floor of stable's."""
    spec = MetricSpec("wrong_action_rate")
    verdict = one(analyse(minutes(10, requests=200), minutes(10, requests=800), [spec]))
    assert verdict.verdict == "PASS"
    assert "within 0.50% of stable 0.0%" in verdict.reason


def test_the_effect_floor_keeps_a_tiny_absolute_difference_from_failing():
    # 4× the stable rate, overwhelming evidence, but 0.3 percentage points.
    candidate = minutes(60, requests=5000, errors=20)
    stable = minutes(60, requests=5000, errors=5)
    verdict = one(analyse(candidate, stable, [ERROR]))
    assert verdict.verdict != "FAIL"
    assert verdict.statistic >= verdict.thresholds[1]
    assert "below the floor of 0.50%" in verdict.reason
    strict = MetricSpec("error_rate", min_effect=0.001)
    assert one(analyse(candidate, stable, [strict])).verdict == "FAIL"


def test_the_baseline_is_stable_in_the_same_buckets_only():
    # A bad minute for everyone (an upstream outage) hits both variants and cancels out;
    # candidate buckets without stable traffic are ignored.
    candidate = [
        *minutes(10, requests=100, errors=2),
        Window(T0 + timedelta(minutes=10), requests=100, errors=40),
        Window(T0 + timedelta(minutes=11), requests=100, errors=90),  # no stable bucket
    ]
    stable = [
        *minutes(10, requests=900, errors=18),
        Window(T0 + timedelta(minutes=10), requests=900, errors=360),
    ]
    verdict = one(analyse(candidate, stable, [ERROR]))
    assert verdict.verdict != "FAIL"
    assert verdict.candidate["requests"] == 1100


def test_tool_failures_are_per_tool_call():
    spec = MetricSpec("tool_failure_rate")
    candidate = minutes(10, requests=100, tool_calls=300, tool_failures=60)
    stable = minutes(10, requests=900, tool_calls=2700, tool_failures=54)
    verdict = one(analyse(candidate, stable, [spec]))
    assert verdict.verdict == "FAIL"
    assert verdict.candidate["requests"] == 3000
    assert verdict.reason.startswith("tool-failure rate 20.0% vs stable 2.0%")


def test_varying_exposure_between_steps_is_handled_per_bucket():
    # 1 % then 10 % then 50 %: the same 2 % on both sides must not look like a regression,
    # whereas pooling the rates with the wrong weights would.
    candidate, stable = [], []
    for i, share in enumerate([0.01] * 10 + [0.1] * 10 + [0.5] * 10):
        start = T0 + timedelta(minutes=i)
        n_c = round(2000 * share)
        candidate.append(Window(start, requests=n_c, errors=round(n_c * 0.02)))
        stable.append(Window(start, requests=2000 - n_c, errors=round((2000 - n_c) * 0.02)))
    verdict = one(analyse(candidate, stable, [ERROR]))
    assert verdict.verdict == "PASS"
    assert verdict.interval is not None and verdict.interval[0] < 1 < verdict.interval[1]


def test_healthy_rollouts_seldom_fail_however_often_one_looks():
    """200 simulated healthy candidates at 10 %, analysed after every minute for 20 minutes:
    the always-valid test fails at most a couple (α = 0.01 over all the looks)."""
    rng = np.random.default_rng(20261205)
    failed = passed = 0
    for _ in range(200):
        n_c = rng.binomial(1000, 0.1, size=20)
        e_c = rng.binomial(n_c, 0.02)
        e_s = rng.binomial(1000 - n_c, 0.02)
        cand: list[Window] = []
        stab: list[Window] = []
        verdict = None
        for i in range(20):
            start = T0 + timedelta(minutes=i)
            cand.append(Window(start, requests=int(n_c[i]), errors=int(e_c[i])))
            stab.append(Window(start, requests=int(1000 - n_c[i]), errors=int(e_s[i])))
            verdict = one(analyse(cand, stab, [ERROR]))
            if verdict.verdict == "FAIL":
                failed += 1
                break
        passed += verdict is not None and verdict.verdict == "PASS"
    assert failed <= 2
    assert passed >= 100


def test_a_verdict_is_json_ready():
    verdict = one(analyse(minutes(5, requests=100), minutes(5, requests=900, errors=20), [ERROR]))
    data = verdict.as_dict()
    json.dumps(data, allow_nan=False)
    assert data["interval"][0] == 0.0 and data["metric"] == "error_rate"


def test_a_spec_is_validated():
    with pytest.raises(ValueError, match="Unknown metric"):
        MetricSpec("happiness")
    with pytest.raises(ValueError, match="above 1"):
        MetricSpec("error_rate", tolerated_ratio=0.9)


# --- latency and cost -------------------------------------------------------------------


def latency_windows(n: int, requests: int, scale_ms: float, seed: int) -> list[Window]:
    rng = np.random.default_rng(seed)
    return [
        Window(
            T0 + timedelta(minutes=i),
            requests=requests,
            latency_sketch=sketch_of(rng.lognormal(math.log(scale_ms), 0.5, size=requests)),
        )
        for i in range(n)
    ]


def test_count_above_reads_the_sketch_bins():
    sketch = sketch_of(range(1, 101))
    assert count_above(sketch, 50) == pytest.approx(50, abs=1)
    assert count_above(sketch, 1000) == 0
    assert count_above(None, 10) == 0


def test_p95_latency_fails_when_the_candidate_is_slower():
    spec = MetricSpec("latency_p95")
    verdict = one(
        analyse(latency_windows(10, 100, 400, 1), latency_windows(10, 900, 200, 2), [spec])
    )
    assert verdict.verdict == "FAIL"
    assert verdict.reason.startswith("p95 latency ")
    assert "share above the stable p95" in verdict.reason
    assert verdict.stable["value"] == pytest.approx(0.05, abs=0.01)
    assert verdict.candidate["p95_ms"] > 1.5 * verdict.stable["p95_ms"]


def test_p95_latency_passes_when_the_same():
    spec = MetricSpec("latency_p95")
    verdict = one(
        analyse(latency_windows(20, 500, 200, 3), latency_windows(20, 500, 200, 4), [spec])
    )
    assert verdict.verdict == "PASS"


def test_p95_latency_floor_in_milliseconds():
    spec = MetricSpec("latency_p95", min_effect=10_000)
    verdict = one(
        analyse(latency_windows(10, 100, 400, 1), latency_windows(10, 900, 200, 2), [spec])
    )
    assert verdict.verdict == "INCONCLUSIVE"
    assert "floor 10000 ms" in verdict.reason


def cost_windows(n: int, requests: int, usd_per_request: float, seed: int) -> list[Window]:
    rng = np.random.default_rng(seed)
    return [
        Window(
            T0 + timedelta(minutes=i),
            requests=requests,
            cost_usd=float(rng.gamma(2.0, usd_per_request / 2.0, size=requests).sum()),
        )
        for i in range(n)
    ]


def test_cost_per_request_fails_at_three_times_and_passes_when_the_same():
    spec = MetricSpec("cost_per_request")
    worse = one(analyse(cost_windows(10, 100, 0.03, 1), cost_windows(10, 900, 0.01, 2), [spec]))
    assert worse.verdict == "FAIL"
    assert worse.reason.startswith("cost per request $0.0296")
    assert "(3.0×), beyond the tolerated 1.5×" in worse.reason
    same = one(analyse(cost_windows(10, 100, 0.01, 3), cost_windows(10, 900, 0.01, 4), [spec]))
    assert same.verdict == "PASS"


def test_cost_needs_three_buckets():
    spec = MetricSpec("cost_per_request")
    verdict = one(analyse(cost_windows(2, 100, 0.03, 1), cost_windows(2, 900, 0.01, 2), [spec]))
    assert verdict.reason == "INCONCLUSIVE: 2 of 3 minute buckets needed for the cost variance"


def test_a_window_from_a_rollup_row():
    row = SimpleNamespace(
        bucket_start=T0,
        requests=10,
        count_error=2,
        count_policy_denied=1,
        count_escalated=3,
        tool_calls=7,
        tool_failures=1,
        cost_usd=Decimal("0.12345678"),
        latency_sketch=sketch_to_bytes(sketch_of([100.0, 200.0, 300.0])),
    )
    window = window_from_rollup(row, decode_sketch=lambda b: sketch_from_bytes(b, trusted=True))
    assert (window.start, window.requests, window.errors, window.policy_denied) == (T0, 10, 2, 1)
    assert (window.escalated, window.tool_calls, window.tool_failures) == (3, 7, 1)
    assert window.cost_usd == pytest.approx(0.12345678)
    assert window.latency_sketch is not None and window.latency_sketch.count == 3
    assert window_from_rollup(row).latency_sketch is None


def test_one_verdict_per_spec_in_order():
    specs = [MetricSpec(metric) for metric in ("cost_per_request", "error_rate", "latency_p95")]
    verdicts = analyse(minutes(5, requests=100), minutes(5, requests=900), specs)
    assert [v.metric for v in verdicts] == ["cost_per_request", "error_rate", "latency_p95"]


# --- guardrail --------------------------------------------------------------------------


def test_the_guardrail_trips_at_once_whatever_the_comparison_says():
    candidate = minutes(1, requests=30, errors=15)
    tripped = guardrail(candidate, max_error_rate=0.25, min_requests=20)
    assert tripped is not None and tripped.verdict == "FAIL"
    assert "50.0% (15 of 30 requests) is above the SLO limit of 25.0%" in tripped.reason
    verdicts = analyse(candidate, minutes(1, requests=970, errors=300), [ERROR])
    decision = decide(verdicts, guardrail_verdict=tripped, **STEP_READY)
    assert decision.action == "rollback" and decision.reason == tripped.reason
    assert guardrail(candidate, max_error_rate=0.6, min_requests=20) is None
    assert guardrail(candidate, max_error_rate=0.25, min_requests=40) is None


# --- decide -----------------------------------------------------------------------------


def verdict(state: str, **kw: object) -> MetricVerdict:
    return MetricVerdict(
        metric=str(kw.pop("metric", "error_rate")), verdict=state, reason=f"r-{state}", **kw
    )  # type: ignore[arg-type]


STEP_READY = {
    "step_index": 0,
    "steps_total": 3,
    "next_percentage": 10,
    "dwell_elapsed_s": 300,
    "min_dwell_s": 300,
    "candidate_requests": 100,
    "min_requests": 100,
}
LAST_READY = {**STEP_READY, "step_index": 2, "next_percentage": 100}


@pytest.mark.parametrize(
    ("verdicts", "context", "action", "in_reason"),
    [
        ([verdict("PASS")], {**STEP_READY, "dwell_elapsed_s": 120}, "hold", "dwell 120 s of 300 s"),
        ([verdict("PASS")], {**STEP_READY, "candidate_requests": 40}, "hold", "40 of 100"),
        ([verdict("INCONCLUSIVE")], STEP_READY, "advance", "advancing to 10%"),
        ([verdict("PASS")], {**STEP_READY, "auto_advance": False}, "hold", "auto-advance off"),
        ([verdict("PASS")], LAST_READY, "complete", "promoted to 100%"),
        ([verdict("INCONCLUSIVE")], LAST_READY, "pause", "needs every critical metric"),
        (
            [verdict("PASS"), verdict("INCONCLUSIVE", metric="cost_per_request", critical=False)],
            LAST_READY,
            "complete",
            "every critical metric PASS",
        ),
        (
            [verdict("PASS"), verdict("INCONCLUSIVE", metric="latency_p95", dry_run=True)],
            LAST_READY,
            "complete",
            "every critical metric PASS",
        ),
        ([verdict("PASS")], {**LAST_READY, "auto_advance": False}, "hold", "ready to complete"),
        ([verdict("INCONCLUSIVE")], {**LAST_READY, "dwell_elapsed_s": 10}, "hold", "dwell"),
        ([verdict("FAIL")], {**STEP_READY, "dwell_elapsed_s": 0}, "rollback", "r-FAIL"),
        ([verdict("FAIL", on_failure="pause")], STEP_READY, "pause", "r-FAIL"),
        (
            [verdict("FAIL", on_failure="pause"), verdict("FAIL", metric="latency_p95")],
            STEP_READY,
            "rollback",
            "latency_p95",
        ),
        ([verdict("FAIL")], {**STEP_READY, "failure_limit": 2}, "hold", "failing tick 1 of 2"),
        (
            [verdict("FAIL")],
            {**STEP_READY, "failure_limit": 2, "consecutive_failures": 1},
            "rollback",
            "2 consecutive",
        ),
        ([verdict("FAIL", dry_run=True)], STEP_READY, "advance", "dry-run, not acting"),
        ([verdict("FAIL", dry_run=True), verdict("PASS")], LAST_READY, "complete", "dry-run"),
    ],
)
def test_decide(verdicts, context, action, in_reason):
    decision = decide(verdicts, **context)
    assert isinstance(decision, Decision)
    assert decision.action == action, decision.reason
    assert in_reason in decision.reason


def test_consecutive_failures_count_and_reset():
    first = decide([verdict("FAIL")], **STEP_READY, failure_limit=3)
    second = decide(
        [verdict("FAIL")],
        **STEP_READY,
        failure_limit=3,
        consecutive_failures=first.consecutive_failures,
    )
    assert (first.action, first.consecutive_failures) == ("hold", 1)
    assert (second.action, second.consecutive_failures) == ("hold", 2)
    calm = decide([verdict("INCONCLUSIVE")], **STEP_READY, consecutive_failures=2)
    assert calm.consecutive_failures == 0


def test_a_dry_run_fail_never_acts_even_at_the_limit():
    for count in range(5):
        decision = decide(
            [verdict("FAIL", dry_run=True)],
            **{**STEP_READY, "dwell_elapsed_s": 0},
            consecutive_failures=count,
        )
        assert decision.action == "hold"
        assert decision.consecutive_failures == 0
