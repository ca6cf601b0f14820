"""Reads of telemetry, answered from the rollups alone (never raw records): time series per
minute or hour split by version and variant, and summaries of one version over a window
(error rate, p50/p95/p99 latency, cost per request) for comparing two versions.

Scope: these take a tenant, an agent and an environment that the caller has already checked
the user may see (``restrict()`` / the agent's view permission); they filter by all three, so
nothing of another tenant can come back. Times are aware UTC datetimes; a window is
``[start, end)`` on rollup bucket starts. Latencies are milliseconds, costs ``Decimal`` USD.
Quantiles come from merged DDSketches, within ``sketches.RELATIVE_ACCURACY`` (1 %)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Literal

from ddsketch.ddsketch import BaseDDSketch
from django.conf import settings
from django.db import connection
from django.db.models import DateTimeField, DurationField, F, Func, Sum, Value
from django.utils import timezone

from apps.tenancy.models import Agent, Environment, Tenant

from .models import (
    ERROR_OUTCOMES,
    METRIC_COLUMNS,
    OUTCOME_COLUMNS,
    HourRollup,
    MinuteRollup,
    Rollup,
)
from .sketches import sketch_from_bytes, sketch_new

Resolution = Literal["minute", "hour"]
# Windows up to this long read minute rollups by default; longer ones hour rollups.
MINUTE_RESOLUTION_UP_TO = timedelta(hours=24)
QUANTILES = (0.5, 0.95, 0.99)


@dataclass
class Stats:
    """Sums over some rollup rows, and what follows from them.

    ``requests``; ``counts``: outcome → requests; ``errors``: requests whose outcome is an
    error (``models.ERROR_OUTCOMES``); ``error_rate`` errors / requests (None without
    requests); ``p50_ms``/``p95_ms``/``p99_ms`` latency quantiles and ``latency_mean_ms``;
    ``cost_usd`` and ``cost_per_request`` (Decimal USD); ``tokens_in``/``tokens_out``;
    ``tool_calls``/``tool_failures``; ``wrong_actions``; thumbs, feedback score and quality
    means."""

    requests: int = 0
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(OUTCOME_COLUMNS, 0))
    latency_sum_ms: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: Decimal = Decimal(0)
    steps: int = 0
    tool_calls: int = 0
    tool_failures: int = 0
    wrong_actions: int = 0
    feedback_up: int = 0
    feedback_down: int = 0
    feedback_score_sum: float = 0.0
    feedback_score_count: int = 0
    quality_sum: float = 0.0
    quality_count: int = 0
    sketch: BaseDDSketch = field(default_factory=sketch_new, repr=False)

    def add(self, row: Rollup) -> None:
        """Add one rollup row (its sums and its sketch)."""
        self.requests += row.requests
        for outcome, column in OUTCOME_COLUMNS.items():
            self.counts[outcome] += getattr(row, column)
        for name in METRIC_COLUMNS:
            setattr(self, name, getattr(self, name) + getattr(row, name))
        if row.latency_sketch:
            self.sketch.merge(sketch_from_bytes(row.latency_sketch, trusted=True))

    @property
    def errors(self) -> int:
        return sum(self.counts[outcome] for outcome in ERROR_OUTCOMES)

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.requests if self.requests else None

    def quantile_ms(self, q: float) -> float | None:
        """Latency at quantile ``q`` (0..1), None without requests."""
        return self.sketch.get_quantile_value(q) if self.sketch.count else None

    @property
    def p50_ms(self) -> float | None:
        return self.quantile_ms(0.5)

    @property
    def p95_ms(self) -> float | None:
        return self.quantile_ms(0.95)

    @property
    def p99_ms(self) -> float | None:
        return self.quantile_ms(0.99)

    @property
    def latency_mean_ms(self) -> float | None:
        return self.latency_sum_ms / self.requests if self.requests else None

    @property
    def cost_per_request(self) -> Decimal | None:
        return self.cost_usd / self.requests if self.requests else None

    @property
    def quality_mean(self) -> float | None:
        return self.quality_sum / self.quality_count if self.quality_count else None

    @property
    def feedback_score_mean(self) -> float | None:
        return (
            self.feedback_score_sum / self.feedback_score_count
            if self.feedback_score_count
            else None
        )


@dataclass
class SeriesPoint:
    """One bucket of one series: ``bucket_start`` (the minute or hour) and its ``stats``."""

    bucket_start: datetime
    stats: Stats


@dataclass
class Series:
    """The points of one (version_digest, variant), oldest first; buckets without requests
    are absent (a chart draws a gap or zero, its choice)."""

    version_digest: str
    variant: str
    points: list[SeriesPoint]


def resolution_for(start: datetime, end: datetime) -> Resolution:
    """The default resolution of a window: minutes up to ``MINUTE_RESOLUTION_UP_TO`` (and
    within the minute rollups' retention), hours beyond."""
    minute_horizon = timezone.now() - timedelta(days=settings.TELEMETRY_MINUTE_RETENTION_DAYS)
    if end - start <= MINUTE_RESOLUTION_UP_TO and start >= minute_horizon:
        return "minute"
    return "hour"


def _model(resolution: Resolution) -> type[MinuteRollup] | type[HourRollup]:
    return MinuteRollup if resolution == "minute" else HourRollup


def rollup_rows(
    *,
    tenant: Tenant,
    agent: Agent,
    environment: Environment,
    start: datetime,
    end: datetime,
    resolution: Resolution,
    version_digests: Iterable[str] | None = None,
    variants: Iterable[str] | None = None,
) -> Iterable[Rollup]:
    """The minute or hour rollup rows (``resolution``) of one agent in one environment over
    ``[start, end)``, optionally only some digests or variants, ordered by (digest, variant,
    bucket start), streamed: what every telemetry read is built from (never raw records)."""
    rows = _model(resolution).objects.filter(
        tenant=tenant,
        agent=agent,
        environment=environment,
        bucket_start__gte=start,
        bucket_start__lt=end,
    )
    if version_digests is not None:
        rows = rows.filter(version_digest__in=list(version_digests))
    if variants is not None:
        rows = rows.filter(variant__in=list(variants))
    return rows.order_by("version_digest", "variant", "bucket_start").iterator(chunk_size=2000)


def telemetry_series(
    *,
    tenant: Tenant,
    agent: Agent,
    environment: Environment,
    start: datetime,
    end: datetime,
    resolution: Resolution | None = None,
    version_digests: Iterable[str] | None = None,
    variants: Iterable[str] | None = None,
) -> list[Series]:
    """Time series of one agent in one environment over ``[start, end)``, one ``Series`` per
    (version_digest, variant), each point a minute or an hour (``resolution``; default from
    ``resolution_for``). Per point: requests, counts by outcome, error rate, p50/p95/p99
    latency, cost per request, tokens (``Stats``). Optionally only some digests or variants.
    Reads rollups only."""
    resolution = resolution or resolution_for(start, end)
    series: dict[tuple[str, str], Series] = {}
    for row in rollup_rows(
        tenant=tenant,
        agent=agent,
        environment=environment,
        start=start,
        end=end,
        resolution=resolution,
        version_digests=version_digests,
        variants=variants,
    ):
        key = (row.version_digest, row.variant)
        if key not in series:
            series[key] = Series(row.version_digest, row.variant, [])
        stats = Stats()
        stats.add(row)
        series[key].points.append(SeriesPoint(row.bucket_start, stats))
    return list(series.values())


def telemetry_totals(
    *,
    tenant: Tenant,
    agent: Agent,
    environment: Environment,
    start: datetime,
    end: datetime,
    resolution: Resolution | None = None,
) -> list[SeriesPoint]:
    """All versions and variants together: one point per minute or hour, oldest first."""
    resolution = resolution or resolution_for(start, end)
    points: dict[datetime, Stats] = {}
    for row in rollup_rows(
        tenant=tenant,
        agent=agent,
        environment=environment,
        start=start,
        end=end,
        resolution=resolution,
    ):
        points.setdefault(row.bucket_start, Stats()).add(row)
    return [SeriesPoint(moment, points[moment]) for moment in sorted(points)]


def telemetry_summary(
    *,
    tenant: Tenant,
    agent: Agent,
    environment: Environment,
    start: datetime,
    end: datetime,
    version_digest: str | None = None,
    variants: Iterable[str] | None = None,
    resolution: Resolution | None = None,
) -> Stats:
    """The sums over ``[start, end)`` of one version (``version_digest``; None: every
    version), optionally only some variants, as one ``Stats``."""
    stats = Stats()
    for row in rollup_rows(
        tenant=tenant,
        agent=agent,
        environment=environment,
        start=start,
        end=end,
        resolution=resolution or resolution_for(start, end),
        version_digests=None if version_digest is None else [version_digest],
        variants=variants,
    ):
        stats.add(row)
    return stats


@dataclass
class Comparison:
    """Two versions over the same window: ``a`` and ``b`` (``Stats``: ``error_rate``,
    ``p95_ms``, ``cost_per_request`` and the rest), the window ``[start, end)`` and the
    resolution read."""

    digest_a: str
    digest_b: str
    a: Stats
    b: Stats
    start: datetime
    end: datetime
    resolution: Resolution


def telemetry_compare(
    tenant: Tenant,
    agent: Agent,
    environment: Environment,
    digest_a: str,
    digest_b: str,
    window: timedelta,
    *,
    now: datetime | None = None,
) -> Comparison:
    """ "Error rate / p95 / cost per request of version A vs version B in environment E over
    the last ``window``", from rollups alone (all variants of each digest). The window ends at
    ``now`` (default: the current time) and starts ``window`` earlier, on a minute (or hour,
    for windows over ``MINUTE_RESOLUTION_UP_TO``) boundary."""
    end = now or timezone.now()
    start = end - window
    resolution = resolution_for(start, end)
    if resolution == "minute":
        start = start.replace(second=0, microsecond=0)
    else:
        start = start.replace(minute=0, second=0, microsecond=0)
    summaries = [
        telemetry_summary(
            tenant=tenant,
            agent=agent,
            environment=environment,
            start=start,
            end=end,
            version_digest=digest,
            resolution=resolution,
        )
        for digest in (digest_a, digest_b)
    ]
    return Comparison(digest_a, digest_b, summaries[0], summaries[1], start, end, resolution)


compare = telemetry_compare  # the name issue 11 uses


@dataclass(frozen=True)
class VariantMinute:
    """One minute of one version and variant, as canary analysis reads it: ``start`` (the
    minute, aware UTC), ``requests``, ``errors`` (``ERROR_OUTCOMES``), ``policy_denied``,
    ``escalated``, ``tool_calls``, ``tool_failures``, ``wrong_actions``, ``cost_usd`` (the
    minute's sum, Decimal USD) and ``latency_sketch`` (the decoded DDSketch of its latencies
    in milliseconds; None when the minute holds none)."""

    start: datetime
    requests: int
    errors: int
    policy_denied: int
    escalated: int
    tool_calls: int
    tool_failures: int
    wrong_actions: int
    cost_usd: Decimal
    latency_sketch: BaseDDSketch | None


def variant_windows(
    *,
    tenant_id: int,
    environment_id: int,
    agent_id: int,
    version_digest: str,
    variant: str,
    since: datetime,
    until: datetime,
) -> list[VariantMinute]:
    """The minute rollups of one version (``version_digest``) served as one ``variant``
    (stable, candidate, shadow) by one agent in one environment, bucket starts in
    ``[since, until)``, oldest first — the evidence of canary analysis (never raw records).
    Ids, not objects: the analysis tick holds them, and filtering by tenant too keeps the
    read on the rollups' scope-and-time index."""
    rows = (
        MinuteRollup.objects.filter(
            tenant_id=tenant_id,
            agent_id=agent_id,
            environment_id=environment_id,
            version_digest=version_digest,
            variant=variant,
            bucket_start__gte=since,
            bucket_start__lt=until,
        )
        .order_by("bucket_start")
        .only(
            "bucket_start",
            "requests",
            *(OUTCOME_COLUMNS[outcome] for outcome in ERROR_OUTCOMES),
            "count_policy_denied",
            "count_escalated",
            "tool_calls",
            "tool_failures",
            "wrong_actions",
            "cost_usd",
            "latency_sketch",
        )
    )
    return [
        VariantMinute(
            start=row.bucket_start,
            requests=row.requests,
            errors=sum(getattr(row, OUTCOME_COLUMNS[outcome]) for outcome in ERROR_OUTCOMES),
            policy_denied=row.count_policy_denied,
            escalated=row.count_escalated,
            tool_calls=row.tool_calls,
            tool_failures=row.tool_failures,
            wrong_actions=row.wrong_actions,
            cost_usd=row.cost_usd,
            latency_sketch=(
                sketch_from_bytes(row.latency_sketch, trusted=True) if row.latency_sketch else None
            ),
        )
        for row in rows
    ]


# --------------------------------------------------------------------------- the overview


@dataclass(frozen=True)
class HealthPoint:
    """One step of an overview sparkline: requests, errors, cost (Decimal USD) and the latency
    sum (ms) of every version and variant in ``[bucket_start, bucket_start + step)``."""

    bucket_start: datetime
    requests: int = 0
    errors: int = 0
    cost_usd: Decimal = Decimal(0)
    latency_sum_ms: int = 0

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.requests if self.requests else None

    @property
    def cost_per_request(self) -> Decimal | None:
        return self.cost_usd / self.requests if self.requests else None

    @property
    def latency_mean_ms(self) -> float | None:
        return self.latency_sum_ms / self.requests if self.requests else None


@dataclass
class Health:
    """The health of one agent in one environment over the overview's window (``points``,
    oldest first, one per step, empty steps included) and its totals. ``p95_ms`` is the p95
    latency of the hour rollups that overlap the window (the current and the previous clock
    hour: merging the window's minute sketches for every row of the overview would read
    tens of megabytes per refresh, see docs/decisions/0033); None without requests."""

    points: list[HealthPoint]
    step: timedelta
    p95_ms: float | None = None

    @property
    def requests(self) -> int:
        return sum(p.requests for p in self.points)

    @property
    def errors(self) -> int:
        return sum(p.errors for p in self.points)

    @property
    def cost_usd(self) -> Decimal:
        return sum((p.cost_usd for p in self.points), Decimal(0))

    @property
    def request_rate_per_min(self) -> float:
        minutes = self.step.total_seconds() / 60 * len(self.points)
        return self.requests / minutes if minutes else 0.0

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.requests if self.requests else None

    @property
    def cost_per_request(self) -> Decimal | None:
        return self.cost_usd / self.requests if self.requests else None


def overview_health(
    *,
    tenant: Tenant,
    agent_ids: Iterable[int],
    environment_ids: Iterable[int],
    now: datetime | None = None,
    window: timedelta = timedelta(hours=1),
    step: timedelta = timedelta(minutes=5),
) -> dict[tuple[int, int], Health]:
    """(agent id, environment id) -> ``Health`` over the ``window`` that ends at the current
    minute (``now``, default the clock), in steps of ``step`` (``window`` a whole number of
    steps). Two queries whatever the number of agents and environments: the minute rollups
    summed per pair and step in PostgreSQL (``date_bin``, no sketch leaves the database),
    and the latency sketches of the hour rollups overlapping the window (one per pair,
    version and variant and hour). Pairs without traffic get empty points. Rollups only."""
    agent_ids, environment_ids = list(agent_ids), list(environment_ids)
    now = now or timezone.now()
    end = now.replace(second=0, microsecond=0) + timedelta(minutes=1)
    start = end - window
    steps = int(window / step)
    result = {
        (a, e): Health([HealthPoint(start + i * step) for i in range(steps)], step)
        for a in agent_ids
        for e in environment_ids
    }
    if not result:
        return result
    scope = {
        "tenant": tenant,
        "agent_id__in": agent_ids,
        "environment_id__in": environment_ids,
    }
    if connection.vendor == "postgresql":
        # one row per pair and step: summed in the database
        bucket: Any = Func(
            Value(step, output_field=DurationField()),
            F("bucket_start"),
            Value(start, output_field=DateTimeField()),
            function="date_bin",
            output_field=DateTimeField(),
        )
    else:
        # ``make run``'s SQLite has no date_bin: one row per pair and minute, binned below
        bucket = F("bucket_start")
    error_columns = [OUTCOME_COLUMNS[o] for o in ERROR_OUTCOMES]
    sums = (
        MinuteRollup.objects.filter(**scope, bucket_start__gte=start, bucket_start__lt=end)
        .annotate(step_start=bucket)
        .values("agent_id", "environment_id", "step_start")
        .annotate(
            n=Sum("requests"),
            err=sum((Sum(c) for c in error_columns[1:]), Sum(error_columns[0])),
            cost=Sum("cost_usd"),
            lat=Sum("latency_sum_ms"),
        )
        .order_by()
    )
    for row in sums:
        health = result.get((row["agent_id"], row["environment_id"]))
        index = int((row["step_start"] - start) / step)
        if health is not None and 0 <= index < steps:
            point = health.points[index]
            health.points[index] = HealthPoint(
                point.bucket_start,
                point.requests + (row["n"] or 0),
                point.errors + (row["err"] or 0),
                point.cost_usd + (row["cost"] or Decimal(0)),
                point.latency_sum_ms + (row["lat"] or 0),
            )
    sketches: dict[tuple[int, int], BaseDDSketch] = {}
    hours = HourRollup.objects.filter(
        **scope, bucket_start__gte=start.replace(minute=0), bucket_start__lt=end, requests__gt=0
    ).values_list("agent_id", "environment_id", "latency_sketch")
    for agent_id, environment_id, data in hours:
        if data:
            key = (agent_id, environment_id)
            sketch = sketches.setdefault(key, sketch_new())
            sketch.merge(sketch_from_bytes(data, trusted=True))
    for key, sketch in sketches.items():
        if key in result and sketch.count:
            result[key].p95_ms = sketch.get_quantile_value(0.95)
    return result
