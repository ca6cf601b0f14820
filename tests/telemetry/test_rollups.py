"""Rollups are maintained as records arrive and equal a recount from the raw records; the
latency quantiles they answer stay within the sketch's relative accuracy."""

from __future__ import annotations

import random
import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from apps.telemetry.models import OUTCOME_COLUMNS, HourRollup, MinuteRollup, RequestRecord
from apps.telemetry.selectors import telemetry_compare, telemetry_series, telemetry_summary
from apps.telemetry.services import buckets_ingest, records_ingest
from apps.telemetry.sketches import (
    RELATIVE_ACCURACY,
    sketch_from_bytes,
    sketch_of,
    sketch_to_bytes,
)

from .conftest import now_utc

OUTCOMES = list(OUTCOME_COLUMNS)
NOW = datetime.now(UTC).replace(second=0, microsecond=0)

record_strategy = st.fixed_dictionaries(
    {
        "version_digest": st.sampled_from(["", "a" * 64, "b" * 64]),
        "variant": st.sampled_from(["stable", "candidate", "shadow"]),
        "minutes_ago": st.integers(min_value=1, max_value=150),
        "seconds": st.integers(min_value=0, max_value=59),
        "latency_ms": st.integers(min_value=0, max_value=120_000),
        "tokens_in": st.integers(min_value=0, max_value=10**7),
        "tokens_out": st.integers(min_value=0, max_value=10**6),
        "cost_usd": st.decimals(min_value=0, max_value=50, places=8),
        "outcome": st.sampled_from(OUTCOMES),
        "tool_calls": st.integers(min_value=0, max_value=40),
        "thumbs": st.sampled_from([None, "up", "down"]),
        "quality": st.one_of(st.none(), st.floats(min_value=0, max_value=1)),
    }
)


def as_json(spec: dict[str, Any]) -> dict[str, Any]:
    started = NOW - timedelta(minutes=spec["minutes_ago"]) + timedelta(seconds=spec["seconds"])
    data: dict[str, Any] = {
        "request_id": uuid.uuid4().hex,
        "agent": "support-bot",
        "version_digest": spec["version_digest"],
        "variant": spec["variant"],
        "started_at": started.isoformat(),
        "latency_ms": spec["latency_ms"],
        "tokens_in": spec["tokens_in"],
        "tokens_out": spec["tokens_out"],
        "cost_usd": str(spec["cost_usd"]),
        "outcome": spec["outcome"],
        "tool_calls": spec["tool_calls"],
        "quality_score": spec["quality"],
    }
    if spec["thumbs"]:
        data["feedback"] = {"thumbs": spec["thumbs"], "score": 0.5}
    return data


def recount(bucket_of: Any) -> dict[tuple[Any, ...], dict[str, Any]]:
    """The rollup fields recomputed from the raw records, per rollup key."""
    sums: dict[tuple[Any, ...], dict[str, Any]] = defaultdict(lambda: defaultdict(int))
    for r in RequestRecord.objects.all():
        key = (r.agent_id, r.environment_id, r.version_digest, r.variant, bucket_of(r.started_at))
        row = sums[key]
        row["requests"] += 1
        row[OUTCOME_COLUMNS[r.outcome]] += 1
        row["tokens_in"] += r.tokens_in
        row["tokens_out"] += r.tokens_out
        row["cost_usd"] += r.cost_usd
        row["tool_calls"] += r.tool_calls
        row["latency_sum_ms"] += r.latency_ms
        row["feedback_up"] += r.feedback_thumbs == "up"
        row["feedback_down"] += r.feedback_thumbs == "down"
        row["quality_count"] += r.quality_score is not None
        row.setdefault("latencies", []).append(r.latency_ms)
    return sums


def assert_rollups_match(model: Any, bucket_of: Any) -> None:
    expected = recount(bucket_of)
    rows = {
        (r.agent_id, r.environment_id, r.version_digest, r.variant, r.bucket_start): r
        for r in model.objects.all()
    }
    assert set(rows) == set(expected)
    for key, sums in expected.items():
        row = rows[key]
        for name, value in sums.items():
            if name == "latencies":
                continue
            assert getattr(row, name) == value, (key, name)
        sketch = sketch_from_bytes(row.latency_sketch)
        assert sketch.count == len(sums["latencies"])


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    specs=st.lists(record_strategy, min_size=1, max_size=60),
    chunk=st.integers(min_value=1, max_value=25),
    resend=st.booleans(),
)
def test_rollups__random_batches__equal_a_recount_of_raw_records(
    token: Any, specs: list[dict[str, Any]], chunk: int, resend: bool
) -> None:
    records = [as_json(spec) for spec in specs]
    for start in range(0, len(records), chunk):
        records_ingest(token=token, records=records[start : start + chunk])
    if resend:  # a retried delivery of everything changes nothing
        records_ingest(token=token, records=records)
    assert_rollups_match(MinuteRollup, lambda t: t.replace(second=0, microsecond=0))
    assert_rollups_match(HourRollup, lambda t: t.replace(minute=0, second=0, microsecond=0))


def exact_quantile(values: list[int], q: float) -> float:
    """The value DDSketch's quantile q approximates: the sorted value at rank q * (n - 1)."""
    ordered = sorted(values)
    return ordered[int(q * (len(ordered) - 1))]


def test_quantiles__from_records__within_relative_accuracy(token: Any, agent: Any) -> None:
    rng = random.Random(7)
    latencies = [int(rng.lognormvariate(5, 1.2)) + 1 for _ in range(3000)]
    base = now_utc() - timedelta(minutes=20)
    records = [
        {
            "request_id": f"q-{i}",
            "agent": "support-bot",
            "version_digest": "a" * 64,
            "started_at": (base + timedelta(seconds=i % 600)).isoformat(),
            "latency_ms": latency,
            "outcome": "success",
        }
        for i, latency in enumerate(latencies)
    ]
    for start in range(0, len(records), 1000):
        records_ingest(token=token, records=records[start : start + 1000])
    stats = telemetry_summary(
        tenant=token.tenant,
        agent=agent,
        environment=token.environment,
        start=base - timedelta(minutes=1),
        end=now_utc(),
    )
    assert stats.requests == 3000
    for q, estimate in ((0.5, stats.p50_ms), (0.95, stats.p95_ms), (0.99, stats.p99_ms)):
        exact = exact_quantile(latencies, q)
        assert estimate is not None
        assert abs(estimate - exact) <= RELATIVE_ACCURACY * exact + 1e-9, (q, estimate, exact)


def test_quantiles__from_buckets_of_many_runtimes__within_relative_accuracy(
    token: Any, agent: Any
) -> None:
    rng = random.Random(11)
    start = now_utc().replace(second=0, microsecond=0) - timedelta(minutes=5)
    everything: list[int] = []
    for runtime in range(20):
        latencies = [int(rng.expovariate(1 / 250)) + 1 for _ in range(200)]
        everything.extend(latencies)
        item = {
            "bucket_start": (start + timedelta(seconds=10 * (runtime % 6))).isoformat(),
            "agent": "support-bot",
            "version_digest": "c" * 64,
            "variant": "candidate",
            "count_success": len(latencies),
            "latency_sketch": __import__("base64")
            .b64encode(sketch_to_bytes(sketch_of(latencies)))
            .decode(),
            "latency_sum_ms": sum(latencies),
            "cost_usd": "1.5",
        }
        result = buckets_ingest(token=token, instance_id=f"rt-{runtime}", buckets=[item])
        assert result.accepted == 1, result.rejected
    series = telemetry_series(
        tenant=token.tenant,
        agent=agent,
        environment=token.environment,
        start=start,
        end=start + timedelta(minutes=2),
        resolution="minute",
    )
    assert [(s.version_digest, s.variant) for s in series] == [("c" * 64, "candidate")]
    (point,) = series[0].points
    assert point.stats.requests == 4000
    assert point.stats.cost_per_request == Decimal("30") / Decimal(4000)
    for q in (0.5, 0.95, 0.99):
        exact = exact_quantile(everything, q)
        estimate = point.stats.quantile_ms(q)
        assert estimate is not None
        assert abs(estimate - exact) <= RELATIVE_ACCURACY * exact + 1e-9


def test_compare__two_versions__error_rate_p95_and_cost_per_request(token: Any, agent: Any) -> None:
    base = now_utc() - timedelta(minutes=10)

    def rec(i: int, digest: str, outcome: str, latency: int, cost: str) -> dict[str, Any]:
        return {
            "request_id": f"{digest[0]}-{i}",
            "agent": "support-bot",
            "version_digest": digest,
            "variant": "stable" if digest[0] == "a" else "candidate",
            "started_at": (base + timedelta(seconds=i)).isoformat(),
            "latency_ms": latency,
            "outcome": outcome,
            "cost_usd": cost,
        }

    a, b = "a" * 64, "b" * 64
    records = [rec(i, a, "error" if i < 10 else "success", 100, "0.01") for i in range(100)]
    records += [rec(i, b, "error" if i < 30 else "success", 400, "0.05") for i in range(100)]
    records_ingest(token=token, records=records)
    result = telemetry_compare(token.tenant, agent, token.environment, a, b, timedelta(hours=1))
    assert (result.a.requests, result.b.requests) == (100, 100)
    assert (result.a.error_rate, result.b.error_rate) == (0.1, 0.3)
    assert result.a.p95_ms == pytest.approx(100, rel=RELATIVE_ACCURACY)
    assert result.b.p95_ms == pytest.approx(400, rel=RELATIVE_ACCURACY)
    assert result.a.cost_per_request == Decimal("0.01")
    assert result.b.cost_per_request == Decimal("0.05")


def test_rollups__records_and_buckets_of_one_minute__merged_into_one_row(
    token: Any, agent: Any
) -> None:
    minute = now_utc().replace(second=0, microsecond=0) - timedelta(minutes=3)
    records = [
        {
            "request_id": f"mix-{i}",
            "agent": "support-bot",
            "version_digest": "e" * 64,
            "variant": "candidate",
            "started_at": (minute + timedelta(seconds=i)).isoformat(),
            "latency_ms": 1000 + i,
            "outcome": "error",
            "cost_usd": "0.5",
        }
        for i in range(5)
    ]
    records_ingest(token=token, records=records)
    latencies = [10, 20, 30]
    bucket = {
        "bucket_start": (minute + timedelta(seconds=20)).isoformat(),
        "agent": "support-bot",
        "version_digest": "e" * 64,
        "variant": "candidate",
        "count_success": 3,
        "latency_sketch": __import__("base64")
        .b64encode(sketch_to_bytes(sketch_of(latencies)))
        .decode(),
        "latency_sum_ms": 60,
        "cost_usd": "0.03",
    }
    assert buckets_ingest(token=token, instance_id="rt-9", buckets=[bucket]).accepted == 1
    row = MinuteRollup.objects.get()
    assert (row.requests, row.count_error, row.count_success) == (8, 5, 3)
    assert row.cost_usd == Decimal("2.53")
    assert row.latency_sum_ms == 60 + sum(1000 + i for i in range(5))
    sketch = sketch_from_bytes(row.latency_sketch)
    assert sketch.count == 8
    assert sketch.get_quantile_value(0) == pytest.approx(10, rel=RELATIVE_ACCURACY)
    assert sketch.get_quantile_value(1) == pytest.approx(1004, rel=RELATIVE_ACCURACY)
    assert HourRollup.objects.get().requests == 8
