# ruff: noqa: RUF001, RUF002, RUF003 - the statistics are written in their own notation (α, ρ, −, ×)
"""Canary analysis: candidate against stable, per metric, PASS / FAIL / INCONCLUSIVE — pure
statistics (numpy, scipy.stats, ddsketch objects), no Django, no database, so it runs every
30 s in the beat task and a million times in ``benchmarks/canary.py``.

Inputs are time buckets (minute rollups) of the two variants, ``Window``; the baseline of a
candidate bucket is the stable traffic of the SAME bucket (aligned on ``start``), never
history, so a time-of-day swing or an incident in a tool hits both sides and cancels out.
Buckets where either side served nothing are dropped. Pass every bucket since the canary
began (all steps): the tests are written per bucket, so exposure shares that change from
step to step (1 % → 10 % → 50 %) are handled exactly, and one test over the whole rollout
spends α once instead of once per step.

The tests (sources in each function's docstring):

* **Rate metrics** (errors, policy denials, escalations, wrong actions per request; tool
  failures per tool call): the conditional binomial likelihood-ratio test on the rate ratio
  ρ = candidate rate / stable rate. Given the total events ``t_i`` of bucket ``i``, the
  candidate's events are Binomial(t_i, p_i(ρ)) with p_i(ρ) = ρ·n_c / (ρ·n_c + n_s) — the
  nuisance baseline rate drops out (Lehmann & Romano, *Testing Statistical Hypotheses*,
  §4.5, the comparison of two Poisson means). FAIL is an **always-valid** test: a
  mixture of Wald SPRT likelihood ratios of ρ ∈ tolerated·{1, 2, 4} against ρ = 1 (Wald 1945;
  mixtures as in Robbins 1970 and the mSPRT of Johari, Koomen, Pekelis & Walsh 2017, "Peeking
  at A/B tests"). Under ρ ≤ 1 the mixture is a non-negative supermartingale with mean ≤ 1,
  so by Ville's inequality P(it EVER reaches (1−β)/α) ≤ α/(1−β), however often one looks.
  PASS (non-inferiority shown) is the conditional likelihood-ratio upper bound of ρ
  (one-sided, level 1−β) below the tolerated ratio: a fixed-sample statement, which is what
  the single promotion decision at the end of the last step's dwell needs (``decide``).
* **p95 latency**: the share of candidate requests above the stable p95 (the p95 of the
  merged stable sketch), against the share of stable requests above the same value in the
  same buckets (≈ 5 % by construction) — the same conditional binomial test with "requests
  above the stable p95" as events, i.e. 5 % against 5 %·tolerated.
* **Cost per request**: Wald's SPRT for a normal mean on the log ratio of winsorised
  per-request means (per bucket: cost_usd / requests, capped at ``COST_WINSOR_FACTOR`` × the
  stable mean), the variance a plug-in from the paired per-bucket residuals.

Each ``MetricVerdict`` carries the statistic, its thresholds, an interval of the ratio and
the sample sizes, for the decision log. ``guardrail`` is the absolute SLO check that rolls
back at once; ``decide`` turns verdicts into the rollout's next action."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import numpy as np
from ddsketch import DDSketch
from ddsketch.ddsketch import BaseDDSketch
from scipy import optimize, stats

METRICS = (
    "error_rate",
    "policy_denied_rate",
    "escalated_rate",
    "tool_failure_rate",
    "wrong_action_rate",
    "latency_p95",
    "cost_per_request",
)

Verdict = Literal["PASS", "FAIL", "INCONCLUSIVE"]
OnFailure = Literal["rollback", "pause"]
Action = Literal["rollback", "pause", "advance", "complete", "hold"]

# Rate metrics: (events attribute, denominator attribute, operator name, denominator noun).
RATE_METRICS: dict[str, tuple[str, str, str, str]] = {
    "error_rate": ("errors", "requests", "error rate", "requests"),
    "policy_denied_rate": ("policy_denied", "requests", "policy-denied rate", "requests"),
    "escalated_rate": ("escalated", "requests", "escalation rate", "requests"),
    "tool_failure_rate": ("tool_failures", "tool_calls", "tool-failure rate", "tool calls"),
    "wrong_action_rate": ("wrong_actions", "requests", "wrong-action rate", "requests"),
}
# The absolute effect-size floor per metric when a spec gives none: rates in absolute
# percentage points (0.005 = 0.5 points), p95 in milliseconds, cost in USD per request.
DEFAULT_MIN_EFFECT: dict[str, float] = {
    **dict.fromkeys(RATE_METRICS, 0.005),
    "latency_p95": 25.0,
    "cost_per_request": 0.0,
}
# The FAIL test mixes the likelihood ratios of these multiples of the tolerated ratio, with
# equal weights: the first gives the design point, the others let a large regression (3×,
# 10×) fail in a fraction of the time a single SPRT at 1.5× needs (benchmarks/canary.py).
ALTERNATIVE_MULTIPLES = (1.0, 2.0, 4.0)
# Per-bucket mean costs above this many times the stable mean are capped (winsorised), so a
# single runaway bucket cannot carry the cost verdict alone.
COST_WINSOR_FACTOR = 10.0
LATENCY_QUANTILE = 0.95
# The cost variance is estimated from paired bucket residuals: at least this many buckets.
COST_MIN_BUCKETS = 3


@dataclass(frozen=True)
class Window:
    """One time bucket (a minute rollup) of ONE variant. Candidate and stable buckets are
    aligned by ``start`` (aware UTC). Counts are per bucket; ``cost_usd`` is the bucket's sum
    (USD); ``latency_sketch`` a DDSketch of the bucket's latencies in ms (None: not reported)."""

    start: datetime
    requests: int
    errors: int = 0
    policy_denied: int = 0
    escalated: int = 0
    tool_calls: int = 0
    tool_failures: int = 0
    wrong_actions: int = 0
    cost_usd: float = 0.0
    latency_sketch: BaseDDSketch | None = None


def window_from_rollup(
    row: Any,
    *,
    decode_sketch: Callable[[bytes], BaseDDSketch] | None = None,
) -> Window:
    """A ``Window`` from a telemetry rollup row (duck-typed: ``bucket_start``, ``requests``,
    ``count_error``, ``count_policy_denied``, ``count_escalated``, ``tool_calls``,
    ``tool_failures``, ``cost_usd`` (Decimal), ``latency_sketch`` (bytes)). The sketch is
    decoded with ``decode_sketch`` (``apps.telemetry.sketches.sketch_from_bytes`` with
    ``trusted=True``), left None without one or when empty; ``wrong_actions`` is read when
    the row has it (0 otherwise)."""
    raw = row.latency_sketch
    sketch = decode_sketch(bytes(raw)) if decode_sketch is not None and raw else None
    return Window(
        start=row.bucket_start,
        requests=int(row.requests),
        errors=int(row.count_error),
        policy_denied=int(row.count_policy_denied),
        escalated=int(row.count_escalated),
        tool_calls=int(row.tool_calls),
        tool_failures=int(row.tool_failures),
        wrong_actions=int(getattr(row, "wrong_actions", 0)),
        cost_usd=float(row.cost_usd),
        latency_sketch=sketch,
    )


@dataclass(frozen=True)
class MetricSpec:
    """How one metric is judged. ``tolerated_ratio``: candidate/stable ratio the test is
    designed to catch (FAIL) and non-inferiority is shown against (PASS); ``alpha``: the
    false-FAIL bound of a healthy candidate over the whole rollout; ``beta``: the error of a
    PASS (and the SPRT's second error, in the FAIL bound (1−β)/α); ``min_effect``: never FAIL
    when candidate − stable is below this (absolute, metric units; None: ``DEFAULT_MIN_EFFECT``);
    ``min_requests``: candidate requests (tool calls for tool failures) before any verdict;
    ``min_events``: events of both variants together (buckets, for cost) before any verdict;
    ``dry_run``: observed and logged, never acts; ``critical``: needed at PASS for 100 %."""

    metric: str
    tolerated_ratio: float = 1.5
    alpha: float = 0.01
    beta: float = 0.05
    min_effect: float | None = None
    on_failure: OnFailure = "rollback"
    critical: bool = True
    dry_run: bool = False
    min_requests: int = 20
    min_events: int = 10

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise ValueError(f"Unknown metric {self.metric!r}; one of {', '.join(METRICS)}.")
        if not self.tolerated_ratio > 1:
            raise ValueError("tolerated_ratio must be above 1.")
        if not (0 < self.alpha < 0.5 and 0 < self.beta < 0.5):
            raise ValueError("alpha and beta must lie between 0 and 0.5.")
        if self.on_failure not in ("rollback", "pause"):
            raise ValueError("on_failure is 'rollback' or 'pause'.")

    @property
    def effect_floor(self) -> float:
        return DEFAULT_MIN_EFFECT[self.metric] if self.min_effect is None else self.min_effect

    @property
    def fail_bound(self) -> float:
        """Wald's upper bound on the log likelihood ratio: log((1−β)/α)."""
        return math.log((1 - self.beta) / self.alpha)


@dataclass(frozen=True)
class MetricVerdict:
    """One metric's verdict at one tick. ``statistic``: the log likelihood ratio of the FAIL
    test; ``thresholds``: (PASS when the interval's upper end is below this ratio, FAIL when
    ``statistic`` reaches this); ``interval``: (lo, hi) of the ratio candidate/stable at
    confidence 1−2β (None when not computed); ``candidate``/``stable``: ``requests``,
    ``events`` and ``value`` (the rate, p95 ms or USD per request)."""

    metric: str
    verdict: Verdict
    reason: str
    statistic: float = 0.0
    thresholds: tuple[float, float] = (0.0, 0.0)
    interval: tuple[float, float] | None = None
    candidate: dict[str, float] = field(default_factory=dict)
    stable: dict[str, float] = field(default_factory=dict)
    dry_run: bool = False
    on_failure: OnFailure = "rollback"
    critical: bool = True

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready (the decision log): infinities become None."""

        def num(x: float) -> float | None:
            return None if x is None or not math.isfinite(x) else round(float(x), 6)

        return {
            "metric": self.metric,
            "verdict": self.verdict,
            "reason": self.reason,
            "statistic": num(self.statistic),
            "thresholds": [num(x) for x in self.thresholds],
            "interval": None if self.interval is None else [num(x) for x in self.interval],
            "candidate": {k: num(v) for k, v in self.candidate.items()},
            "stable": {k: num(v) for k, v in self.stable.items()},
            "dry_run": self.dry_run,
            "on_failure": self.on_failure,
            "critical": self.critical,
        }


@dataclass(frozen=True)
class Decision:
    """What the rollout does next, why (operator words), and the running count of
    consecutive acting FAIL ticks to store for the next tick."""

    action: Action
    reason: str
    consecutive_failures: int = 0


# --- the conditional binomial test ---------------------------------------------------------


def conditional_binomial_llr(
    x: np.ndarray, t: np.ndarray, n_c: np.ndarray, n_s: np.ndarray, rho: float
) -> np.ndarray:
    """Log likelihood ratio of ρ = ``rho`` against ρ = 1, summed over the last axis (buckets).

    Per bucket, candidate events ``x`` of total events ``t`` are Binomial(t, p(ρ)) with
    p(ρ) = ρ·n_c/(ρ·n_c + n_s) (``n_c``, ``n_s``: the exposures, requests or tool calls), so
    log LR = x·log ρ + t·(log(n_c + n_s) − log(ρ·n_c + n_s)). Arrays broadcast; the benchmark
    passes (rollouts × buckets)."""
    total = n_c + n_s
    return np.sum(x * math.log(rho) + t * (np.log(total) - np.log(rho * n_c + n_s)), axis=-1)


def mixture_log_lr(
    x: np.ndarray,
    t: np.ndarray,
    n_c: np.ndarray,
    n_s: np.ndarray,
    tolerated_ratio: float,
    multiples: Sequence[float] = ALTERNATIVE_MULTIPLES,
) -> np.ndarray:
    """log of the equally weighted mixture Σ_k (1/K)·LR(ρ_k vs 1), ρ_k = tolerated × multiple.

    A mixture of likelihood ratios is itself a likelihood ratio (of the mixture alternative),
    a non-negative martingale with mean 1 under ρ = 1 (and a supermartingale for ρ < 1), so
    Ville's inequality bounds the chance it ever crosses 1/a by a (Robbins 1970; Johari et
    al. 2017, "always valid p-values")."""
    terms = np.stack(
        [conditional_binomial_llr(x, t, n_c, n_s, tolerated_ratio * m) for m in multiples]
    )
    top = terms.max(axis=0)
    return top + np.log(np.mean(np.exp(terms - top), axis=0))


def conditional_log_likelihood(
    log_rho: float, x: np.ndarray, t: np.ndarray, n_c: np.ndarray, n_s: np.ndarray
) -> float:
    """Σ_i x_i·log p_i(ρ) + (t_i − x_i)·log(1 − p_i(ρ)), p_i(ρ) = ρ·n_c/(ρ·n_c + n_s)."""
    a = log_rho + np.log(n_c)
    b = np.log(n_s)
    norm = np.logaddexp(a, b)
    return float(np.sum(x * (a - norm) + (t - x) * (b - norm)))


def ratio_interval(
    x: np.ndarray, t: np.ndarray, n_c: np.ndarray, n_s: np.ndarray, confidence: float
) -> tuple[float, tuple[float, float]]:
    """The maximum-likelihood ρ and its conditional likelihood-ratio interval at
    ``confidence`` (two-sided; each end one-sided at (1 + confidence)/2).

    Per bucket x_i | t_i ~ Binomial(t_i, p_i(ρ)); the log likelihood is concave in log ρ, its
    maximum solves Σ x_i = Σ t_i·p_i(ρ), and the interval is {ρ : 2·(ℓ(ρ̂) − ℓ(ρ)) ≤
    χ²₁(confidence)} (Wilks 1938; the χ² quantile from ``scipy.stats.chi2``). With one
    exposure share in every bucket this is the interval of a single binomial proportion
    mapped to ρ; the Clopper–Pearson interval of the pooled share (Clopper & Pearson 1934) is
    exact only then, and with shares changing across steps (1 % → 50 %) pooling overstates
    the variance: with 5 min at every step it left 15 % of healthy rollouts without a PASS at
    the last step in ``benchmarks/canary.py``, this interval 3.8 %. Returns (ρ̂, (lo, hi));
    0 and inf when unbounded (no candidate events, or only candidate events)."""
    events, total = float(np.sum(x)), float(np.sum(t))
    if total <= 0:
        return (1.0, (0.0, math.inf))
    cut = float(stats.chi2.ppf(confidence, 1)) / 2

    def loglik(theta: float) -> float:
        return conditional_log_likelihood(theta, x, t, n_c, n_s)

    lo_edge, hi_edge = -30.0, 30.0
    if events <= 0:
        theta_hat, top = -math.inf, 0.0
    elif events >= total:
        theta_hat, top = math.inf, 0.0
    else:

        def score(theta: float) -> float:
            return events - float(
                np.sum(
                    t * np.exp(theta + np.log(n_c) - np.logaddexp(theta + np.log(n_c), np.log(n_s)))
                )
            )

        theta_hat = optimize.brentq(score, lo_edge, hi_edge, xtol=1e-9)
        top = loglik(theta_hat)

    def gap(theta: float) -> float:
        return top - loglik(theta) - cut

    if theta_hat == -math.inf or gap(lo_edge) < 0:
        lower = 0.0
    else:
        lower = math.exp(optimize.brentq(gap, lo_edge, min(theta_hat, hi_edge), xtol=1e-6))
    if theta_hat == math.inf or gap(hi_edge) < 0:
        upper = math.inf
    else:
        start = max(theta_hat, lo_edge)
        upper = math.exp(optimize.brentq(gap, start, hi_edge, xtol=1e-6))
    return (
        math.exp(theta_hat) if math.isfinite(theta_hat) else (0.0 if theta_hat < 0 else math.inf),
        (lower, upper),
    )


# --- alignment ----------------------------------------------------------------------------


def _aligned(candidate: Sequence[Window], stable: Sequence[Window]) -> list[tuple[Window, Window]]:
    """(candidate, stable) pairs of the same ``start``, both with requests, in time order."""
    by_start: dict[datetime, Window] = {}
    for window in stable:
        if window.requests > 0:
            by_start[window.start] = window
    pairs = [
        (window, by_start[window.start])
        for window in candidate
        if window.requests > 0 and window.start in by_start
    ]
    pairs.sort(key=lambda pair: pair[0].start)
    return pairs


def _pct(value: float) -> str:
    """A rate as operators read it: 6.1%, and 0.03% for a rare event (not 0.0%)."""
    return f"{value * 100:.2f}%" if 0 < abs(value) < 0.01 else f"{value * 100:.1f}%"


def _ratio_text(ratio: float) -> str:
    return "∞×" if not math.isfinite(ratio) else f"{ratio:.1f}×"


def _inconclusive(spec: MetricSpec, reason: str, **extra: Any) -> MetricVerdict:
    return MetricVerdict(
        metric=spec.metric,
        verdict="INCONCLUSIVE",
        reason=f"INCONCLUSIVE: {reason}",
        thresholds=(spec.tolerated_ratio, spec.fail_bound),
        dry_run=spec.dry_run,
        on_failure=spec.on_failure,
        critical=spec.critical,
        **extra,
    )


# --- per metric -------------------------------------------------------------------------------


def _two_sample_verdict(
    spec: MetricSpec,
    *,
    label: str,
    noun: str,
    event_noun: str,
    x_c: np.ndarray,
    n_c: np.ndarray,
    x_s: np.ndarray,
    n_s: np.ndarray,
    value_c: float,
    value_s: float,
    effect: float,
    floor_note: str,
    describe: Callable[[float], str],
    prefix: str = "",
    rate_floor_pass: bool = False,
) -> MetricVerdict:
    """The conditional binomial verdict shared by rate metrics and p95 latency (events per
    bucket ``x_*`` of exposures ``n_*``; ``value_*`` and ``effect`` in the metric's units).
    ``rate_floor_pass`` (rates, where the floor is in the same unit as the rate): PASS also
    when the candidate rate's Clopper–Pearson upper bound (level 1−β, ``scipy.stats.beta``)
    is within ``min_effect`` of the stable rate — a difference too small to matter is shown,
    which is how a rare event (no wrong actions on either side) reaches PASS at all."""
    requests_c, events_c = float(n_c.sum()), float(x_c.sum())
    requests_s, events_s = float(n_s.sum()), float(x_s.sum())
    sample_c = {"requests": requests_c, "events": events_c, "value": value_c}
    sample_s = {"requests": requests_s, "events": events_s, "value": value_s}
    if requests_c < spec.min_requests:
        return _inconclusive(
            spec,
            f"{requests_c:.0f} of {spec.min_requests} candidate {noun} needed",
            candidate=sample_c,
            stable=sample_s,
        )
    t = x_c + x_s
    rate_c = events_c / requests_c if requests_c else 0.0
    rate_s = events_s / requests_s if requests_s else 0.0
    upper_c = (
        float(stats.beta.ppf(1 - spec.beta, events_c + 1, requests_c - events_c))
        if events_c < requests_c
        else 1.0
    )
    floor_shown = rate_floor_pass and upper_c - rate_s < spec.effect_floor
    floor_reason = (
        f"candidate rate at most {_pct(upper_c)} with {1 - spec.beta:.0%} confidence, within "
        f"{_pct(spec.effect_floor)} of stable {_pct(rate_s)}"
    )
    if events_c + events_s < spec.min_events:
        if floor_shown:
            return MetricVerdict(
                metric=spec.metric,
                verdict="PASS",
                reason=f"{label}: {events_c:.0f} of {requests_c:.0f} candidate {noun}; "
                + floor_reason,
                thresholds=(spec.tolerated_ratio, spec.fail_bound),
                candidate=sample_c,
                stable=sample_s,
                dry_run=spec.dry_run,
                on_failure=spec.on_failure,
                critical=spec.critical,
            )
        return _inconclusive(
            spec,
            f"{events_c + events_s:.0f} of {spec.min_events} {event_noun} needed "
            f"(candidate and stable together)",
            candidate=sample_c,
            stable=sample_s,
        )
    statistic = float(mixture_log_lr(x_c, t, n_c, n_s, spec.tolerated_ratio))
    _, interval = ratio_interval(x_c, t, n_c, n_s, 1 - 2 * spec.beta)
    ratio = rate_c / rate_s if rate_s > 0 else (math.inf if rate_c > 0 else 1.0)
    head = (
        f"{prefix}{label} {describe(value_c)} vs stable {describe(value_s)} ({_ratio_text(ratio)})"
    )
    common: dict[str, Any] = {
        "statistic": statistic,
        "thresholds": (spec.tolerated_ratio, spec.fail_bound),
        "interval": interval,
        "candidate": sample_c,
        "stable": sample_s,
        "dry_run": spec.dry_run,
        "on_failure": spec.on_failure,
        "critical": spec.critical,
    }
    if statistic >= spec.fail_bound:
        if effect < spec.effect_floor:
            return MetricVerdict(
                metric=spec.metric,
                verdict="INCONCLUSIVE",
                reason=(
                    f"INCONCLUSIVE: {head}, log-likelihood ratio {statistic:.1f} ≥ "
                    f"{spec.fail_bound:.1f}, but {floor_note}"
                ),
                **common,
            )
        return MetricVerdict(
            metric=spec.metric,
            verdict="FAIL",
            reason=(
                f"{head}, beyond the tolerated {spec.tolerated_ratio:g}×: "
                f"log-likelihood ratio {statistic:.1f} ≥ {spec.fail_bound:.1f}"
            ),
            **common,
        )
    if interval[1] < spec.tolerated_ratio:
        return MetricVerdict(
            metric=spec.metric,
            verdict="PASS",
            reason=(
                f"{head}: ratio at most {interval[1]:.2f}× with {1 - spec.beta:.0%} "
                f"confidence, below the tolerated {spec.tolerated_ratio:g}×"
            ),
            **common,
        )
    if floor_shown:
        return MetricVerdict(
            metric=spec.metric, verdict="PASS", reason=f"{head}: {floor_reason}", **common
        )
    return MetricVerdict(
        metric=spec.metric,
        verdict="INCONCLUSIVE",
        reason=(
            f"INCONCLUSIVE: {head}; the ratio could still be up to "
            f"{_ratio_text(interval[1])} (tolerated {spec.tolerated_ratio:g}×), log-likelihood "
            f"ratio {statistic:.1f} below {spec.fail_bound:.1f}: more {event_noun} needed"
        ),
        **common,
    )


def rate_verdict(pairs: Sequence[tuple[Window, Window]], spec: MetricSpec) -> MetricVerdict:
    """A rate metric (``RATE_METRICS``) over aligned buckets: the conditional binomial test
    (module docstring). Buckets where either side has no denominator (no tool calls) drop out."""
    events_attr, denominator_attr, label, noun = RATE_METRICS[spec.metric]
    rows = [
        (
            getattr(c, events_attr),
            getattr(c, denominator_attr),
            getattr(s, events_attr),
            getattr(s, denominator_attr),
        )
        for c, s in pairs
        if getattr(c, denominator_attr) > 0 and getattr(s, denominator_attr) > 0
    ]
    data = np.array(rows, dtype=float).reshape(-1, 4)
    x_c, n_c, x_s, n_s = data.T
    rate_c = float(x_c.sum() / n_c.sum()) if len(rows) else 0.0
    rate_s = float(x_s.sum() / n_s.sum()) if len(rows) else 0.0
    return _two_sample_verdict(
        spec,
        label=label,
        noun=noun,
        event_noun="events" if spec.metric != "error_rate" else "errors",
        x_c=x_c,
        n_c=n_c,
        x_s=x_s,
        n_s=n_s,
        value_c=rate_c,
        value_s=rate_s,
        effect=rate_c - rate_s,
        floor_note=(
            f"the difference {_pct(rate_c - rate_s)} is below the floor of "
            f"{_pct(spec.effect_floor)}"
        ),
        describe=_pct,
        rate_floor_pass=True,
    )


def _merged(sketches: Sequence[BaseDDSketch]) -> BaseDDSketch:
    """A new sketch holding all of ``sketches`` (the inputs are not modified)."""
    merged = DDSketch(relative_accuracy=sketches[0]._relative_accuracy)
    for sketch in sketches:
        merged.merge(sketch)
    return merged


def count_above(sketch: BaseDDSketch | None, threshold: float) -> float:
    """How many of a DDSketch's values lie above ``threshold``: the bins whose key is above
    the threshold's key, plus half of the threshold's own bin (its values lie within the
    sketch's relative accuracy of the threshold: above or below cannot be told, and counting
    it half on both variants keeps the comparison fair). Reads the positive store's dense
    bins directly (``ddsketch`` keeps them in ``_store``: key = offset + index)."""
    if sketch is None or sketch.count == 0:
        return 0.0
    key = sketch._mapping.key(threshold) if threshold > 0 else -(10**9)
    store = sketch._store
    bins = np.asarray(store.bins, dtype=float)
    if bins.size == 0:
        return 0.0
    keys = store.offset + np.arange(bins.size)
    return float(bins[keys > key].sum() + 0.5 * bins[keys == key].sum())


def latency_verdict(pairs: Sequence[tuple[Window, Window]], spec: MetricSpec) -> MetricVerdict:
    """p95 latency as the share of candidate requests above the stable p95 (module
    docstring): the stable p95 is that of the merged stable sketches of the aligned buckets;
    per bucket, the requests above it on each side are the events of the conditional
    binomial test (5 % against 5 %·tolerated, the stable share measured, not assumed).
    The floor ``min_effect`` is in milliseconds of p95."""
    sketches = [
        (c.latency_sketch, s.latency_sketch)
        for c, s in pairs
        if c.latency_sketch is not None
        and s.latency_sketch is not None
        and c.latency_sketch.count > 0
        and s.latency_sketch.count > 0
    ]
    if not sketches:
        return _inconclusive(spec, "no latency reported by both variants in the same minutes")
    stable_all = _merged([s for _, s in sketches])
    candidate_all = _merged([c for c, _ in sketches])
    threshold = float(stable_all.get_quantile_value(LATENCY_QUANTILE) or 0.0)
    p95_c = float(candidate_all.get_quantile_value(LATENCY_QUANTILE) or 0.0)
    rows = [
        (count_above(c, threshold), float(c.count), count_above(s, threshold), float(s.count))
        for c, s in sketches
    ]
    x_c, n_c, x_s, n_s = np.array(rows, dtype=float).T
    share_c, share_s = float(x_c.sum() / n_c.sum()), float(x_s.sum() / n_s.sum())
    verdict = _two_sample_verdict(
        spec,
        label="share above the stable p95",
        noun="requests",
        event_noun="requests above the stable p95",
        x_c=x_c,
        n_c=n_c,
        x_s=x_s,
        n_s=n_s,
        value_c=share_c,
        value_s=share_s,
        effect=p95_c - threshold,
        floor_note=(
            f"p95 is only {p95_c - threshold:.0f} ms above stable's "
            f"(floor {spec.effect_floor:g} ms)"
        ),
        describe=_pct,
        prefix=f"p95 latency {p95_c:.0f} ms vs stable {threshold:.0f} ms; ",
    )
    # Operators think in ms: keep the p95s beside the shares the test is on.
    return MetricVerdict(
        **{
            **verdict.__dict__,
            "candidate": {**verdict.candidate, "p95_ms": p95_c},
            "stable": {**verdict.stable, "p95_ms": threshold},
        }
    )


def cost_verdict(pairs: Sequence[tuple[Window, Window]], spec: MetricSpec) -> MetricVerdict:
    """Cost per request: Wald's SPRT for a normal mean (Wald 1945, §3) on the log ratio of
    winsorised means, mixed over the same alternatives as the rate tests.

    Rollups give per-bucket sums only, so the observations are per-bucket mean costs
    m = cost_usd / requests, winsorised at ``COST_WINSOR_FACTOR`` × the stable mean (Tukey's
    winsorising, on bucket means). With k aligned buckets, candidate requests N_c:
    M_c = Σ n_c·m_c / N_c and the stable baseline M_s = Σ n_c·m_s / N_c (stable means weighted
    by the candidate's exposure: same buckets, same weights); L = log(M_c/M_s). Its variance
    by the delta method, v = Σ n_c·(m_c − R·m_s)² / ((k−1)·N_c·M_c²) with R = M_c/M_s — paired
    residuals, so a cost swing shared by both variants adds nothing. The log LR of θ = log ρ
    against θ = 0 is θ·(L − θ/2)/v (the Gaussian SPRT with plug-in variance). The variance
    needs ``COST_MIN_BUCKETS`` buckets (``min_events`` does not apply: there are no events);
    PASS when L + z_{1−β}·√v < log(tolerated)."""
    rows = [(c.requests, float(c.cost_usd), s.requests, float(s.cost_usd)) for c, s in pairs]
    data = np.array(rows, dtype=float).reshape(-1, 4)
    n_c, cost_c, n_s, cost_s = data.T
    requests_c = float(n_c.sum())
    stable_mean = float(cost_s.sum() / n_s.sum()) if len(rows) else 0.0
    raw_mean_c = float(cost_c.sum() / requests_c) if requests_c else 0.0
    sample_c = {"requests": requests_c, "events": float(len(rows)), "value": raw_mean_c}
    sample_s = {"requests": float(n_s.sum()), "events": float(len(rows)), "value": stable_mean}
    if requests_c < spec.min_requests:
        return _inconclusive(
            spec,
            f"{requests_c:.0f} of {spec.min_requests} candidate requests needed",
            candidate=sample_c,
            stable=sample_s,
        )
    if len(rows) < COST_MIN_BUCKETS:
        return _inconclusive(
            spec,
            f"{len(rows)} of {COST_MIN_BUCKETS} minute buckets needed for the cost variance",
            candidate=sample_c,
            stable=sample_s,
        )
    if stable_mean <= 0:
        return _inconclusive(
            spec, "stable reports no cost to compare with", candidate=sample_c, stable=sample_s
        )
    cap = COST_WINSOR_FACTOR * stable_mean
    m_c = np.clip(cost_c / n_c, 0.0, cap)
    m_s = np.clip(cost_s / n_s, 0.0, cap)
    mean_c = float(np.sum(n_c * m_c) / requests_c)
    mean_s = float(np.sum(n_c * m_s) / requests_c)
    floor = 1e-12
    log_ratio = math.log(max(mean_c, floor) / max(mean_s, floor))
    ratio = math.exp(log_ratio)
    residuals = m_c - ratio * m_s
    variance = float(np.sum(n_c * residuals**2) / ((len(rows) - 1) * requests_c))
    # A floor on the variance: identical bucket means (synthetic data) must not divide by 0.
    v = max(variance / max(mean_c, floor) ** 2, 1e-6)
    thetas = [math.log(spec.tolerated_ratio * m) for m in ALTERNATIVE_MULTIPLES]
    llrs = np.array([theta * (log_ratio - theta / 2) / v for theta in thetas])
    top = float(llrs.max())
    statistic = top + math.log(float(np.mean(np.exp(llrs - top))))
    z = float(stats.norm.ppf(1 - spec.beta))
    interval = (math.exp(log_ratio - z * math.sqrt(v)), math.exp(log_ratio + z * math.sqrt(v)))
    sample_c["value"] = mean_c
    head = f"cost per request ${mean_c:.5f} vs stable ${mean_s:.5f} ({_ratio_text(ratio)})"
    common: dict[str, Any] = {
        "statistic": statistic,
        "thresholds": (spec.tolerated_ratio, spec.fail_bound),
        "interval": interval,
        "candidate": sample_c,
        "stable": {**sample_s, "value": mean_s},
        "dry_run": spec.dry_run,
        "on_failure": spec.on_failure,
        "critical": spec.critical,
    }
    if statistic >= spec.fail_bound:
        if mean_c - mean_s < spec.effect_floor:
            return MetricVerdict(
                metric=spec.metric,
                verdict="INCONCLUSIVE",
                reason=(
                    f"INCONCLUSIVE: {head}, log-likelihood ratio {statistic:.1f} ≥ "
                    f"{spec.fail_bound:.1f}, but the difference ${mean_c - mean_s:.5f} is "
                    f"below the floor of ${spec.effect_floor:g}"
                ),
                **common,
            )
        return MetricVerdict(
            metric=spec.metric,
            verdict="FAIL",
            reason=(
                f"{head}, beyond the tolerated {spec.tolerated_ratio:g}×: log-likelihood "
                f"ratio {statistic:.1f} ≥ {spec.fail_bound:.1f}"
            ),
            **common,
        )
    if interval[1] < spec.tolerated_ratio:
        return MetricVerdict(
            metric=spec.metric,
            verdict="PASS",
            reason=(
                f"{head}: ratio at most {interval[1]:.2f}× with {1 - spec.beta:.0%} "
                f"confidence, below the tolerated {spec.tolerated_ratio:g}×"
            ),
            **common,
        )
    return MetricVerdict(
        metric=spec.metric,
        verdict="INCONCLUSIVE",
        reason=(
            f"INCONCLUSIVE: {head}; the ratio could still be up to "
            f"{_ratio_text(interval[1])} (tolerated {spec.tolerated_ratio:g}×): more "
            f"minute buckets needed"
        ),
        **common,
    )


def analyse(
    candidate: Sequence[Window], stable: Sequence[Window], specs: Sequence[MetricSpec]
) -> list[MetricVerdict]:
    """One verdict per spec, in the specs' order, on the candidate and stable buckets
    aligned by ``start`` (buckets where either side served nothing are dropped). Pure; raises
    ``ValueError`` only for an invalid spec (at its construction)."""
    pairs = _aligned(candidate, stable)
    verdicts = []
    for spec in specs:
        if spec.metric in RATE_METRICS:
            verdicts.append(rate_verdict(pairs, spec))
        elif spec.metric == "latency_p95":
            verdicts.append(latency_verdict(pairs, spec))
        else:
            verdicts.append(cost_verdict(pairs, spec))
    return verdicts


def guardrail(
    candidate: Sequence[Window], *, max_error_rate: float, min_requests: int
) -> MetricVerdict | None:
    """The absolute SLO guardrail: a FAIL verdict (metric ``guardrail_error_rate``) when the
    candidate's error rate over ``candidate`` (pass the recent buckets, e.g. the last five
    minutes) is above ``max_error_rate`` on at least ``min_requests`` requests — no
    comparison and no sequential evidence needed, the SLO itself is broken. None otherwise."""
    requests = sum(w.requests for w in candidate)
    errors = sum(w.errors for w in candidate)
    if requests < max(1, min_requests):
        return None
    rate = errors / requests
    if rate <= max_error_rate:
        return None
    return MetricVerdict(
        metric="guardrail_error_rate",
        verdict="FAIL",
        reason=(
            f"guardrail: candidate error rate {_pct(rate)} ({errors} of {requests} requests) "
            f"is above the SLO limit of {_pct(max_error_rate)}"
        ),
        statistic=rate,
        thresholds=(max_error_rate, max_error_rate),
        interval=None,
        candidate={"requests": float(requests), "events": float(errors), "value": rate},
        stable={},
        on_failure="rollback",
        critical=True,
    )


def decide(
    verdicts: Sequence[MetricVerdict],
    *,
    guardrail_verdict: MetricVerdict | None = None,
    step_index: int,
    steps_total: int,
    next_percentage: float,
    dwell_elapsed_s: float,
    min_dwell_s: float,
    candidate_requests: int,
    min_requests: int,
    auto_advance: bool = True,
    consecutive_failures: int = 0,
    failure_limit: int = 1,
) -> Decision:
    """The rollout's next action at one tick, in this order:

    1. a guardrail FAIL → ``rollback`` at once;
    2. an acting FAIL (not dry-run) → ``consecutive_failures + 1``; at ``failure_limit``, the
       failing metrics' action (``rollback`` if any of them says so, else ``pause``), below
       it ``hold``. A tick without acting FAIL resets the count to 0. Dry-run FAILs only
       appear in the reason;
    3. dwell (``dwell_elapsed_s`` ≥ ``min_dwell_s``) or sample (``candidate_requests`` of the
       step ≥ ``min_requests``) not met → ``hold``;
    4. the step whose next percentage is 100 (the last canary step): every critical,
       non-dry-run metric at PASS → ``complete`` (``hold`` when auto-advance is off: ready,
       waiting for an operator); otherwise ``pause`` for a human, naming the metrics;
    5. otherwise ``advance`` to ``next_percentage`` (``hold`` when auto-advance is off).

    ``step_index`` is 0-based among ``steps_total`` canary steps (for the reason text)."""
    step = f"step {step_index + 1} of {steps_total}"
    if guardrail_verdict is not None and guardrail_verdict.verdict == "FAIL":
        return Decision("rollback", guardrail_verdict.reason, consecutive_failures + 1)
    failing = [v for v in verdicts if v.verdict == "FAIL" and not v.dry_run]
    dry = [v for v in verdicts if v.verdict == "FAIL" and v.dry_run]
    dry_note = " (dry-run, not acting: " + "; ".join(v.reason for v in dry) + ")" if dry else ""
    if failing:
        count = consecutive_failures + 1
        reasons = "; ".join(f"{v.metric}: {v.reason}" for v in failing)
        if count >= failure_limit:
            action: Action = (
                "rollback" if any(v.on_failure == "rollback" for v in failing) else "pause"
            )
            return Decision(action, f"{reasons} ({count} consecutive failing ticks)", count)
        return Decision(
            "hold", f"{reasons} — failing tick {count} of {failure_limit}{dry_note}", count
        )
    if dwell_elapsed_s < min_dwell_s:
        return Decision(
            "hold",
            f"{step}: dwell {dwell_elapsed_s:.0f} s of {min_dwell_s:.0f} s{dry_note}",
            0,
        )
    if candidate_requests < min_requests:
        return Decision(
            "hold",
            f"{step}: {candidate_requests} of {min_requests} candidate requests{dry_note}",
            0,
        )
    if next_percentage >= 100:
        missing = [v for v in verdicts if v.critical and not v.dry_run and v.verdict != "PASS"]
        if missing:
            names = "; ".join(
                f"{v.metric} {v.reason}"
                if v.reason.startswith(v.verdict)
                else f"{v.metric} {v.verdict}: {v.reason}"
                for v in missing
            )
            return Decision(
                "pause",
                f"{step}: 100% needs every critical metric at PASS; not yet: {names}{dry_note}",
                0,
            )
        if not auto_advance:
            return Decision(
                "hold",
                f"{step}: every critical metric PASS; auto-advance off, ready to "
                f"complete when an operator promotes{dry_note}",
                0,
            )
        return Decision(
            "complete", f"{step}: every critical metric PASS; promoted to 100%{dry_note}", 0
        )
    if not auto_advance:
        return Decision(
            "hold",
            f"{step}: ready for {next_percentage:g}%; auto-advance off, waiting for an "
            f"operator{dry_note}",
            0,
        )
    return Decision(
        "advance",
        f"{step}: dwell and sample met, no metric failing; advancing to "
        f"{next_percentage:g}%{dry_note}",
        0,
    )
