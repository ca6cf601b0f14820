"""Every write of telemetry: ingesting request records and 10-second buckets (idempotent, with
the rollups maintained in the same transaction), the day partitions, retention.

How a batch is stored (docs/decisions/0021):

1. each item is checked alone (``validation``); refused items are reported, the rest go on;
2. one transaction: the idempotency keys are inserted with ``ON CONFLICT DO NOTHING
   RETURNING`` (sorted, so two clients sending overlapping batches lock keys in the same
   order) and only the items whose key was new go further — a retried batch, or the same
   batch racing from two clients, is stored and counted once (the loser waits on the
   winner's key rows and then finds them taken); the same statement names the missing day
   partitions, created next;
3. the new raw records are written (PostgreSQL: ``COPY``);
4. the new items are summed per rollup key in Python and merged into ``MinuteRollup`` then
   ``HourRollup`` (counters added in SQL, rows locked, in key order; on PostgreSQL both
   upserts in one statement), then the merged latency sketches are written back under those
   row locks (one statement). Raw rows are never read again;
5. on PostgreSQL the transaction commits without waiting for its WAL flush unless
   ``TELEMETRY_SYNCHRONOUS_COMMIT`` (a crash may lose the last ~0.6 s of batches, each
   whole; see the setting).

The upserts are written here (``INSERT … ON CONFLICT … DO UPDATE … RETURNING``), not with the
kernel's ``apps/core/upsert.py`` (one table per call): ingestion puts the minute and hour
upserts in one statement, returns each row's stored sketch with it, and sends the keys as
two text parameters; every extra round trip is paid while a fleet's hot rollup rows are
locked (decision 0021). Portable to SQLite, the embedded default.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import structlog
from ddsketch.ddsketch import BaseDDSketch
from django.conf import settings
from django.core.cache import cache
from django.db import DatabaseError, IntegrityError, connection, transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from apps.accounts.models import RuntimeToken
from apps.core.events import TELEMETRY_INGESTED, publish_after_commit
from apps.tenancy.models import Agent

from .models import (
    METRIC_COLUMNS,
    OUTCOME_COLUMNS,
    BucketReceipt,
    HourRollup,
    MinuteRollup,
    Outcome,
    RecordKey,
    RequestRecord,
    Rollup,
    Variant,
)
from .otlp import carry_keys, convert
from .sketches import sketch_from_bytes, sketch_new, sketch_to_bytes
from .validation import BucketRow, RecordRow, Window, bucket_check, record_check

log = structlog.get_logger(__name__)

RAW_TABLE = RequestRecord._meta.db_table
PARTITION_PREFIX = f"{RAW_TABLE}_p"


# --- results -------------------------------------------------------------------------------


@dataclass
class IngestResult:
    """What a batch did: ``accepted`` items newly stored and counted, ``duplicates`` valid
    items already stored before (or twice in the batch; not counted again), ``rejected``
    the refused items: ``{"pointer": "/records/3", "errors": {"/records/3/cost_usd": [..]}}``."""

    accepted: int = 0
    duplicates: int = 0
    rejected: list[dict[str, Any]] = field(default_factory=list)

    def add(self, other: IngestResult) -> None:
        self.accepted += other.accepted
        self.duplicates += other.duplicates
        self.rejected.extend(other.rejected)

    def as_json(self) -> dict[str, Any]:
        return {"accepted": self.accepted, "duplicates": self.duplicates, "rejected": self.rejected}


# --- scope ---------------------------------------------------------------------------------


# Slug -> id of the agents in a token's scope, per (tenant, token agent): a batch arrives
# every few seconds per runtime and agents change rarely. An unknown slug reloads at once (a
# new agent is never refused); an archived one may still be taken for AGENT_CACHE_S.
AGENT_CACHE_S = 30.0
_agent_cache: dict[tuple[int, int | None], tuple[float, dict[str, int]]] = {}


def token_agents(token: RuntimeToken, *, fresh: bool = False) -> dict[str, int]:
    """Slug → id of the agents a runtime token may report for: its one agent if it names one,
    else every active agent of its tenant. Cached ``AGENT_CACHE_S`` per process unless
    ``fresh``."""
    key = (token.tenant_id, token.agent_id)
    cached = _agent_cache.get(key)
    if not fresh and cached is not None and time.monotonic() - cached[0] < AGENT_CACHE_S:
        return cached[1]
    agents = Agent.objects.filter(tenant_id=token.tenant_id, archived_at__isnull=True)
    if token.agent_id is not None:
        agents = agents.filter(pk=token.agent_id)
    found = dict(agents.values_list("slug", "id"))
    _agent_cache[key] = (time.monotonic(), found)
    return found


def agent_cache_clear(**_: Any) -> None:
    """Forget every cached slug map (connected to Agent saves and deletes)."""
    _agent_cache.clear()


def _agents_for(token: RuntimeToken, items: Sequence[Any]) -> dict[str, int]:
    """``token_agents``, reloaded once if an item names a slug the cache does not know."""
    agents = token_agents(token)
    slugs = {item.get("agent") for item in items if isinstance(item, dict)}
    if any(isinstance(slug, str) and slug not in agents for slug in slugs):
        agents = token_agents(token, fresh=True)
    return agents


def _scope_label(token: RuntimeToken) -> str:
    label = f"tenant {token.tenant.slug}, environment {token.environment.slug}"
    if token.agent_id is not None:
        label += f", agent {token.agent.slug}"  # type: ignore[union-attr]
    return label


def ingest_window(now: datetime | None = None) -> Window:
    """The ``started_at`` range accepted now: the raw retention window in the past,
    ``TELEMETRY_MAX_FUTURE_S`` ahead."""
    return Window.around(
        now or timezone.now(),
        raw_days=settings.TELEMETRY_RAW_RETENTION_DAYS,
        future_s=settings.TELEMETRY_MAX_FUTURE_S,
    )


# --- rollup deltas ---------------------------------------------------------------------------

RollupKey = tuple[int, int, int, str, str, datetime]  # tenant, agent, env, digest, variant, start
_SUM_COLUMNS = ("requests", *OUTCOME_COLUMNS.values(), *METRIC_COLUMNS)
_KEY_COLUMNS = (
    "tenant_id",
    "agent_id",
    "environment_id",
    "version_digest",
    "variant",
    "bucket_start",
)


class RollupDelta:
    """What a batch adds to one rollup row: the sums (``_SUM_COLUMNS``) and a sketch."""

    __slots__ = ("sketch", "sums")

    def __init__(self) -> None:
        self.sums: dict[str, Any] = dict.fromkeys(_SUM_COLUMNS, 0)
        self.sums["cost_usd"] = Decimal(0)
        self.sums["feedback_score_sum"] = 0.0
        self.sums["quality_sum"] = 0.0
        self.sketch: BaseDDSketch = sketch_new()

    def add_records(self, rows: Iterable[RecordRow]) -> None:
        """Add records of this rollup key: a request each to the sums, its latency to the
        sketch. The sums are kept in locals while the rows are read (a batch is up to 1,000
        records; this runs for each)."""
        outcomes = dict.fromkeys(OUTCOME_COLUMNS, 0)
        requests = latency = tokens_in = tokens_out = steps = tool_calls = tool_failures = 0
        wrong_actions = 0
        feedback_up = feedback_down = score_count = quality_count = 0
        score_sum = quality_sum = 0.0
        cost = Decimal(0)
        add = self.sketch.add
        for row in rows:
            requests += 1
            outcomes[row.outcome] += 1
            latency += row.latency_ms
            tokens_in += row.tokens_in
            tokens_out += row.tokens_out
            cost += row.cost_usd
            steps += row.steps
            tool_calls += row.tool_calls
            tool_failures += row.tool_failures
            wrong_actions += row.wrong_actions
            if row.feedback_thumbs == "up":
                feedback_up += 1
            elif row.feedback_thumbs == "down":
                feedback_down += 1
            if row.feedback_score is not None:
                score_sum += row.feedback_score
                score_count += 1
            if row.quality_score is not None:
                quality_sum += row.quality_score
                quality_count += 1
            add(row.latency_ms)
        sums = self.sums
        sums["requests"] += requests
        for outcome, count in outcomes.items():
            sums[OUTCOME_COLUMNS[outcome]] += count
        sums["latency_sum_ms"] += latency
        sums["tokens_in"] += tokens_in
        sums["tokens_out"] += tokens_out
        sums["cost_usd"] += cost
        sums["steps"] += steps
        sums["tool_calls"] += tool_calls
        sums["tool_failures"] += tool_failures
        sums["wrong_actions"] += wrong_actions
        sums["feedback_up"] += feedback_up
        sums["feedback_down"] += feedback_down
        sums["feedback_score_sum"] += score_sum
        sums["feedback_score_count"] += score_count
        sums["quality_sum"] += quality_sum
        sums["quality_count"] += quality_count

    def add_bucket(self, row: BucketRow) -> None:
        sums = self.sums
        sums["requests"] += row.requests
        for outcome, count in row.counts.items():
            sums[OUTCOME_COLUMNS[outcome]] += count
        for name in METRIC_COLUMNS:
            sums[name] += getattr(row, name)
        self.sketch.merge(row.sketch)


def _minute(moment: datetime) -> datetime:
    return moment.replace(second=0, microsecond=0)


def _hour(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


def _as_utc(value: Any) -> datetime:
    """A datetime read back by a raw cursor: aware on PostgreSQL, text on SQLite."""
    if isinstance(value, str):
        value = parse_datetime(value)
    assert isinstance(value, datetime)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _upsert_sql(model: type[Rollup], deltas: dict[RollupKey, RollupDelta]) -> tuple[str, list[Any]]:
    """``INSERT … ON CONFLICT DO UPDATE … RETURNING`` adding ``deltas`` into ``model``'s rows:
    the sums are added in SQL (which locks each row; rows go in key order, so concurrent
    batches lock in the same order and cannot deadlock). Returns the statement and its
    parameters; it returns ``id``, the key columns and the stored sketch of each row."""
    table = model._meta.db_table
    adapt = connection.ops.adapt_datetimefield_value
    columns = [*_KEY_COLUMNS, *_SUM_COLUMNS, "latency_sketch"]
    placeholders = "(" + ", ".join(["%s"] * len(columns)) + ")"
    keys = sorted(deltas)
    params: list[Any] = []
    for key in keys:
        tenant_id, agent_id, environment_id, digest, variant, start = key
        sums = deltas[key].sums
        params.extend((tenant_id, agent_id, environment_id, digest, variant, adapt(start)))
        params.extend(sums[name] for name in _SUM_COLUMNS)
        params.append(b"")
    updates = ", ".join(f"{name} = {table}.{name} + EXCLUDED.{name}" for name in _SUM_COLUMNS)
    sql = (
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES "  # noqa: S608 - table and column names are ours
        + ", ".join([placeholders] * len(keys))
        + f" ON CONFLICT ({', '.join(_KEY_COLUMNS)}) DO UPDATE SET {updates}"
        + f" RETURNING id, {', '.join(_KEY_COLUMNS)}, latency_sketch"
    )
    return sql, params


def _merged_sketches(
    returned: Iterable[Sequence[Any]], deltas: dict[RollupKey, RollupDelta]
) -> list[tuple[bytes, int]]:
    """(sketch bytes, row id) to write back for the rows an upsert returned: the stored sketch
    merged with the batch's, or the batch's alone for a new row."""
    writes = []
    for row_id, tenant_id, agent_id, environment_id, digest, variant, start, stored in returned:
        delta = deltas[(tenant_id, agent_id, environment_id, digest, variant, _as_utc(start))]
        if stored:
            merged = sketch_from_bytes(stored, trusted=True)
            merged.merge(delta.sketch)
        else:
            merged = delta.sketch
        writes.append((sketch_to_bytes(merged), row_id))
    return writes


def _hour_deltas(deltas: dict[RollupKey, RollupDelta]) -> dict[RollupKey, RollupDelta]:
    """The minute deltas summed into the hour rollup rows they roll into."""
    hours: dict[RollupKey, RollupDelta] = {}
    for key, delta in deltas.items():
        hour_key = (*key[:5], _hour(key[5]))
        into = hours.get(hour_key)
        if into is None:
            hours[hour_key] = into = RollupDelta()
        for name, value in delta.sums.items():
            into.sums[name] += value
        into.sketch.merge(delta.sketch)
    return hours


def _sketch_update_sql(model: type[Rollup], writes: list[tuple[bytes, int]]) -> str:
    """One ``UPDATE … FROM (VALUES …)`` writing (sketch, id) pairs back (PostgreSQL)."""
    return (
        f"UPDATE {model._meta.db_table} AS t SET latency_sketch = v.s FROM (VALUES "  # noqa: S608 - table and column names are ours
        + ", ".join(["(%s::bytea, %s::bigint)"] * len(writes))
        + ") AS v(s, id) WHERE t.id = v.id RETURNING t.id"
    )


def _merge_all(deltas: dict[RollupKey, RollupDelta]) -> None:
    """Add ``deltas`` into the minute rollups, then into the hour rollups they roll into
    (always in this order): sums added in SQL under the row locks the upserts take, sketches
    merged in Python and written back under those locks. Raw rows are never read.

    PostgreSQL: two statements for both tables, so fewer round trips while the hot rows are
    locked (a whole fleet reports the same minute of the same version): the two upserts as
    data-modifying CTEs read minute rows first, then hour rows, each in key order (every
    batch locks in that one order, so none deadlocks), then both sketch write-backs, which
    also sets the transaction's commit mode (``TELEMETRY_SYNCHRONOUS_COMMIT``; read at
    COMMIT, so the last statement may set it). SQLite (one writer at a time): statement by
    statement."""
    if not deltas:
        return
    hours = _hour_deltas(deltas)
    if connection.vendor != "postgresql":
        for model, each in ((MinuteRollup, deltas), (HourRollup, hours)):
            sql, params = _upsert_sql(model, each)
            with connection.cursor() as cursor:
                cursor.execute(sql, params)
                cursor.executemany(
                    f"UPDATE {model._meta.db_table} SET latency_sketch = %s WHERE id = %s",  # noqa: S608 - table and column names are ours
                    _merged_sketches(cursor.fetchall(), each),
                )
        return
    minute_sql, minute_params = _upsert_sql(MinuteRollup, deltas)
    hour_sql, hour_params = _upsert_sql(HourRollup, hours)
    with connection.cursor() as cursor:
        cursor.execute(
            f"WITH m AS ({minute_sql}), h AS ({hour_sql}) "  # noqa: S608 - built from our names
            "SELECT 0 AS t, * FROM m UNION ALL SELECT 1 AS t, * FROM h",
            [*minute_params, *hour_params],
        )
        returned = cursor.fetchall()
        minute_writes = _merged_sketches((row[1:] for row in returned if row[0] == 0), deltas)
        hour_writes = _merged_sketches((row[1:] for row in returned if row[0] == 1), hours)
        cursor.execute(
            f"WITH um AS ({_sketch_update_sql(MinuteRollup, minute_writes)}), "  # noqa: S608
            f"uh AS ({_sketch_update_sql(HourRollup, hour_writes)}) "
            "SELECT (SELECT count(*) FROM um), (SELECT count(*) FROM uh), "
            "set_config('synchronous_commit', %s, true)",
            [
                *(value for pair in minute_writes for value in pair),
                *(value for pair in hour_writes for value in pair),
                "on" if settings.TELEMETRY_SYNCHRONOUS_COMMIT else "off",
            ],
        )


# --- partitions ------------------------------------------------------------------------------


def _announce_consumption(
    tenant_id: int,
    environment_id: int,
    *,
    records: Sequence[RecordRow] = (),
    buckets: Sequence[BucketRow] = (),
) -> None:
    """Tell whoever counts consumption (budgets) what this batch newly stored, once it commits
    (``events.TELEMETRY_INGESTED``, process-local). Summed per (agent, end-user hash, minute):
    cost in USD, tokens in plus out, requests (a ``budget_blocked`` request or a shadow run is
    not a request served; its cost and tool calls still count), tool calls."""
    sums: dict[tuple[int, str, datetime], list[Any]] = {}
    for row in records:
        key = (row.agent_id, row.end_user_hash, _minute(row.started_at))
        entry = sums.get(key)
        if entry is None:
            sums[key] = entry = [Decimal(0), 0, 0, 0]
        entry[0] += row.cost_usd
        entry[1] += row.tokens_in + row.tokens_out
        served = row.outcome != Outcome.BUDGET_BLOCKED and row.variant != Variant.SHADOW
        entry[2] += 1 if served else 0
        entry[3] += row.tool_calls
    for bucket in buckets:
        key = (bucket.agent_id, "", _minute(bucket.bucket_start))
        entry = sums.get(key)
        if entry is None:
            sums[key] = entry = [Decimal(0), 0, 0, 0]
        entry[0] += bucket.cost_usd
        entry[1] += bucket.tokens_in + bucket.tokens_out
        if bucket.variant != Variant.SHADOW:
            entry[2] += bucket.requests - bucket.counts.get(Outcome.BUDGET_BLOCKED, 0)
        entry[3] += bucket.tool_calls
    if not sums:
        return
    publish_after_commit(
        TELEMETRY_INGESTED,
        str(tenant_id),
        {
            "tenant_id": tenant_id,
            "environment_id": environment_id,
            "usage": [
                [agent_id, user, minute.isoformat(), str(cost), tokens, requests, tool_calls]
                for (agent_id, user, minute), (cost, tokens, requests, tool_calls) in sums.items()
            ],
            "request_ids": [row.request_id for row in records],
        },
        broadcast=False,
    )


def partition_name(day: date) -> str:
    """The PostgreSQL partition of ``RequestRecord`` holding one UTC day."""
    return f"{PARTITION_PREFIX}{day:%Y%m%d}"


def partitions_ensure(days: Iterable[date]) -> list[str]:
    """Create the day partitions of ``days`` that do not exist yet (PostgreSQL; a no-op on
    SQLite). Safe against a concurrent creator. Returns the names created."""
    if connection.vendor != "postgresql":
        return []
    wanted = {partition_name(day): day for day in days}
    if not wanted:
        return []
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT name FROM unnest(%s::text[]) AS name WHERE to_regclass(name) IS NULL",
            [sorted(wanted)],
        )
        missing = [row[0] for row in cursor.fetchall()]
    return _partitions_create(wanted, missing)


def _partitions_create(wanted: dict[str, date], missing: Iterable[str]) -> list[str]:
    """Create the partitions named in ``missing`` (days from ``wanted``), each in a savepoint
    that tolerates a concurrent creator. Returns the names created."""
    created = []
    for name in missing:
        day = wanted[name]
        start = datetime(day.year, day.month, day.day, tzinfo=UTC)
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute(
                    f"CREATE TABLE IF NOT EXISTS {name} PARTITION OF {RAW_TABLE} "
                    "FOR VALUES FROM (%s) TO (%s)",
                    [start.isoformat(), (start + timedelta(days=1)).isoformat()],
                )
        except (IntegrityError, DatabaseError):
            # Another transaction created it at the same moment (a duplicate catalog row).
            log.info("telemetry.partition_race", partition=name)
            continue
        created.append(name)
        log.info("telemetry.partition_created", partition=name)
    return created


def partitions_list() -> dict[str, date]:
    """The day partitions of ``RequestRecord`` that exist (PostgreSQL; empty elsewhere)."""
    if connection.vendor != "postgresql":
        return {}
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = %s::regclass",
            [RAW_TABLE],
        )
        names = [row[0] for row in cursor.fetchall()]
    found = {}
    for name in names:
        suffix = name.removeprefix(PARTITION_PREFIX)
        if len(suffix) == 8 and suffix.isdigit():
            found[name] = date(int(suffix[:4]), int(suffix[4:6]), int(suffix[6:]))
    return found


# --- ingestion -------------------------------------------------------------------------------


def _insert_keys(tenant_id: int, rows: Sequence[RecordRow]) -> set[str]:
    """Insert the idempotency keys of ``rows`` (sorted by request id); returns the request ids
    that were new. Waits on a concurrent transaction holding the same keys. On PostgreSQL the
    same statement also finds the day partitions the rows need that do not exist yet, which
    are then created (``partitions_ensure`` without its own round trip)."""
    ordered = sorted(rows, key=lambda row: row.request_id)
    table = RecordKey._meta.db_table
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            wanted = {partition_name(row.started_at.date()): row.started_at.date() for row in rows}
            cursor.execute(
                f"WITH k AS (INSERT INTO {table} (tenant_id, request_id, started_at) "  # noqa: S608 - table and column names are ours
                # Two text parameters split on the server rather than two arrays: request
                # ids are printable ASCII without spaces (validation), and psycopg's
                # client-side array quoting cost more than the insert.
                "SELECT %s, r, s::timestamptz FROM unnest(string_to_array(%s, ' '), "
                "string_to_array(%s, ' ')) AS u(r, s) "
                "ON CONFLICT (tenant_id, request_id) DO NOTHING RETURNING request_id) "
                "SELECT request_id, NULL FROM k UNION ALL "
                "SELECT NULL, name FROM unnest(%s::text[]) AS name WHERE to_regclass(name) IS NULL",
                [
                    tenant_id,
                    " ".join(r.request_id for r in ordered),
                    " ".join(r.started_at.isoformat() for r in ordered),
                    sorted(wanted),
                ],
            )
            returned = cursor.fetchall()
            _partitions_create(wanted, [name for _, name in returned if name is not None])
            return {request_id for request_id, _ in returned if request_id is not None}
        new: set[str] = set()
        adapt = connection.ops.adapt_datetimefield_value
        for chunk_start in range(0, len(ordered), 300):
            chunk = ordered[chunk_start : chunk_start + 300]
            params: list[Any] = []
            for r in chunk:
                params.extend((tenant_id, r.request_id, adapt(r.started_at)))
            cursor.execute(
                f"INSERT INTO {table} (tenant_id, request_id, started_at) VALUES "  # noqa: S608 - table and column names are ours
                + ", ".join(["(%s, %s, %s)"] * len(chunk))
                + " ON CONFLICT (tenant_id, request_id) DO NOTHING RETURNING request_id",
                params,
            )
            new.update(row[0] for row in cursor.fetchall())
        return new


_RECORD_COLUMNS = (
    "agent_id",
    "request_id",
    "session_id",
    "end_user_hash",
    "version_digest",
    "variant",
    "started_at",
    "latency_ms",
    "steps",
    "tool_calls",
    "tool_failures",
    "wrong_actions",
    "tokens_in",
    "tokens_out",
    "cost_usd",
    "model",
    "outcome",
    "error_code",
    "trace_id",
    "feedback_thumbs",
    "feedback_score",
    "quality_score",
)


def _copy_text(value: str) -> str:
    """A text value in COPY's text format. Validation refused control characters (tab,
    newline, carriage return), so only the backslash needs escaping."""
    return value.replace("\\", "\\\\")


def _copy_line(row: RecordRow) -> str:
    """The record's columns after tenant and environment, as one line of COPY text."""
    return (
        "\t".join(
            (
                str(row.agent_id),
                row.request_id,
                _copy_text(row.session_id),
                _copy_text(row.end_user_hash),
                row.version_digest,
                row.variant,
                row.started_at.isoformat(),
                str(row.latency_ms),
                str(row.steps),
                str(row.tool_calls),
                str(row.tool_failures),
                str(row.wrong_actions),
                str(row.tokens_in),
                str(row.tokens_out),
                str(row.cost_usd),
                _copy_text(row.model),
                row.outcome,
                _copy_text(row.error_code),
                _copy_text(row.trace_id),
                row.feedback_thumbs or "\\N",
                "\\N" if row.feedback_score is None else repr(row.feedback_score),
                "\\N" if row.quality_score is None else repr(row.quality_score),
            )
        )
        + "\n"
    )


def _insert_records(tenant_id: int, environment_id: int, rows: Sequence[RecordRow]) -> None:
    if not rows:
        return
    columns = ", ".join(("tenant_id", "environment_id", *_RECORD_COLUMNS))
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # COPY: the fastest way in; the rows are known new (their keys were just taken).
            prefix = f"{tenant_id}\t{environment_id}\t"
            data = "".join(prefix + _copy_line(row) for row in rows).encode()
            with cursor.cursor.copy(f"COPY {RAW_TABLE} ({columns}) FROM STDIN") as copy:
                copy.write(data)
            return
        adapt = connection.ops.adapt_datetimefield_value
        values = []
        for row in rows:
            item = [tenant_id, environment_id]
            for name in _RECORD_COLUMNS:
                value = getattr(row, name)
                if name == "started_at":
                    value = adapt(value)
                elif name == "cost_usd":
                    value = str(value)
                item.append(value)
            values.append(item)
        marks = ", ".join(["%s"] * (len(_RECORD_COLUMNS) + 2))
        cursor.executemany(f"INSERT INTO {RAW_TABLE} ({columns}) VALUES ({marks})", values)  # noqa: S608 - table and column names are ours


def records_ingest(
    *, token: RuntimeToken, records: Sequence[Any], now: datetime | None = None
) -> IngestResult:
    """Store a batch of request records (the JSON items of ``POST /api/runtime/v1/records``)
    for the token's tenant and environment, idempotently by ``(tenant, request_id)``, and add
    the new ones to the minute and hour rollups, all in one transaction. Invalid items are
    refused one by one (``IngestResult.rejected``); nothing of them is stored."""
    window = ingest_window(now)
    agents = _agents_for(token, records)
    scope = _scope_label(token)
    result = IngestResult()
    valid: dict[str, RecordRow] = {}
    for index, item in enumerate(records):
        row, errors = record_check(item, index=index, agents=agents, scope=scope, window=window)
        if row is None:
            result.rejected.append({"pointer": f"/records/{index}", "errors": errors})
        elif row.request_id in valid:
            result.duplicates += 1  # the same request twice in one batch: stored once
        else:
            valid[row.request_id] = row
    if not valid:
        return result
    rows = list(valid.values())
    with transaction.atomic():
        new_ids = _insert_keys(token.tenant_id, rows)  # creates missing day partitions too
        fresh = [row for row in rows if row.request_id in new_ids]
        _insert_records(token.tenant_id, token.environment_id, fresh)
        groups: dict[RollupKey, list[RecordRow]] = {}
        tenant_id, environment_id = token.tenant_id, token.environment_id
        for row in fresh:
            key = (
                tenant_id,
                row.agent_id,
                environment_id,
                row.version_digest,
                row.variant,
                row.started_at.replace(second=0, microsecond=0),  # _minute, inlined
            )
            group = groups.get(key)
            if group is None:
                groups[key] = group = []
            group.append(row)
        deltas: dict[RollupKey, RollupDelta] = {}
        for key, group in groups.items():
            deltas[key] = delta = RollupDelta()
            delta.add_records(group)
        _merge_all(deltas)
        _announce_consumption(tenant_id, environment_id, records=fresh)
    result.accepted += len(fresh)
    result.duplicates += len(rows) - len(fresh)
    return result


def _insert_receipts(
    tenant_id: int, environment_id: int, instance_id: str, rows: Sequence[BucketRow]
) -> list[BucketRow]:
    """Insert the receipts of ``rows`` (in key order); returns the rows whose receipt was new."""
    table = BucketReceipt._meta.db_table
    adapt = connection.ops.adapt_datetimefield_value
    by_key = {
        (row.bucket_start, row.agent_id, row.version_digest, row.variant): row for row in rows
    }
    ordered = sorted(by_key)
    new: list[BucketRow] = []
    with connection.cursor() as cursor:
        for chunk_start in range(0, len(ordered), 200):
            chunk = ordered[chunk_start : chunk_start + 200]
            params: list[Any] = []
            for start, agent_id, digest, variant in chunk:
                params.extend(
                    (
                        tenant_id,
                        environment_id,
                        instance_id,
                        adapt(start),
                        agent_id,
                        digest,
                        variant,
                    )
                )
            cursor.execute(
                f"INSERT INTO {table} (tenant_id, environment_id, instance_id, bucket_start, "  # noqa: S608 - table and column names are ours
                "agent_id, version_digest, variant) VALUES "
                + ", ".join(["(%s, %s, %s, %s, %s, %s, %s)"] * len(chunk))
                + " ON CONFLICT (tenant_id, environment_id, instance_id, bucket_start, agent_id, "
                "version_digest, variant) DO NOTHING "
                "RETURNING bucket_start, agent_id, version_digest, variant",
                params,
            )
            for start, agent_id, digest, variant in cursor.fetchall():
                new.append(by_key[(_as_utc(start), agent_id, digest, variant)])
    return new


def buckets_ingest(
    *,
    token: RuntimeToken,
    instance_id: str,
    buckets: Sequence[Any],
    now: datetime | None = None,
) -> IngestResult:
    """Merge a runtime instance's pre-aggregated 10-second buckets into the minute and hour
    rollups, idempotently by ``(instance_id, bucket_start, agent, version_digest, variant)``
    within the token's tenant and environment. Invalid buckets are refused one by one."""
    window = ingest_window(now)
    agents = _agents_for(token, buckets)
    scope = _scope_label(token)
    result = IngestResult()
    valid: dict[tuple[datetime, int, str, str], BucketRow] = {}
    for index, item in enumerate(buckets):
        row, errors = bucket_check(item, index=index, agents=agents, scope=scope, window=window)
        if row is None:
            result.rejected.append({"pointer": f"/buckets/{index}", "errors": errors})
            continue
        key = (row.bucket_start, row.agent_id, row.version_digest, row.variant)
        if key in valid:
            result.duplicates += 1
        else:
            valid[key] = row
    if not valid:
        return result
    with transaction.atomic():
        fresh = _insert_receipts(
            token.tenant_id, token.environment_id, instance_id, list(valid.values())
        )
        deltas: dict[RollupKey, RollupDelta] = {}
        for row in fresh:
            rollup_key = (
                token.tenant_id,
                row.agent_id,
                token.environment_id,
                row.version_digest,
                row.variant,
                _minute(row.bucket_start),
            )
            delta = deltas.get(rollup_key)
            if delta is None:
                deltas[rollup_key] = delta = RollupDelta()
            delta.add_bucket(row)
        _merge_all(deltas)
        _announce_consumption(token.tenant_id, token.environment_id, buckets=fresh)
    result.accepted += len(fresh)
    result.duplicates += len(valid) - len(fresh)
    return result


# --- retention -------------------------------------------------------------------------------


@dataclass
class RetentionReport:
    """What one retention run did."""

    partitions_dropped: list[str] = field(default_factory=list)
    partitions_created: list[str] = field(default_factory=list)
    records_deleted: int = 0
    keys_deleted: int = 0
    receipts_deleted: int = 0
    minute_rollups_deleted: int = 0


def telemetry_retention_enforce(*, now: datetime | None = None) -> RetentionReport:
    """Apply the retention settings: raw records older than ``TELEMETRY_RAW_RETENTION_DAYS``
    go (PostgreSQL: whole day partitions whose day ended before the cutoff are dropped; SQLite:
    rows deleted), with their idempotency keys and bucket receipts; minute rollups older than
    ``TELEMETRY_MINUTE_RETENTION_DAYS`` are deleted; hour rollups are kept. Also creates the
    partitions of today and the next ``TELEMETRY_PARTITIONS_AHEAD_DAYS`` days. Idempotent."""
    now = now or timezone.now()
    raw_cutoff = now - timedelta(days=settings.TELEMETRY_RAW_RETENTION_DAYS)
    minute_cutoff = now - timedelta(days=settings.TELEMETRY_MINUTE_RETENTION_DAYS)
    report = RetentionReport()
    today = now.astimezone(UTC).date()
    report.partitions_created = partitions_ensure(
        today + timedelta(days=n) for n in range(settings.TELEMETRY_PARTITIONS_AHEAD_DAYS + 1)
    )
    if connection.vendor == "postgresql":
        for name, day in sorted(partitions_list().items(), key=lambda item: item[1]):
            day_end = datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(days=1)
            if day_end <= raw_cutoff:
                with transaction.atomic(), connection.cursor() as cursor:
                    cursor.execute(f"DROP TABLE IF EXISTS {name}")
                report.partitions_dropped.append(name)
    else:
        report.records_deleted, _ = RequestRecord.objects.filter(started_at__lt=raw_cutoff).delete()
    report.keys_deleted, _ = RecordKey.objects.filter(started_at__lt=raw_cutoff).delete()
    report.receipts_deleted, _ = BucketReceipt.objects.filter(bucket_start__lt=raw_cutoff).delete()
    report.minute_rollups_deleted, _ = MinuteRollup.objects.filter(
        bucket_start__lt=minute_cutoff
    ).delete()
    log.info(
        "telemetry.retention_enforced",
        partitions_dropped=len(report.partitions_dropped),
        partitions_created=len(report.partitions_created),
        records_deleted=report.records_deleted,
        keys_deleted=report.keys_deleted,
        receipts_deleted=report.receipts_deleted,
        minute_rollups_deleted=report.minute_rollups_deleted,
    )
    return report


# --------------------------------------------------------------------------- OTLP traces

# How long counts of child spans wait for their agent span: far beyond an exporter's batch
# delay (5 s by default), short enough that an agent span never sent costs little.
CARRY_SECONDS = 600


class TooManyInvocations(ValueError):
    """An OTLP export converts to more agent invocations than one batch may hold (413)."""


def traces_ingest(*, token: RuntimeToken, export: Any, limit: int) -> dict[str, Any]:
    """Store an OTLP trace export (``ExportTraceServiceRequest``, decoded) as request records
    through ``records_ingest``: each agent-invocation span becomes a record
    (``otlp.convert``, GenAI semantic conventions; an agent-scoped token names a missing
    agent). Child spans exported before their agent span wait in the cache (shared by every
    web process: Redis in production) for ``CARRY_SECONDS`` until it arrives.

    Returns the records endpoint's body (``accepted``, ``duplicates``, ``rejected``) with
    rejected pointers naming spans (``/resourceSpans/0/scopeSpans/0/spans/7/...``) and, when
    some were refused, OTLP's ``partialSuccess``. Raises ``TooManyInvocations`` past
    ``limit`` invocations, before storing anything."""
    keys = carry_keys(export)
    conversion = convert(export, carried=cache.get_many(keys) if keys else {})
    converted = conversion.records
    if len(converted) > limit:
        raise TooManyInvocations(
            f"At most {limit} agent invocations per export; this one has {len(converted)}. "
            "Export smaller batches (OTEL_BSP_MAX_EXPORT_BATCH_SIZE)."
        )
    records: list[dict[str, Any]] = []
    for item in converted:
        record = dict(item.record)
        if "agent" not in record and token.agent_id is not None:
            record["agent"] = token.agent.slug  # type: ignore[union-attr]
        records.append(record)
    result = records_ingest(token=token, records=records) if records else None
    if conversion.carry_out:
        cache.set_many(conversion.carry_out, timeout=CARRY_SECONDS)
    if conversion.consumed:
        cache.delete_many(conversion.consumed)
    body: dict[str, Any] = (
        result.as_json() if result is not None else {"accepted": 0, "duplicates": 0, "rejected": []}
    )
    pointers = [item.pointer for item in converted]
    body["rejected"] = [
        {
            "pointer": _span_pointer(r["pointer"], pointers),
            "errors": {_span_pointer(k, pointers): v for k, v in r.get("errors", {}).items()},
        }
        for r in body["rejected"]
    ]
    if body["rejected"]:
        body["partialSuccess"] = {
            "rejectedSpans": str(len(body["rejected"])),
            "errorMessage": "Some agent invocations were refused; see rejected.",
        }
    return body


def _span_pointer(pointer: str, index_pointers: list[str]) -> str:
    """``/records/3/cost_usd`` → ``/resourceSpans/0/scopeSpans/0/spans/7/cost_usd``: the
    ingestion names items by their index in the converted batch; the client knows spans."""
    parts = pointer.split("/", 3)  # "", "records", "3", rest
    if len(parts) >= 3 and parts[1] == "records" and parts[2].isdigit():
        index = int(parts[2])
        if index < len(index_pointers):
            rest = "/" + parts[3] if len(parts) == 4 else ""
            return index_pointers[index] + rest
    return pointer
