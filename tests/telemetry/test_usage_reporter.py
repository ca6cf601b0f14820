"""The data plane's usage reporter against the real server: records mode stores every
request; buckets mode sends 10-second buckets plus errors and a sample as records, and every
request is counted once in the rollups."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from apps.telemetry.models import BucketReceipt, MinuteRollup, RequestRecord
from dataplane.usage import UsageRecord, UsageReporter

pytestmark = pytest.mark.django_db(transaction=True)


def requests(count: int) -> list[UsageRecord]:
    start = datetime.now(UTC) - timedelta(minutes=2)
    return [
        UsageRecord(
            request_id=f"u-{i}",
            agent="support-bot",
            started_at=start + timedelta(milliseconds=37 * i),
            latency_ms=80 + i % 300,
            outcome="error" if i % 25 == 0 else "success",
            version_digest="d" * 64,
            variant="candidate" if i % 2 else "stable",
            tokens_in=100,
            cost_usd=Decimal("0.001"),
        )
        for i in range(count)
    ]


def test_usage_reporter__records_mode__every_request_stored(
    asgi_server: str, token_and_raw: Any
) -> None:
    reporter = UsageReporter(asgi_server, token_and_raw[1], instance_id="rt-1", batch_size=100)
    for item in requests(250):
        reporter.record(item)
    reporter.stop()
    assert (reporter.sent, reporter.dropped, reporter.rejected) == (250, 0, 0)
    assert RequestRecord.objects.count() == 250
    assert sum(MinuteRollup.objects.values_list("requests", flat=True)) == 250


def test_usage_reporter__buckets_mode__each_request_counted_once(
    asgi_server: str, token_and_raw: Any
) -> None:
    reporter = UsageReporter(
        asgi_server, token_and_raw[1], instance_id="rt-1", mode="buckets", sample_rate=0.05, seed=3
    )
    items = requests(2000)
    for item in items:
        reporter.record(item)
    reporter.stop()
    assert (reporter.sent, reporter.dropped, reporter.rejected) == (2000, 0, 0)
    raw = RequestRecord.objects.count()
    errors = sum(1 for item in items if item.outcome != "success")
    assert errors <= raw < 2000  # errors and a sample as records, the rest in buckets
    assert RequestRecord.objects.filter(outcome="error").count() == errors
    assert BucketReceipt.objects.exists()
    rollups = MinuteRollup.objects.all()
    assert sum(r.requests for r in rollups) == 2000
    assert sum(r.count_error for r in rollups) == errors
    assert sum(r.tokens_in for r in rollups) == 200_000
