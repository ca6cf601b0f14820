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
from django.db import connection
from django.db.models import Q, QuerySet

from apps.tenancy.models import TRACE_ID_PLACEHOLDER, Agent, Environment, Tenant

from .models import ERROR_OUTCOMES, HourRollup, MinuteRollup, RequestRecord, Rollup
from .sketches import sketch_from_bytes, sketch_new

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
class SeriesPoint:
    """One bucket of one (version, variant) series. ``p95_ms`` None when no latency was
    recorded; rates per minute; cost in USD."""

    bucket_start: datetime
    requests: int
    errors: int
    p95_ms: float | None
    cost_usd: Decimal
    tokens_in: int
    tokens_out: int
    bucket_minutes: float

    @property
    def request_rate(self) -> float:
        """Requests per minute."""
        return self.requests / self.bucket_minutes

    @property
    def error_rate(self) -> float | None:
        """Share of requests with an error outcome (0..1); None without requests."""
        return self.errors / self.requests if self.requests else None

    @property
    def cost_per_request(self) -> Decimal | None:
        return self.cost_usd / self.requests if self.requests else None

    @property
    def tokens_rate(self) -> float:
        """Tokens (in + out) per minute."""
        return (self.tokens_in + self.tokens_out) / self.bucket_minutes


@dataclass
class Series:
    """A (version digest, variant) line of the Telemetry page's charts."""

    version_digest: str
    variant: str
    points: list[SeriesPoint] = field(default_factory=list)
    p95_ms: float | None = None  # over the whole range (the merged sketch)

    @property
    def requests(self) -> int:
        return sum(p.requests for p in self.points)

    @property
    def errors(self) -> int:
        return sum(p.errors for p in self.points)

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.requests if self.requests else None

    @property
    def error_percent(self) -> float | None:
        rate = self.error_rate
        return None if rate is None else 100 * rate

    @property
    def cost_per_request(self) -> Decimal | None:
        requests = self.requests
        return sum((p.cost_usd for p in self.points), Decimal(0)) / requests if requests else None

    @property
    def label(self) -> str:
        return f"{short_digest(self.version_digest)} {self.variant}"


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


def telemetry_series(
    *, agent: Agent, environment: Environment, range_label: str, now: datetime | None = None
) -> list[Series]:
    """Per (version digest, variant) of ``agent`` in ``environment``: request rate, errors,
    p95 latency (merged DDSketches), cost and tokens per bucket of the range (RANGES), read
    from minute or hour rollups only. Buckets without traffic are absent. Sorted stable
    first, then candidate, shadow; by digest within."""
    _, width, model = RANGES[range_label]
    start, end = time_range(range_label, now=now)
    rows = (
        model.objects.filter(
            tenant_id=agent.tenant_id,
            agent_id=agent.pk,
            environment_id=environment.pk,
            bucket_start__gte=start,
            bucket_start__lt=end,
        )
        .order_by("bucket_start")
        .values_list(
            "version_digest",
            "variant",
            "bucket_start",
            "requests",
            *[f"count_{o}" for o in ERROR_OUTCOMES],
            "latency_sketch",
            "cost_usd",
            "tokens_in",
            "tokens_out",
        )
    )
    step = int(width.total_seconds())
    buckets: dict[tuple[str, str], dict[int, dict[str, Any]]] = defaultdict(dict)
    for digest, variant, bucket_start, requests, *rest in rows:
        errors = sum(rest[: len(ERROR_OUTCOMES)])
        sketch_bytes, cost, tokens_in, tokens_out = rest[len(ERROR_OUTCOMES) :]
        slot = int(bucket_start.timestamp()) // step * step
        acc = buckets[(digest, variant)].setdefault(
            slot,
            {
                "requests": 0,
                "errors": 0,
                "sketch": sketch_new(),
                "cost": Decimal(0),
                "in": 0,
                "out": 0,
            },
        )
        acc["requests"] += requests
        acc["errors"] += errors
        if sketch_bytes:
            acc["sketch"].merge(sketch_from_bytes(sketch_bytes))
        acc["cost"] += cost
        acc["in"] += tokens_in
        acc["out"] += tokens_out
    order = {"stable": 0, "candidate": 1, "shadow": 2}
    result = []
    for (digest, variant), slots in sorted(
        buckets.items(), key=lambda item: (order.get(item[0][1], 9), item[0][0])
    ):
        series = Series(version_digest=digest, variant=variant)
        total = sketch_new()
        for slot, acc in sorted(slots.items()):
            sketch = acc["sketch"]
            if sketch.count:
                total.merge(sketch)
            series.points.append(
                SeriesPoint(
                    bucket_start=datetime.fromtimestamp(slot, tz=UTC),
                    requests=acc["requests"],
                    errors=acc["errors"],
                    p95_ms=sketch.get_quantile_value(0.95) if sketch.count else None,
                    cost_usd=acc["cost"],
                    tokens_in=acc["in"],
                    tokens_out=acc["out"],
                    bucket_minutes=step / 60,
                )
            )
        series.p95_ms = total.get_quantile_value(0.95) if total.count else None
        result.append(series)
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
    now = now or datetime.now(UTC)
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
    threshold = median * multiple if median else None
    return CostOutlierRule(median=median, multiple=multiple, window=window, threshold=threshold)


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
