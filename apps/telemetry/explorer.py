"""Reads behind the operator's telemetry pages (docs/decisions/0022): time series for the
Telemetry page (from rollups only, never raw records), the records explorer's filtered,
keyset-paginated list, the cost-outlier threshold and trace links.

Every function takes an agent and environment already scoped to the user by
``apps.tenancy.selectors`` (``agent_get_for_user`` / ``environment_list_for_user``), and
filters by their tenant too, so a record of another tenant is never reached.
"""

from __future__ import annotations

import base64
import binascii
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import quote

from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.db.models import Avg, Count, Max, Q, QuerySet, Sum

from apps.tenancy.models import TRACE_ID_PLACEHOLDER, Agent, Environment, Tenant

from .models import ERROR_OUTCOMES, HourRollup, MinuteRollup, RequestRecord, Rollup
from .selectors import Stats, rollup_rows

# The time-range picker: label → (span, bucket width, rollup model read).
RANGES: dict[str, tuple[timedelta, timedelta, type[Rollup]]] = {
    "1h": (timedelta(hours=1), timedelta(minutes=1), MinuteRollup),
    "6h": (timedelta(hours=6), timedelta(minutes=5), MinuteRollup),
    "24h": (timedelta(hours=24), timedelta(minutes=15), MinuteRollup),
    "7d": (timedelta(days=7), timedelta(hours=1), HourRollup),
}
DEFAULT_RANGE = "24h"
PAGE_SIZE = 50


# --------------------------------------------------------------------------- time series


@dataclass
class ChartPoint:
    """One bucket of one (version, variant) line: ``stats`` summed over the rollup rows in
    it (``selectors.Stats``: requests, error rate, merged-sketch p95, cost, tokens), and the
    bucket's width in minutes for rates."""

    bucket_start: datetime
    stats: Stats
    bucket_minutes: float

    @property
    def request_rate(self) -> float:
        """Requests per minute."""
        return self.stats.requests / self.bucket_minutes

    @property
    def tokens_rate(self) -> float:
        """Tokens (in + out) per minute."""
        return (self.stats.tokens_in + self.stats.tokens_out) / self.bucket_minutes


@dataclass
class ChartSeries:
    """A (version digest, variant) line of the Telemetry page; ``total`` over the range."""

    version_digest: str
    variant: str
    points: list[ChartPoint] = field(default_factory=list)
    total: Stats = field(default_factory=Stats)

    @property
    def label(self) -> str:
        return f"{short_digest(self.version_digest)} {self.variant}"

    @property
    def short_version(self) -> str:
        return short_digest(self.version_digest)

    @property
    def error_percent(self) -> float | None:
        rate = self.total.error_rate
        return None if rate is None else 100 * rate


def short_digest(digest: str) -> str:
    """The first 12 hex digits of a bundle digest (``sha256:`` prefix dropped), or "unknown
    version" when the runtime reported none."""
    if not digest:
        return "unknown version"
    return digest.removeprefix("sha256:")[:12]


def time_range(label: str, *, now: datetime | None = None) -> tuple[datetime, datetime]:
    """``[start, end)`` of the range ``label`` (a key of RANGES) ending at the bucket that
    contains ``now``: aligned to the range's bucket width, UTC."""
    span, width, _ = RANGES[label]
    now = now or datetime.now(UTC)
    step = int(width.total_seconds())
    end_ts = (int(now.timestamp()) // step + 1) * step
    end = datetime.fromtimestamp(end_ts, tz=UTC)
    return end - span, end


def chart_series(
    *, agent: Agent, environment: Environment, range_label: str, now: datetime | None = None
) -> list[ChartSeries]:
    """Per (version digest, variant) of ``agent`` in ``environment``, the range's buckets
    (RANGES: 1h by the minute, 6h by 5 minutes, 24h by 15 minutes, 7d by the hour), each the
    ``Stats`` of the minute or hour rollups in it — rollups only, sketches merged, so p95 is
    exact to the sketch's accuracy at any width. ``selectors.telemetry_series`` gives one
    point per rollup row; this coarsens it so a day is 96 points, not 1,440. Buckets without
    traffic are absent. Sorted stable, candidate, shadow; by digest within."""
    _, width, model = RANGES[range_label]
    start, end = time_range(range_label, now=now)
    step = int(width.total_seconds())
    lines: dict[tuple[str, str], ChartSeries] = {}
    buckets: dict[tuple[str, str], dict[int, Stats]] = defaultdict(dict)
    rows = rollup_rows(
        tenant=agent.tenant,
        agent=agent,
        environment=environment,
        start=start,
        end=end,
        resolution="hour" if model is HourRollup else "minute",
    )
    for row in rows:
        key = (row.version_digest, row.variant)
        line = lines.get(key)
        if line is None:
            line = lines[key] = ChartSeries(version_digest=row.version_digest, variant=row.variant)
        slot = int(row.bucket_start.timestamp()) // step * step
        buckets[key].setdefault(slot, Stats()).add(row)
        line.total.add(row)
    order = {"stable": 0, "candidate": 1, "shadow": 2}
    result = sorted(lines.values(), key=lambda s: (order.get(s.variant, 9), s.version_digest))
    for line in result:
        line.points = [
            ChartPoint(
                bucket_start=datetime.fromtimestamp(slot, tz=UTC),
                stats=stats,
                bucket_minutes=step / 60,
            )
            for slot, stats in sorted(buckets[(line.version_digest, line.variant)].items())
        ]
    return result


def version_digests(*, agent: Agent, environment: Environment, since: datetime) -> list[str]:
    """The version digests ``agent`` reported in ``environment`` since ``since`` (from hour
    rollups), newest first: the choices of the explorer's version filter."""
    rows = (
        HourRollup.objects.filter(
            tenant_id=agent.tenant_id,
            agent_id=agent.pk,
            environment_id=environment.pk,
            bucket_start__gte=since.replace(minute=0, second=0, microsecond=0),
        )
        .order_by("-bucket_start")
        .values_list("version_digest", flat=True)
    )
    return list(dict.fromkeys(rows))


# --------------------------------------------------------------------------- records


@dataclass(frozen=True)
class RecordFilters:
    """The explorer's filters; None/empty means "any". ``since``/``until``: started_at range;
    ``min_cost`` USD; ``min_latency_ms`` milliseconds; ``session``: exact session id."""

    since: datetime
    until: datetime
    outcome: str = ""
    version_digest: str = ""
    variant: str = ""
    session: str = ""
    min_cost: Decimal | None = None
    min_latency_ms: int | None = None


class BadCursor(ValueError):
    """A keyset cursor that was not made by :func:`encode_cursor`."""


def encode_cursor(record: RequestRecord) -> str:
    """An opaque cursor after ``record`` in the explorer's order (newest first): its
    ``started_at`` (µs since the epoch) and id, URL-safe base64."""
    started = record.started_at
    micros = int(started.timestamp()) * 1_000_000 + started.microsecond
    return base64.urlsafe_b64encode(f"{micros}:{record.pk}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, int]:
    """``(started_at, id)`` of a cursor; :class:`BadCursor` for anything else."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
        micros_text, id_text = raw.split(":")
        micros, pk = int(micros_text), int(id_text)
        moment = datetime.fromtimestamp(micros // 1_000_000, tz=UTC).replace(
            microsecond=micros % 1_000_000
        )
    except (binascii.Error, UnicodeDecodeError, ValueError, OverflowError, OSError):
        raise BadCursor("This page link is broken; start from the first page.") from None
    if pk < 0:
        raise BadCursor("This page link is broken; start from the first page.")
    return moment, pk


def records_for(
    *, agent: Agent, environment: Environment, filters: RecordFilters
) -> QuerySet[RequestRecord]:
    """The records of ``agent`` in ``environment`` matching ``filters``, newest first
    (``-started_at, -id``: the order keyset pagination continues in)."""
    qs = RequestRecord.objects.filter(
        tenant_id=agent.tenant_id,
        agent_id=agent.pk,
        environment_id=environment.pk,
        started_at__gte=filters.since,
        started_at__lt=filters.until,
    )
    if filters.outcome:
        qs = qs.filter(outcome=filters.outcome)
    if filters.version_digest:
        qs = qs.filter(version_digest=filters.version_digest)
    if filters.variant:
        qs = qs.filter(variant=filters.variant)
    if filters.session:
        qs = qs.filter(session_id=filters.session)
    if filters.min_cost is not None:
        qs = qs.filter(cost_usd__gte=filters.min_cost)
    if filters.min_latency_ms is not None:
        qs = qs.filter(latency_ms__gte=filters.min_latency_ms)
    return qs.order_by("-started_at", "-id")


@dataclass
class RecordPage:
    """One page of the explorer: ``records`` (at most ``PAGE_SIZE``), ``next_cursor`` when
    more follow."""

    records: list[RequestRecord]
    next_cursor: str | None


def records_page(
    queryset: QuerySet[RequestRecord], *, after: str | None, size: int = PAGE_SIZE
) -> RecordPage:
    """Keyset pagination over :func:`records_for`'s order: the ``size`` records after the
    cursor ``after`` (None: from the newest). One query, no OFFSET, so page 1,000 costs what
    page 1 does. Raises :class:`BadCursor`."""
    if after:
        started, pk = decode_cursor(after)
        queryset = queryset.filter(Q(started_at__lt=started) | Q(started_at=started, id__lt=pk))
    rows = list(queryset[: size + 1])
    more = len(rows) > size
    rows = rows[:size]
    return RecordPage(records=rows, next_cursor=encode_cursor(rows[-1]) if more else None)


def session_records(*, agent: Agent, environment: Environment, session: str) -> list[Any]:
    """Every record of one session of ``agent`` in ``environment`` still kept, oldest first."""
    return list(
        RequestRecord.objects.filter(
            tenant_id=agent.tenant_id,
            agent_id=agent.pk,
            environment_id=environment.pk,
            session_id=session,
        ).order_by("started_at", "id")[:1000]
    )


def record_get(*, tenant_ids: list[int] | None, pk: int) -> RequestRecord | None:
    """One record by id among the tenants ``tenant_ids`` (None: any tenant, for Admins)."""
    qs = RequestRecord.objects.filter(pk=pk)
    if tenant_ids is not None:
        qs = qs.filter(tenant_id__in=tenant_ids)
    return qs.first()


# --------------------------------------------------------------------------- cost outliers


@dataclass(frozen=True)
class CostOutlierRule:
    """A record is a cost outlier when its cost exceeds ``threshold`` = ``multiple`` times the
    agent's median cost per request over the trailing ``window`` (in this environment).
    ``threshold`` None: no records in the window, or a median of zero (nothing to compare)."""

    median: Decimal | None
    multiple: Decimal
    window: timedelta
    threshold: Decimal | None

    @property
    def window_label(self) -> str:
        """The window in words: "24 hours"."""
        hours = int(self.window.total_seconds() // 3600)
        return f"{hours} hour{'s' if hours != 1 else ''}"

    def ratio(self, cost: Decimal) -> Decimal | None:
        """``cost`` / median, for the badge ("14x"); None without a median."""
        if not self.median:
            return None
        return cost / self.median


def cost_outlier_rule(
    *, agent: Agent, environment: Environment, now: datetime | None = None
) -> CostOutlierRule:
    """The rule of :class:`CostOutlierRule` for ``agent`` in ``environment`` now, with the
    settings ``TELEMETRY_COST_OUTLIER_MULTIPLE`` (default 10) and
    ``TELEMETRY_COST_OUTLIER_WINDOW_HOURS`` (default 24). The median is over raw records
    (the explorer's reads are raw anyway): ``percentile_disc`` on PostgreSQL, the middle row
    by ``ORDER BY … OFFSET`` elsewhere."""
    multiple = Decimal(str(settings.TELEMETRY_COST_OUTLIER_MULTIPLE))
    window = timedelta(hours=settings.TELEMETRY_COST_OUTLIER_WINDOW_HOURS)
    median = (
        _median_cost(agent, environment, window, now)
        if now is not None
        else _recent_median_cost(agent, environment, window)
    )
    threshold = median * multiple if median else None
    return CostOutlierRule(median=median, multiple=multiple, window=window, threshold=threshold)


def _recent_median_cost(
    agent: Agent, environment: Environment, window: timedelta
) -> Decimal | None:
    # A day's median of raw records is a scan: computed at most once a minute per agent and
    # environment, not on every page of the explorer (a trailing median moves slowly).
    key = f"telemetry:cost-median:{agent.pk}:{environment.pk}:{int(window.total_seconds())}"
    cached = cache.get(key)
    if cached is None:
        median = _median_cost(agent, environment, window, datetime.now(UTC))
        cache.set(key, "" if median is None else str(median), MEDIAN_CACHE_S)
        return median
    return Decimal(cached) if cached else None


MEDIAN_CACHE_S = 60


def _median_cost(
    agent: Agent, environment: Environment, window: timedelta, now: datetime
) -> Decimal | None:
    qs = RequestRecord.objects.filter(
        tenant_id=agent.tenant_id,
        agent_id=agent.pk,
        environment_id=environment.pk,
        started_at__gte=now - window,
        started_at__lt=now,
    )
    median: Decimal | None
    if connection.vendor == "postgresql":
        sql, params = qs.values("cost_usd").query.sql_with_params()
        with connection.cursor() as cursor:
            cursor.execute(
                # ``sql`` is the ORM's own query text with its parameters kept apart
                f"SELECT percentile_disc(0.5) WITHIN GROUP (ORDER BY cost_usd) FROM ({sql}) s",  # noqa: S608
                params,
            )
            median = cursor.fetchone()[0]
    else:
        count = qs.count()
        median = (
            qs.order_by("cost_usd").values_list("cost_usd", flat=True)[(count - 1) // 2]
            if count
            else None
        )
    return median


def cost_outliers(
    queryset: QuerySet[RequestRecord], rule: CostOutlierRule
) -> QuerySet[RequestRecord]:
    """The records of ``queryset`` above the rule's threshold (none when it has none)."""
    if rule.threshold is None:
        return queryset.none()
    return queryset.filter(cost_usd__gt=rule.threshold)


# --------------------------------------------------------------------------- trace links


def trace_url(tenant: Tenant, trace_id: str) -> str | None:
    """The tenant's trace-link template with ``{trace_id}`` replaced by the record's trace id,
    percent-encoded (so an id a runtime made up cannot add a path, a query or markup);
    None without a template or a trace id."""
    template = tenant.trace_link_template
    if not template or not trace_id:
        return None
    return template.replace(TRACE_ID_PLACEHOLDER, quote(trace_id, safe=""))


# --------------------------------------------------------------------------- sessions


@dataclass(frozen=True)
class SessionSummary:
    """One session of an agent in an environment, from its kept raw records: how many
    requests and errors, its cost (USD), when it was last active, and the automatic scores
    (mean online quality score, thumbs up/down), None where none were reported."""

    session_id: str
    requests: int
    errors: int
    cost_usd: Decimal
    last_started_at: datetime
    quality_mean: float | None
    thumbs_up: int
    thumbs_down: int


def session_summaries(
    *,
    agent: Agent,
    environment: Environment,
    since: datetime,
    session_ids: list[str] | None = None,
    limit: int = 5000,
) -> list[SessionSummary]:
    """The sessions of ``agent`` in ``environment`` active since ``since`` (or exactly
    ``session_ids``), most recently active first, at most ``limit``; records without a
    session are left out. Reads raw records (one GROUP BY)."""
    qs = RequestRecord.objects.filter(
        tenant_id=agent.tenant_id,
        agent_id=agent.pk,
        environment_id=environment.pk,
        started_at__gte=since,
    ).exclude(session_id="")
    if session_ids is not None:
        qs = qs.filter(session_id__in=session_ids)
    rows = (
        qs.values("session_id")
        .annotate(
            requests=Count("id"),
            errors=Count("id", filter=Q(outcome__in=ERROR_OUTCOMES)),
            cost=Sum("cost_usd"),
            last=Max("started_at"),
            quality=Avg("quality_score"),
            up=Count("id", filter=Q(feedback_thumbs="up")),
            down=Count("id", filter=Q(feedback_thumbs="down")),
        )
        .order_by("-last", "session_id")[:limit]
    )
    return [
        SessionSummary(
            session_id=row["session_id"],
            requests=row["requests"],
            errors=row["errors"],
            cost_usd=row["cost"] or Decimal(0),
            last_started_at=row["last"],
            quality_mean=row["quality"],
            thumbs_up=row["up"],
            thumbs_down=row["down"],
        )
        for row in rows
    ]
