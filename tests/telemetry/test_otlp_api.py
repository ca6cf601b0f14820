"""POST /api/runtime/v1/otlp/v1/traces: the real OpenTelemetry SDK's OTLP/HTTP exporter against
a live server lands the same record as the JSON records API; JSON encoding, gzip, per-span
rejection, malformed and oversized bodies (PostgreSQL in CI)."""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.test import override_settings
from google.protobuf import json_format
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExportResult,
)
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Status, StatusCode, Tracer
from rest_framework.test import APIClient

from apps.accounts.runtime_tokens import runtime_token_create
from apps.telemetry.models import MinuteRollup, RequestRecord
from apps.tenancy.models import Agent, Tenant

from .conftest import ACTOR

URL = "/api/runtime/v1/otlp/v1/traces"
RECORDS_URL = "/api/runtime/v1/records"
FIELDS = [
    "tenant_id",
    "environment_id",
    "agent_id",
    "session_id",
    "end_user_hash",
    "version_digest",
    "variant",
    "started_at",
    "latency_ms",
    "steps",
    "tool_calls",
    "tool_failures",
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
]


def _ns(moment: datetime) -> int:
    return int(moment.timestamp()) * 1_000_000_000 + moment.microsecond * 1000


def _agent_request(tracer: Tracer, start: datetime, *, outcome: str | None = None) -> None:
    """One request of support-bot as an instrumented runtime traces it: an invoke_agent span,
    two chat calls, two tool calls (one failing)."""
    t0 = _ns(start)
    attributes: dict[str, Any] = {
        "gen_ai.operation.name": "invoke_agent",
        "gen_ai.agent.name": "support-bot",
        "gen_ai.request.model": "gpt-4o",
        "session.id": "sess-42",
        "user.hash": "9f2c",
        "controlplane.bundle.digest": "b" * 64,
        "controlplane.variant": "candidate",
        "controlplane.cost_usd": "0.0425",
    }
    if outcome:
        attributes["controlplane.outcome"] = outcome
    agent = tracer.start_span("invoke_agent support-bot", start_time=t0, attributes=attributes)
    from opentelemetry import trace

    with trace.use_span(agent, end_on_exit=False):
        for n in range(2):
            chat = tracer.start_span(
                "chat gpt-4o",
                start_time=t0 + (n + 1) * 10_000_000,
                attributes={
                    "gen_ai.operation.name": "chat",
                    "gen_ai.usage.input_tokens": 300,
                    "gen_ai.usage.output_tokens": 40,
                },
            )
            chat.end(end_time=t0 + (n + 1) * 10_000_000 + 5_000_000)
        for name, ok in (("search", True), ("refund", False)):
            tool = tracer.start_span(
                f"execute_tool {name}",
                start_time=t0 + 50_000_000,
                attributes={"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": name},
            )
            if not ok:
                tool.set_status(Status(StatusCode.ERROR, "refused"))
            tool.end(end_time=t0 + 60_000_000)
    agent.end(end_time=t0 + 1_850_000_000)


def _stored(record: RequestRecord) -> dict[str, Any]:
    return {name: getattr(record, name) for name in FIELDS}


@pytest.mark.slow
@pytest.mark.parametrize("processor", [BatchSpanProcessor, SimpleSpanProcessor])
def test_real_sdk_exporter__same_record_as_the_json_path(
    asgi_server: str, tenant: Tenant, agent: Agent, processor: Any
) -> None:
    import requests

    _, raw = runtime_token_create(
        actor=ACTOR,
        tenant=tenant,
        environment=tenant.environments.get(slug="production"),
        name="otel fleet",
    )
    start = (datetime.now(UTC) - timedelta(minutes=2)).replace(microsecond=250_000)
    exporter = OTLPSpanExporter(
        endpoint=f"{asgi_server}{URL}", headers={"Authorization": f"Bearer {raw}"}, timeout=20
    )
    provider = TracerProvider(resource=Resource.create({"service.name": "support-bot"}))
    # The batch processor exports a request's spans together; the simple one each span as it
    # ends, children first, so the agent span arrives alone and its children's counts wait
    # for it on the server.
    provider.add_span_processor(processor(exporter))

    _agent_request(provider.get_tracer("runtime"), start)
    provider.shutdown()

    otlp = RequestRecord.objects.get()
    # The same request, reported by a runtime through the JSON records API:
    response = requests.post(
        f"{asgi_server}{RECORDS_URL}",
        headers={"Authorization": f"Bearer {raw}"},
        json={
            "records": [
                {
                    "request_id": "json-path-1",
                    "agent": "support-bot",
                    "session_id": "sess-42",
                    "end_user_hash": "9f2c",
                    "version_digest": "b" * 64,
                    "variant": "candidate",
                    "started_at": start.isoformat(),
                    "latency_ms": 1850,
                    "steps": 2,
                    "tool_calls": 2,
                    "tool_failures": 1,
                    "tokens_in": 600,
                    "tokens_out": 80,
                    "cost_usd": "0.0425",
                    "model": "gpt-4o",
                    "outcome": "success",
                    "trace_id": otlp.trace_id,
                }
            ]
        },
        timeout=20,
    )
    assert response.status_code == 200, response.text
    json_path = RequestRecord.objects.get(request_id="json-path-1")

    assert _stored(otlp) == _stored(json_path)
    assert otlp.request_id == f"{otlp.trace_id}-{otlp.request_id.split('-')[1]}"
    assert MinuteRollup.objects.get().requests == 2


def test_real_sdk_exporter__export_result_success(
    asgi_server: str, tenant: Tenant, agent: Agent
) -> None:
    _, raw = runtime_token_create(
        actor=ACTOR,
        tenant=tenant,
        environment=tenant.environments.get(slug="staging"),
        name="otel",
    )
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    _agent_request(provider.get_tracer("runtime"), datetime.now(UTC) - timedelta(seconds=5))
    provider.shutdown()
    exporter = OTLPSpanExporter(
        endpoint=f"{asgi_server}{URL}", headers={"Authorization": raw}, timeout=20
    )

    result = exporter.export(memory.get_finished_spans())
    again = exporter.export(memory.get_finished_spans())  # a retried export: a duplicate

    assert result is SpanExportResult.SUCCESS and again is SpanExportResult.SUCCESS
    assert RequestRecord.objects.filter(environment__slug="staging").count() == 1


# --------------------------------------------------------------------------- Django client


def _spans_protobuf(start: datetime, **kwargs: Any) -> bytes:
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    _agent_request(provider.get_tracer("runtime"), start, **kwargs)
    provider.shutdown()
    return encode_spans(memory.get_finished_spans()).SerializeToString()


def _as_otlp_json(body: bytes) -> dict[str, Any]:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    message = ExportTraceServiceRequest()
    message.ParseFromString(body)
    document = json_format.MessageToDict(message)
    for resource_spans in document["resourceSpans"]:
        for scope_spans in resource_spans["scopeSpans"]:
            for span in scope_spans["spans"]:
                for key in ("traceId", "spanId", "parentSpanId"):
                    if key in span:
                        span[key] = json_format.base64.b64decode(span[key]).hex()
    return document


@pytest.fixture
def client(token_and_raw) -> APIClient:  # type: ignore[no-untyped-def]
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token_and_raw[1]}")
    return client


def _recent() -> datetime:
    return datetime.now(UTC) - timedelta(seconds=30)


def test_otlp_json__stored_like_protobuf(client: APIClient) -> None:
    body = _spans_protobuf(_recent())

    response = client.post(
        URL, data=json.dumps(_as_otlp_json(body)), content_type="application/json"
    )

    assert response.status_code == 200, response.content
    assert response.json() == {"accepted": 1, "duplicates": 0, "rejected": []}
    stored = RequestRecord.objects.get()
    assert (stored.tool_calls, stored.tool_failures, stored.tokens_in) == (2, 1, 600)
    assert stored.variant == "candidate" and stored.session_id == "sess-42"


def test_otlp_protobuf_gzip__accepted_and_a_retry_is_a_duplicate(client: APIClient) -> None:
    body = gzip.compress(_spans_protobuf(_recent()))

    first = client.post(
        URL, data=body, content_type="application/x-protobuf", HTTP_CONTENT_ENCODING="gzip"
    )
    second = client.post(
        URL, data=body, content_type="application/x-protobuf", HTTP_CONTENT_ENCODING="gzip"
    )

    assert first.json() == {"accepted": 1, "duplicates": 0, "rejected": []}
    assert second.json() == {"accepted": 0, "duplicates": 1, "rejected": []}
    assert RequestRecord.objects.count() == 1


def test_otlp_bad_outcome__refused_by_span_pointer(client: APIClient) -> None:
    body = _spans_protobuf(_recent(), outcome="exploded")

    response = client.post(URL, data=body, content_type="application/x-protobuf")

    assert response.status_code == 207
    payload = response.json()
    [rejected] = payload["rejected"]
    assert rejected["pointer"].startswith("/resourceSpans/0/scopeSpans/0/spans/")
    assert all(k.startswith(rejected["pointer"] + "/") for k in rejected["errors"])
    assert payload["partialSuccess"]["rejectedSpans"] == "1"
    assert RequestRecord.objects.count() == 0


def test_otlp_span_too_old__refused(client: APIClient) -> None:
    body = _spans_protobuf(datetime.now(UTC) - timedelta(days=30))

    response = client.post(URL, data=body, content_type="application/x-protobuf")

    assert response.status_code == 207 and response.json()["accepted"] == 0
    assert RequestRecord.objects.count() == 0


def test_agent_scoped_token__fills_the_agent(tenant: Tenant, agent: Agent) -> None:
    _, raw = runtime_token_create(
        actor=ACTOR,
        tenant=tenant,
        environment=tenant.environments.get(slug="production"),
        agent=agent,
        name="one agent",
    )
    document = {
        "resourceSpans": [
            {
                "scopeSpans": [
                    {
                        "spans": [
                            {
                                "traceId": "4bf92f3577b34da6a3ce929d0e0e4736",
                                "spanId": "00f067aa0ba902b7",
                                "name": "invoke_agent",
                                "startTimeUnixNano": str(_ns(_recent())),
                                "endTimeUnixNano": str(_ns(_recent()) + 5_000_000),
                                "attributes": [
                                    {
                                        "key": "gen_ai.operation.name",
                                        "value": {"stringValue": "invoke_agent"},
                                    }
                                ],
                                "status": {"code": 2, "message": "boom"},
                            }
                        ]
                    }
                ]
            }
        ]
    }
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=raw)

    response = client.post(URL, data=json.dumps(document), content_type="application/json")

    assert response.json()["accepted"] == 1
    stored = RequestRecord.objects.get()
    assert stored.agent_id == agent.pk and stored.outcome == "error"
    assert stored.error_code == "boom" and stored.latency_ms == 5
    assert stored.trace_id == "4bf92f3577b34da6a3ce929d0e0e4736"


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        (b"\xff\xff\xff\xff", "application/x-protobuf", 400),
        (b"{not json", "application/json", 400),
        (b'{"resourceSpans": "no"}', "application/json", 400),
        (b"<xml/>", "application/xml", 415),
    ],
)
def test_malformed_body__json_error_nothing_stored(
    client: APIClient, body: bytes, content_type: str, status: int
) -> None:
    response = client.post(URL, data=body, content_type=content_type)

    assert response.status_code == status
    assert response["Content-Type"].startswith("application/json")
    assert "detail" in response.json()
    assert RequestRecord.objects.count() == 0


def test_broken_gzip__400(client: APIClient) -> None:
    response = client.post(
        URL,
        data=b"\x1f\x8bnot gzip",
        content_type="application/x-protobuf",
        HTTP_CONTENT_ENCODING="gzip",
    )

    assert response.status_code == 400


@override_settings(API_MAX_BODY_BYTES=2_000)
def test_oversize__413(client: APIClient) -> None:
    big = _spans_protobuf(_recent()) * 10
    bomb = gzip.compress(b"\x00" * 100_000)

    plain = client.post(URL, data=big, content_type="application/x-protobuf")
    inflated = client.post(
        URL, data=bomb, content_type="application/x-protobuf", HTTP_CONTENT_ENCODING="gzip"
    )

    assert plain.status_code == 413 and inflated.status_code == 413
    assert RequestRecord.objects.count() == 0


def test_without_token__401(tenant: Tenant) -> None:
    response = APIClient().post(
        URL, data=_spans_protobuf(_recent()), content_type="application/x-protobuf"
    )

    assert response.status_code == 401
