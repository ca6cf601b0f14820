"""Two clients racing the same batch: stored and counted once (PostgreSQL)."""

from __future__ import annotations

import pytest

from apps.telemetry.models import HourRollup, MinuteRollup, RecordKey, RequestRecord
from apps.telemetry.services import buckets_ingest, records_ingest
from tests.races import postgresql_only, race

from .conftest import record
from .test_api import bucket

pytestmark = pytest.mark.django_db(transaction=True)


def test_records_ingest__two_clients_race_the_same_batch__counted_once(token) -> None:  # type: ignore[no-untyped-def]
    postgresql_only()
    batch = [record(outcome="error" if i % 5 == 0 else "success") for i in range(200)]
    results, errors = race(
        lambda: records_ingest(token=token, records=batch),
        lambda: records_ingest(token=token, records=list(reversed(batch))),
    )
    assert errors == []
    assert len(results) == 2
    assert sorted(r.accepted for r in results) == [0, 200]
    assert sorted(r.duplicates for r in results) == [0, 200]
    assert RequestRecord.objects.count() == RecordKey.objects.count() == 200
    assert sum(MinuteRollup.objects.values_list("requests", flat=True)) == 200
    assert sum(HourRollup.objects.values_list("count_error", flat=True)) == 40


def test_records_ingest__overlapping_batches_race__each_record_once(token) -> None:  # type: ignore[no-untyped-def]
    postgresql_only()
    shared = [record() for _ in range(100)]
    first = shared + [record() for _ in range(50)]
    second = [record() for _ in range(50)] + shared
    results, errors = race(
        lambda: records_ingest(token=token, records=first),
        lambda: records_ingest(token=token, records=second),
    )
    assert errors == [] and len(results) == 2
    assert sum(r.accepted for r in results) == 200
    assert sum(MinuteRollup.objects.values_list("requests", flat=True)) == 200


def test_buckets_ingest__same_bucket_races__merged_once(token) -> None:  # type: ignore[no-untyped-def]
    postgresql_only()
    items = [bucket()]
    results, errors = race(
        lambda: buckets_ingest(token=token, instance_id="rt-1", buckets=items),
        lambda: buckets_ingest(token=token, instance_id="rt-1", buckets=items),
    )
    assert errors == [] and len(results) == 2
    assert sorted(r.accepted for r in results) == [0, 1]
    assert MinuteRollup.objects.get().requests == 4
