"""How an ingest transaction meets PostgreSQL: the day partition it needs is created in the
same statement round as the keys, and it commits as ``TELEMETRY_SYNCHRONOUS_COMMIT`` says
(decision 0021)."""

from __future__ import annotations

import base64
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection

from apps.telemetry.models import RequestRecord
from apps.telemetry.services import buckets_ingest, partition_name, partitions_list, records_ingest
from apps.telemetry.sketches import sketch_of, sketch_to_bytes

from .conftest import now_utc, record

pytestmark = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="partitions and commit modes are PostgreSQL's"
)


def _commit_mode() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SHOW synchronous_commit")
        return str(cursor.fetchone()[0])


def test_records__day_without_partition__created_and_stored(token: Any) -> None:
    started = now_utc() - timedelta(days=5)
    name = partition_name(started.date())
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE IF EXISTS {name}")
    assert name not in partitions_list()

    result = records_ingest(token=token, records=[record(started_at=started.isoformat())])

    assert result.accepted == 1
    assert name in partitions_list()
    assert RequestRecord.objects.filter(started_at=started).count() == 1


@pytest.mark.parametrize(("synchronous", "expected"), [(False, "off"), (True, "on")])
def test_records__commit_mode__from_the_setting(
    token: Any, settings: Any, synchronous: bool, expected: str
) -> None:
    settings.TELEMETRY_SYNCHRONOUS_COMMIT = synchronous
    # The test's own transaction encloses the ingest's: its commit mode is still in force.
    records_ingest(token=token, records=[record()])
    assert _commit_mode() == expected


def test_buckets__commit_mode__asynchronous_by_default(token: Any) -> None:
    start = now_utc().replace(microsecond=0) - timedelta(minutes=2)
    start = start.replace(second=start.second - start.second % 10)
    bucket = {
        "bucket_start": start.isoformat(),
        "agent": "support-bot",
        "version_digest": "a" * 64,
        "variant": "stable",
        "count_success": 2,
        "latency_sketch": base64.b64encode(sketch_to_bytes(sketch_of([10, 20]))).decode(),
        "latency_sum_ms": 30,
    }
    result = buckets_ingest(token=token, instance_id="rt-1", buckets=[bucket])
    assert result.accepted == 1
    assert _commit_mode() == "off"
