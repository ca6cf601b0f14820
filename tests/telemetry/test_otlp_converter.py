"""The OTLP converter (apps/telemetry/otlp.py), fed spans made by the real OpenTelemetry SDK and
encoded by its own OTLP encoder: which spans become records and how the GenAI attributes map."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from google.protobuf import json_format
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Status, StatusCode, Tracer

from apps.telemetry.otlp import (
    JSON,
    PROTOBUF,
    OTLPDecodeError,
    decode_request,
    records_from_request,
)

T0 = 1_780_000_000_000_000_000  # ns


def _export(build: Callable[[Tracer], None], resource: dict[str, Any] | None = None) -> bytes:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create(resource or {}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    build(provider.get_tracer("test"))
    provider.shutdown()
    return encode_spans(exporter.get_finished_spans()).SerializeToString()


def _records(body: bytes) -> list[dict[str, Any]]:
    return [r.record for r in records_from_request(decode_request(body, PROTOBUF))]


def _agent_run(tracer: Tracer) -> None:
    with tracer.start_as_current_span(
        "invoke_agent support-bot",
        start_time=T0,
        attributes={
            "gen_ai.operation.name": "invoke_agent",
            "gen_ai.agent.name": "support-bot",
            "gen_ai.request.model": "gpt-4o",
            "gen_ai.conversation.id": "conv-1",
            "controlplane.bundle.digest": "ab" * 32,
            "controlplane.variant": "candidate",
            "controlplane.cost_usd": "0.01250000",
            "user.hash": "u-hash",
            "user.id": "alice@example.com",
        },
        end_on_exit=False,
    ) as agent:
        for n in range(2):
            with tracer.start_as_current_span(
                "chat gpt-4o",
                start_time=T0 + (1 + n) * 1_000_000,
                attributes={
                    "gen_ai.operation.name": "chat",
                    "gen_ai.request.model": "gpt-4o",
                    "gen_ai.usage.input_tokens": 100 + n,
                    "gen_ai.usage.output_tokens": 20,
                },
            ):
                pass
        with tracer.start_as_current_span(
            "execute_tool search",
            attributes={"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "search"},
        ):
            pass
        with tracer.start_as_current_span(
            "execute_tool refund",
            attributes={"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "refund"},
        ) as tool:
            tool.set_status(Status(StatusCode.ERROR, "refused"))
        agent.end(end_time=T0 + 1_234_400_000)


def test_invoke_agent_span__maps_genai_attributes_and_children() -> None:
    [record] = _records(_export(_agent_run))

    assert record["agent"] == "support-bot"
    assert record["session_id"] == "conv-1"
    assert record["end_user_hash"] == "u-hash"  # user.id is never taken: it is not hashed
    assert record["version_digest"] == "ab" * 32
    assert record["variant"] == "candidate"
    assert record["cost_usd"] == "0.01250000"
    assert record["model"] == "gpt-4o"
    assert record["latency_ms"] == 1234
    assert record["started_at"] == "2026-05-28T20:26:40Z"
    assert record["steps"] == 2
    assert record["tokens_in"] == 201 and record["tokens_out"] == 40
    assert record["tool_calls"] == 2 and record["tool_failures"] == 1
    assert record["outcome"] == "success"
    assert len(record["trace_id"]) == 32 and record["request_id"].startswith(record["trace_id"])
    assert "alice@example.com" not in json.dumps(record)


def test_error_status__is_error_outcome_with_error_type() -> None:
    def build(tracer: Tracer) -> None:
        with tracer.start_as_current_span(
            "invoke_agent",
            attributes={
                "gen_ai.operation.name": "invoke_agent",
                "error.type": "timeout",
                "gen_ai.usage.input_tokens": 7,
                "gen_ai.usage.output_tokens": 3,
                "session.id": "s-1",
                "gen_ai.conversation.id": "conv-ignored",
            },
        ) as span:
            span.set_status(Status(StatusCode.ERROR, "upstream timed out"))

    [record] = _records(_export(build))

    assert record["outcome"] == "error"
    assert record["error_code"] == "timeout"
    assert record["session_id"] == "s-1"  # session.id first
    assert (record["tokens_in"], record["tokens_out"]) == (7, 3)  # the span's own usage wins
    assert record["variant"] == "stable"


def test_our_outcome_attribute__overrides_the_status() -> None:
    def build(tracer: Tracer) -> None:
        with tracer.start_as_current_span(
            "invoke_agent",
            attributes={
                "gen_ai.operation.name": "invoke_agent",
                "controlplane.outcome": "policy_denied",
                "controlplane.error_code": "refund_over_limit",
                "controlplane.cost_usd": 0.1,
                "controlplane.request_id": "req-7",
                "controlplane.feedback.thumbs": False,
                "controlplane.quality_score": 0.75,
            },
        ) as span:
            span.set_status(Status(StatusCode.ERROR))

    [record] = _records(_export(build))

    assert record["outcome"] == "policy_denied"
    assert record["error_code"] == "refund_over_limit"
    assert record["cost_usd"] == "0.1"
    assert record["request_id"] == "req-7"
    assert record["feedback_thumbs"] == "down"
    assert record["quality_score"] == 0.75


def test_agent_and_bundle_from_the_resource() -> None:
    def build(tracer: Tracer) -> None:
        with tracer.start_as_current_span(
            "invoke_agent", attributes={"gen_ai.operation.name": "invoke_agent"}
        ):
            pass

    [record] = _records(
        _export(
            build,
            resource={"controlplane.agent": "billing", "controlplane.bundle.digest": "cd" * 32},
        )
    )

    assert record["agent"] == "billing" and record["version_digest"] == "cd" * 32


def test_nested_agents__only_the_outermost_is_a_record_and_counts_every_tool() -> None:
    def build(tracer: Tracer) -> None:
        # a server span above the agent, a sub-agent below it
        with (
            tracer.start_as_current_span("http POST /chat"),
            tracer.start_as_current_span(
                "invoke_agent outer", attributes={"gen_ai.operation.name": "invoke_agent"}
            ),
            tracer.start_as_current_span(
                "invoke_agent helper", attributes={"gen_ai.operation.name": "invoke_agent"}
            ),
            tracer.start_as_current_span(
                "execute_tool lookup", attributes={"gen_ai.operation.name": "execute_tool"}
            ),
        ):
            pass

    records = _records(_export(build))

    assert len(records) == 1
    assert records[0]["tool_calls"] == 1


def test_trace_without_agent_span__its_root_is_the_record() -> None:
    def build(tracer: Tracer) -> None:
        with (
            tracer.start_as_current_span("handle request"),
            tracer.start_as_current_span(
                "execute_tool lookup", attributes={"gen_ai.operation.name": "execute_tool"}
            ),
        ):
            pass

    [record] = _records(_export(build))

    assert record["tool_calls"] == 1 and record["outcome"] == "success"


def test_json_encoding__same_records_as_protobuf() -> None:
    body = _export(_agent_run)
    message = decode_request(body, PROTOBUF)
    document = json_format.MessageToDict(message)
    # OTLP/JSON writes ids as hex, not protobuf JSON's base64
    for resource_spans in document["resourceSpans"]:
        for scope_spans in resource_spans["scopeSpans"]:
            for span in scope_spans["spans"]:
                for key in ("traceId", "spanId", "parentSpanId"):
                    if key in span:
                        span[key] = json_format.base64.b64decode(span[key]).hex()
    document["unknownField"] = {"ignored": True}
    from_json = records_from_request(decode_request(json.dumps(document).encode(), JSON))

    assert [r.record for r in from_json] == _records(body)
    assert from_json[0].pointer.startswith("/resourceSpans/0/scopeSpans/0/spans/")


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"\xff\xff\xff", PROTOBUF),
        (b"{not json", JSON),
        (b"[1, 2]", JSON),
        (b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "zz"}]}]}]}', JSON),
        (b'{"resourceSpans": 7}', JSON),
    ],
)
def test_malformed_body__raises_decode_error(body: bytes, content_type: str) -> None:
    with pytest.raises(OTLPDecodeError):
        decode_request(body, content_type)


def test_empty_export__no_records() -> None:
    assert records_from_request(decode_request(b"", PROTOBUF)) == []


def test_children_exported_before_their_agent__counted_when_it_arrives() -> None:
    from apps.telemetry.otlp import carry_keys, convert

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    _agent_run(provider.get_tracer("test"))  # 2 chats, 2 tools (1 failed), then the agent
    provider.shutdown()
    spans = exporter.get_finished_spans()
    # exports of the chats (then retried: the exporter did not see the answer), the tools,
    # and the agent span (batch boundaries between them)
    exports = [spans[:2], spans[:2], spans[2:4], spans[4:]]
    kept: dict[str, Any] = {}
    records = []

    for batch in exports:
        request = decode_request(encode_spans(batch).SerializeToString(), PROTOBUF)
        result = convert(request, carried={k: kept[k] for k in carry_keys(request) if k in kept})
        kept.update(result.carry_out)
        for key in result.consumed:
            kept.pop(key)
        records += [r.record for r in result.records]

    [record] = records
    assert (record["steps"], record["tool_calls"], record["tool_failures"]) == (2, 2, 1)
    assert (record["tokens_in"], record["tokens_out"]) == (201, 40)
    assert kept == {}  # nothing left waiting


def test_carried_counts__passed_up_through_an_intermediate_span() -> None:
    from apps.telemetry.otlp import carry_keys, convert

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    with (
        tracer.start_as_current_span(
            "invoke_agent", attributes={"gen_ai.operation.name": "invoke_agent"}
        ),
        tracer.start_as_current_span("plan step"),
        tracer.start_as_current_span(
            "execute_tool search", attributes={"gen_ai.operation.name": "execute_tool"}
        ),
    ):
        pass
    provider.shutdown()
    kept: dict[str, Any] = {}
    records = []

    for span in exporter.get_finished_spans():  # tool, then step, then agent: one per export
        request = decode_request(encode_spans([span]).SerializeToString(), PROTOBUF)
        result = convert(request, carried={k: kept[k] for k in carry_keys(request) if k in kept})
        kept.update(result.carry_out)
        for key in result.consumed:
            kept.pop(key)
        records += [r.record for r in result.records]

    [record] = records
    assert record["tool_calls"] == 1 and kept == {}
