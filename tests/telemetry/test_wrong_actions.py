"""Wrong actions as a reported fact: a record's ``wrong_actions`` (the actions the runtime later
judged wrong, e.g. a refund not owed), a bucket's sum of them and the OTLP attribute
``controlplane.wrong_actions`` are stored and summed into the minute and hour rollups, which
the canary analysis reads."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from apps.telemetry.models import HourRollup, MinuteRollup, RequestRecord
from apps.telemetry.otlp import PROTOBUF, decode_request, records_from_request
from dataplane.usage import BucketAggregator, UsageRecord

from .conftest import record
from .test_api import bucket, post

pytestmark = pytest.mark.django_db


@pytest.fixture
def client(token_and_raw: Any) -> Iterator[Any]:
    from .test_api import client_for

    yield client_for(token_and_raw[1])


def test_records__wrong_actions__stored_and_summed_into_rollups(client: Any) -> None:
    minute = datetime.now(UTC).replace(second=5, microsecond=0) - timedelta(minutes=2)
    at = minute.isoformat()
    body = {
        "records": [
            record(started_at=at, wrong_actions=2),
            record(started_at=at, wrong_actions=1),
            record(started_at=at),  # absent: none
        ]
    }
    assert post(client, body).json() == {"accepted": 3, "duplicates": 0, "rejected": []}
    assert sorted(RequestRecord.objects.values_list("wrong_actions", flat=True)) == [0, 1, 2]
    assert MinuteRollup.objects.get().wrong_actions == 3
    assert HourRollup.objects.get().wrong_actions == 3


@pytest.mark.parametrize("value", [-1, "two", 1.5, True])
def test_records__bad_wrong_actions__refused_by_pointer(client: Any, value: Any) -> None:
    response = post(client, {"records": [record(wrong_actions=value)]})
    assert response.status_code == 207
    [rejected] = response.json()["rejected"]
    assert list(rejected["errors"]) == ["/records/0/wrong_actions"]
    assert not RequestRecord.objects.exists()


def test_buckets__wrong_actions__summed_into_rollups(client: Any) -> None:
    first = bucket(wrong_actions=4)
    body = {"instance_id": "rt-1", "buckets": [first]}
    assert post(client, body).json()["accepted"] == 1
    # absent: none; at the first one's start (a start of its own may be the next minute's)
    body = {"instance_id": "rt-2", "buckets": [bucket(bucket_start=first["bucket_start"])]}
    assert post(client, body).json()["accepted"] == 1
    assert MinuteRollup.objects.get().wrong_actions == 4
    assert HourRollup.objects.get().wrong_actions == 4


def test_buckets__negative_wrong_actions__refused(client: Any) -> None:
    body = {"instance_id": "rt-1", "buckets": [bucket(wrong_actions=-3)]}
    response = post(client, body)
    assert response.status_code == 207
    assert "/buckets/0/wrong_actions" in response.json()["rejected"][0]["errors"]


def test_usage_record_and_bucket__carry_wrong_actions() -> None:
    started = datetime(2026, 12, 5, 10, 0, 3, tzinfo=UTC)
    items = [
        UsageRecord(
            request_id=f"r{i}",
            agent="support-bot",
            started_at=started,
            latency_ms=50,
            wrong_actions=i,
        )
        for i in range(3)
    ]
    assert items[2].as_json()["wrong_actions"] == 2
    aggregator = BucketAggregator()
    for item in items:
        aggregator.add(item)
    [sent] = aggregator.drain(everything=True)
    assert sent["wrong_actions"] == 3


def _otlp(attributes: dict[str, Any]) -> list[dict[str, Any]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span(
        "invoke_agent support-bot",
        attributes={
            "gen_ai.operation.name": "invoke_agent",
            "gen_ai.agent.name": "support-bot",
            **attributes,
        },
    ):
        pass
    provider.shutdown()
    body = encode_spans(exporter.get_finished_spans()).SerializeToString()
    return [r.record for r in records_from_request(decode_request(body, PROTOBUF))]


def test_otlp__wrong_actions_attribute__becomes_the_record_field() -> None:
    [with_it] = _otlp({"controlplane.wrong_actions": 2})
    assert with_it["wrong_actions"] == 2
    [without] = _otlp({})
    assert "wrong_actions" not in without  # absent: the records API counts none
