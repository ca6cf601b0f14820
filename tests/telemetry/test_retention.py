"""Retention: raw records go by whole day partitions on PostgreSQL, minute rollups after 90
days, hour rollups stay."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import connection

from apps.telemetry.models import HourRollup, MinuteRollup, RecordKey, RequestRecord
from apps.telemetry.services import (
    partition_name,
    partitions_list,
    records_ingest,
    telemetry_retention_enforce,
)

from .conftest import record


def ingest_at(token: Any, moment: datetime, count: int) -> None:
    """Records that started at ``moment``, ingested as if it were then."""
    records = [record(started_at=(moment - timedelta(seconds=5)).isoformat()) for _ in range(count)]
    result = records_ingest(token=token, records=records, now=moment)
    assert result.accepted == count, result.rejected


def test_retention__drops_old_partitions_and_minute_rollups__keeps_hour_rollups(
    token: Any,
) -> None:
    now = datetime.now(UTC)
    ingest_at(token, now - timedelta(days=100), 2)  # past every window but the hours'
    ingest_at(token, now - timedelta(days=10), 3)  # past the raw window
    ingest_at(token, now - timedelta(minutes=1), 4)
    report = telemetry_retention_enforce(now=now)

    assert RequestRecord.objects.count() == 4
    assert RecordKey.objects.count() == 4
    assert sum(MinuteRollup.objects.values_list("requests", flat=True)) == 3 + 4
    assert sum(HourRollup.objects.values_list("requests", flat=True)) == 2 + 3 + 4
    if connection.vendor == "postgresql":
        old_days = {(now - timedelta(days=d, seconds=5)).date() for d in (100, 10)}
        assert {partition_name(day) for day in old_days} <= set(report.partitions_dropped)
        remaining = set(partitions_list().values())
        assert not remaining & old_days
        ahead = {now.date() + timedelta(days=n) for n in range(4)}
        assert ahead <= remaining
    assert report.minute_rollups_deleted >= 1

    again = telemetry_retention_enforce(now=now)  # idempotent
    assert again.partitions_dropped == [] and again.minute_rollups_deleted == 0
