from __future__ import annotations

from apps.telemetry.models import MinuteRollup, RequestRecord
from apps.telemetry.services import records_ingest

from .conftest import record


def test_records_ingest__one_record__stored_and_rolled_up(token) -> None:  # type: ignore[no-untyped-def]
    result = records_ingest(token=token, records=[record(), record(outcome="error")])
    assert (result.accepted, result.duplicates, result.rejected) == (2, 0, [])
    assert RequestRecord.objects.count() == 2
    rollup = MinuteRollup.objects.get()
    assert (rollup.requests, rollup.count_success, rollup.count_error) == (2, 1, 1)
