"""POST /api/runtime/v1/records: idempotency, per-item rejection by JSON pointer, scope from
the token, batch limits, malformed bodies (PostgreSQL in CI)."""

from __future__ import annotations

import base64
import json
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from rest_framework.test import APIClient

from apps.accounts.runtime_tokens import runtime_token_create
from apps.telemetry.models import BucketReceipt, HourRollup, MinuteRollup, RequestRecord
from apps.telemetry.sketches import sketch_of, sketch_to_bytes
from apps.tenancy.models import Tenant
from tests.factories import AgentFactory

from .conftest import ACTOR, now_utc, record

URL = "/api/runtime/v1/records"


def client_for(raw: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return client


def post(client: APIClient, body: Any) -> Any:
    return client.post(URL, data=json.dumps(body), content_type="application/json")


@pytest.fixture
def client(token_and_raw) -> APIClient:  # type: ignore[no-untyped-def]
    return client_for(token_and_raw[1])


def test_records__same_batch_twice__counted_once(client: APIClient) -> None:
    batch = {"records": [record(), record(outcome="error"), record(latency_ms=900)]}
    first = post(client, batch)
    second = post(client, batch)
    assert first.status_code == 200, first.json()
    assert first.json() == {"accepted": 3, "duplicates": 0, "rejected": []}
    assert second.json() == {"accepted": 0, "duplicates": 3, "rejected": []}
    assert RequestRecord.objects.count() == 3
    assert sum(MinuteRollup.objects.values_list("requests", flat=True)) == 3
    assert sum(HourRollup.objects.values_list("requests", flat=True)) == 3


def test_records__text_with_backslashes_and_unicode__stored_as_sent(client: APIClient) -> None:
    sent = record(model="m\\odel\\N", error_code="é\\t", session_id="s\\", quality_score=0.25)
    assert post(client, {"records": [sent]}).json()["accepted"] == 1
    stored = RequestRecord.objects.get()
    assert (stored.model, stored.error_code, stored.session_id) == (
        "m\\odel\\N",
        "é\\t",
        "s\\",
    )
    assert stored.quality_score == 0.25
    assert stored.cost_usd == Decimal("0.0125")
    assert stored.feedback_thumbs is None


def test_records__same_request_twice_in_one_batch__stored_once(client: APIClient) -> None:
    one = record()
    response = post(client, {"records": [one, one]})
    assert response.json() == {"accepted": 1, "duplicates": 1, "rejected": []}
    assert MinuteRollup.objects.get().requests == 1


def test_records__invalid_items__refused_by_pointer_and_valid_kept(
    client: APIClient, other_tenant: Tenant
) -> None:
    now = now_utc()
    items = [
        record(),
        record(cost_usd="-0.5"),
        record(variant="blue"),
        record(outcome="fine"),
        record(latency_ms="fast"),
        record(started_at=(now + timedelta(minutes=10)).isoformat()),
        record(started_at=(now - timedelta(days=8)).isoformat()),
        record(agent="secret-agent"),  # another tenant's agent
        record(started_at="yesterday"),
        "not an object",
        record(),
        record(model="\ud800"),  # a lone surrogate: no UTF-8 text holds it
        record(started_at="9999-12-31T23:59:59-23:59"),
        record(steps="BIG"),  # sent as the JSON number 1e999999
    ]
    raw = json.dumps({"records": items}).replace('"BIG"', "1e999999")
    response = client.post(URL, data=raw, content_type="application/json")
    assert response.status_code == 207
    body = response.json()
    assert (body["accepted"], body["duplicates"]) == (2, 0)
    rejected = {entry["pointer"]: entry["errors"] for entry in body["rejected"]}
    assert set(rejected) == {f"/records/{i}" for i in [*range(1, 10), 11, 12, 13]}
    assert list(rejected["/records/1"]) == ["/records/1/cost_usd"]
    assert "negative" in rejected["/records/1"]["/records/1/cost_usd"][0]
    assert list(rejected["/records/2"]) == ["/records/2/variant"]
    assert list(rejected["/records/3"]) == ["/records/3/outcome"]
    assert list(rejected["/records/4"]) == ["/records/4/latency_ms"]
    assert "300 seconds in the future" in rejected["/records/5"]["/records/5/started_at"][0]
    assert "7-day window" in rejected["/records/6"]["/records/6/started_at"][0]
    assert "Unknown agent 'secret-agent'" in rejected["/records/7"]["/records/7/agent"][0]
    assert list(rejected["/records/8"]) == ["/records/8/started_at"]
    assert list(rejected["/records/9"]) == ["/records/9"]
    assert list(rejected["/records/11"]) == ["/records/11/model"]
    assert list(rejected["/records/12"]) == ["/records/12/started_at"]
    assert list(rejected["/records/13"]) == ["/records/13/steps"]
    assert RequestRecord.objects.count() == 2
    assert MinuteRollup.objects.get().requests == 2


def test_records__tenant_and_environment__from_the_token_never_the_body(
    client: APIClient, tenant: Tenant, token
) -> None:  # type: ignore[no-untyped-def]
    response = post(
        client,
        {"records": [record(environment="staging"), record(tenant="globex"), record()]},
    )
    body = response.json()
    assert response.status_code == 207
    assert [list(r["errors"]) for r in body["rejected"]] == [
        ["/records/0/environment"],
        ["/records/1/tenant"],
    ]
    stored = RequestRecord.objects.get()
    assert (stored.tenant_id, stored.environment_id) == (token.tenant_id, token.environment_id)
    assert stored.environment.slug == "production"


def test_records__agent_scoped_token__refuses_other_agents(tenant: Tenant, agent) -> None:  # type: ignore[no-untyped-def]
    AgentFactory(tenant=tenant, slug="billing-bot", name="Billing bot")
    _, raw = runtime_token_create(
        actor=ACTOR,
        tenant=tenant,
        environment=tenant.environments.get(slug="staging"),
        agent=agent,
        name="one agent",
    )
    response = post(client_for(raw), {"records": [record(agent="billing-bot"), record()]})
    body = response.json()
    assert body["accepted"] == 1
    assert "agent support-bot" in body["rejected"][0]["errors"]["/records/0/agent"][0]
    assert RequestRecord.objects.get().environment.slug == "staging"


def test_records__same_request_id_other_tenant__both_stored(
    client: APIClient, other_tenant: Tenant
) -> None:
    _, raw = runtime_token_create(
        actor=ACTOR,
        tenant=other_tenant,
        environment=other_tenant.environments.get(),
        name="globex fleet",
    )
    shared = record(request_id="req-1")
    assert post(client, {"records": [shared]}).json()["accepted"] == 1
    theirs = dict(shared, agent="secret-agent")
    assert post(client_for(raw), {"records": [theirs]}).json()["accepted"] == 1
    assert RequestRecord.objects.count() == 2


def test_records__more_than_1000__413(client: APIClient) -> None:
    response = post(client, {"records": [record() for _ in range(1001)]})
    assert response.status_code == 413
    assert "At most 1000 records" in response.json()["detail"]
    assert RequestRecord.objects.count() == 0


@pytest.mark.parametrize(
    "raw",
    [b"{not json", b'{"records": [1, 2', b"NaN", b'{"records": [{"latency_ms": NaN}]}'],
)
def test_records__malformed_json__400(client: APIClient, raw: bytes) -> None:
    response = client.post(URL, data=raw, content_type="application/json")
    assert response.status_code == 400
    assert response.json()["detail"].startswith("Malformed JSON")


@pytest.mark.parametrize(
    "body",
    [[], {"records": "x"}, {"other": []}, {"buckets": [{}]}],
)
def test_records__wrong_shape__400(client: APIClient, body: Any) -> None:
    response = post(client, body)
    assert response.status_code == 400
    assert response.json()["errors"]


def test_records__without_token__401(api: APIClient) -> None:
    assert post(api, {"records": [record()]}).status_code == 401


def bucket(**fields: Any) -> dict[str, Any]:
    latencies = [100, 120, 130, 900]
    start = now_utc().replace(microsecond=0) - timedelta(seconds=60)
    start = start.replace(second=start.second - start.second % 10)
    data: dict[str, Any] = {
        "bucket_start": start.isoformat(),
        "agent": "support-bot",
        "version_digest": "b" * 64,
        "variant": "candidate",
        "count_success": 3,
        "count_error": 1,
        "latency_sketch": base64.b64encode(sketch_to_bytes(sketch_of(latencies))).decode(),
        "latency_sum_ms": sum(latencies),
        "tokens_in": 4000,
        "tokens_out": 300,
        "cost_usd": "0.04",
        "tool_calls": 5,
        "tool_failures": 1,
    }
    data.update(fields)
    return data


def test_buckets__merged_into_rollups__idempotent_per_instance(client: APIClient) -> None:
    one = bucket()
    body = {"instance_id": "rt-1", "buckets": [one]}
    assert post(client, body).json() == {"accepted": 1, "duplicates": 0, "rejected": []}
    assert post(client, body).json() == {"accepted": 0, "duplicates": 1, "rejected": []}
    assert post(client, {"instance_id": "rt-2", "buckets": [one]}).json()["accepted"] == 1
    rollup = MinuteRollup.objects.get()
    assert (rollup.requests, rollup.count_success, rollup.count_error) == (8, 6, 2)
    assert rollup.tokens_in == 8000
    assert HourRollup.objects.get().requests == 8
    assert BucketReceipt.objects.count() == 2
    assert RequestRecord.objects.count() == 0


def test_buckets__bad_items__refused_by_pointer(client: APIClient) -> None:
    items = [
        bucket(latency_sketch="@@@"),
        bucket(latency_sketch=base64.b64encode(b"\x01\x02garbage").decode()),
        bucket(count_success=10),  # the sketch counts 4
        bucket(bucket_start=(now_utc().replace(microsecond=0, second=3)).isoformat()),
        bucket(count_success=-1),
        bucket(),
    ]
    response = post(client, {"instance_id": "rt-1", "buckets": items})
    body = response.json()
    assert response.status_code == 207
    assert body["accepted"] == 1
    pointers = {e["pointer"]: list(e["errors"]) for e in body["rejected"]}
    assert pointers["/buckets/0"] == ["/buckets/0/latency_sketch"]
    assert pointers["/buckets/1"] == ["/buckets/1/latency_sketch"]
    assert pointers["/buckets/2"] == ["/buckets/2/latency_sketch"]
    assert "/buckets/3/bucket_start" in pointers["/buckets/3"]
    assert "/buckets/4/count_success" in pointers["/buckets/4"]
