"""OTLP/HTTP traces in: decode an ``ExportTraceServiceRequest`` (protobuf or the OTLP JSON
encoding) and turn each agent invocation into a request record in the records API's shape.

Pure functions, no database: the view decodes, :func:`records_from_request` converts, and the
ingestion service validates and stores what comes out exactly as it does for
``POST /api/runtime/v1/records`` — so one request reported either way is one identical row.

Which spans become records (OpenTelemetry GenAI semantic conventions):

- a span with ``gen_ai.operation.name = invoke_agent`` that has no ``invoke_agent`` ancestor
  in the same export (a sub-agent call is a part of its caller's request, not a request);
- in a trace of the export with no ``invoke_agent`` span at all, its root span (no parent).

What a record is made of (first source that is present wins):

============== ==================================================================================
field          source
============== ==================================================================================
request_id     ``controlplane.request_id``; else ``<trace id hex>-<span id hex>`` (stable, so a
               re-sent export is a duplicate, not a second request)
agent          ``controlplane.agent``, ``gen_ai.agent.name`` (span), then the resource's
               ``controlplane.agent``; absent → the token's agent (if it is scoped to one)
session_id     ``session.id``, ``gen_ai.conversation.id``
end_user_hash  ``controlplane.end_user_hash``, ``user.hash`` (never ``user.id``: not hashed)
version_digest ``controlplane.bundle.digest`` (span, then resource)
variant        ``controlplane.variant`` (span, then resource); absent → ``stable``
started_at     span start (RFC 3339, UTC)
latency_ms     span end - start, in milliseconds (integer, rounded)
steps          ``controlplane.steps``; else the number of inference spans below
               (``chat``, ``text_completion``, ``generate_content``)
tool_calls     ``controlplane.tool_calls``; else the ``execute_tool`` spans below
tool_failures  ``controlplane.tool_failures``; else those with status ERROR or ``error.type``
wrong_actions  ``controlplane.wrong_actions`` (actions the runtime judged wrong); absent → 0
tokens_in/out  ``gen_ai.usage.input_tokens`` / ``output_tokens``; else the sums over the
               inference spans below
cost_usd       ``controlplane.cost_usd`` (string or number; a decimal string keeps every digit)
model          ``gen_ai.request.model``, ``gen_ai.response.model``, else the first inference
               span's
outcome        ``controlplane.outcome``; else ERROR status → ``error``, anything else → success
error_code     ``controlplane.error_code``, ``error.type``; with ERROR status and neither, the
               status message (first 200 characters)
trace_id       the span's trace id, 32 lowercase hex digits
feedback_*     ``controlplane.feedback.thumbs`` (``up``/``down`` or a bool),
               ``controlplane.feedback.score``, ``controlplane.quality_score``
============== ==================================================================================

Child spans exported before their agent span are counted when it arrives (:func:`convert`,
with what the caller kept from earlier exports).

The values are passed on as found; the ingestion service judges them (an unknown variant or a
negative cost is refused item by item, with the span's position as the pointer).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

PREFIX = "controlplane."
INVOKE_AGENT = "invoke_agent"
EXECUTE_TOOL = "execute_tool"
INFERENCE_OPERATIONS = frozenset({"chat", "text_completion", "generate_content"})
PROTOBUF = "application/x-protobuf"
JSON = "application/json"
# OTLP/JSON writes these ids as hex, where protobuf's JSON mapping expects base64.
_HEX_ID_KEYS = frozenset({"traceId", "spanId", "parentSpanId", "trace_id", "span_id"})
_HEX_ID_PARENTS = frozenset({"spans", "links"})
_ERROR_MESSAGE_LIMIT = 200


class OTLPDecodeError(ValueError):
    """The body is not an ``ExportTraceServiceRequest`` in the declared encoding; the message
    says why (for the 400's ``detail``)."""


@dataclass(frozen=True)
class SpanRecord:
    """One record made from one span: ``pointer`` locates the span in the request (JSON
    pointer over the OTLP JSON field names), ``record`` is the records API's item."""

    pointer: str
    record: dict[str, Any]


def decode_request(body: bytes, content_type: str) -> ExportTraceServiceRequest:
    """Parse an OTLP/HTTP trace export. ``content_type``: the request's media type without
    parameters (``application/x-protobuf`` or ``application/json``).

    Raises :class:`OTLPDecodeError` for a body that does not parse, and ``ValueError`` naming
    the supported types for any other media type."""
    message = ExportTraceServiceRequest()
    if content_type == PROTOBUF:
        try:
            message.ParseFromString(body)
        except (DecodeError, RecursionError) as exc:
            raise OTLPDecodeError(
                f"The body is not a protobuf ExportTraceServiceRequest: {exc}"
            ) from None
        return message
    if content_type == JSON:
        try:
            document = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
            raise OTLPDecodeError(f"The body is not JSON: {exc}") from None
        if not isinstance(document, dict):
            raise OTLPDecodeError("An OTLP/JSON export is an object with resourceSpans.")
        try:
            # Receivers must ignore fields they do not know (OTLP specification, JSON encoding).
            json_format.ParseDict(_hex_ids_to_base64(document), message, ignore_unknown_fields=True)
        except (json_format.ParseError, RecursionError, TypeError, ValueError) as exc:
            raise OTLPDecodeError(f"The body is not an OTLP/JSON trace export: {exc}") from None
        return message
    raise ValueError(f"Send {PROTOBUF} or {JSON}.")


def _hex_ids_to_base64(node: Any, parent_key: str = "") -> Any:
    """A copy of the OTLP/JSON document with span/trace ids re-encoded as base64, the form
    protobuf's JSON parser reads ``bytes`` in. An id that is not hex raises ParseError."""
    if isinstance(node, list):
        return [_hex_ids_to_base64(item, parent_key) for item in node]
    if not isinstance(node, dict):
        return node
    converted: dict[str, Any] = {}
    for key, value in node.items():
        if parent_key in _HEX_ID_PARENTS and key in _HEX_ID_KEYS and isinstance(value, str):
            try:
                raw = bytes.fromhex(value)
            except ValueError:
                raise json_format.ParseError(f"{key} {value[:40]!r} is not hex.") from None
            converted[key] = base64.b64encode(raw).decode("ascii")
        else:
            converted[key] = _hex_ids_to_base64(value, key)
    return converted


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return _attributes(value.kvlist_value.values)
    if kind == "bytes_value":
        return binascii.hexlify(value.bytes_value).decode("ascii")
    return getattr(value, kind)


def _attributes(pairs: Iterable[KeyValue]) -> dict[str, Any]:
    return {pair.key: _value(pair.value) for pair in pairs}


def _rfc3339(unix_nano: int) -> str:
    seconds, nanos = divmod(unix_nano, 1_000_000_000)
    moment = datetime.fromtimestamp(seconds, tz=UTC).replace(microsecond=nanos // 1000)
    return moment.isoformat().replace("+00:00", "Z")


def _first(*candidates: Any) -> Any:
    for candidate in candidates:
        if candidate is not None and candidate != "":
            return candidate
    return None


def _is_failed(span: Span, attributes: dict[str, Any]) -> bool:
    return span.status.code == Status.STATUS_CODE_ERROR or bool(attributes.get("error.type"))


def _cost(value: Any) -> Any:
    # A double attribute becomes its shortest repr ("0.1", not 0.1000000000000000055…), the
    # digits the runtime meant; a string passes unchanged for the ingestion to judge.
    if value is None:
        return "0"
    if isinstance(value, float):
        return repr(value)
    return value


def _thumbs(value: Any) -> Any:
    if isinstance(value, bool):
        return "up" if value else "down"
    return value


@dataclass
class _Node:
    span: Span
    attributes: dict[str, Any]
    resource: dict[str, Any]
    pointer: str

    @property
    def operation(self) -> Any:
        return self.attributes.get("gen_ai.operation.name")


def _nodes(request: ExportTraceServiceRequest) -> Iterator[_Node]:
    for r, resource_spans in enumerate(request.resource_spans):
        resource = _attributes(resource_spans.resource.attributes)
        for s, scope_spans in enumerate(resource_spans.scope_spans):
            for i, span in enumerate(scope_spans.spans):
                yield _Node(
                    span=span,
                    attributes=_attributes(span.attributes),
                    resource=resource,
                    pointer=f"/resourceSpans/{r}/scopeSpans/{s}/spans/{i}",
                )


# Child spans kept for one waiting span at most: a bound on what a hostile export can park.
MAX_CARRIED_SPANS = 10_000


@dataclass
class ChildCounts:
    """The GenAI child spans of an invocation, by span id: inference spans (``steps``, token
    usage, a ``model``) and ``execute_tool`` spans (failed or not). Kept per span, not as
    sums, so a span counted twice — a retried export, or a child kept from an earlier export
    and sent again — counts once; so counts of children exported before their agent span can
    wait (``as_dict``) and be added when it arrives (see :func:`convert`)."""

    spans: dict[str, list[Any]] = field(default_factory=dict)

    def add_span(self, node: _Node) -> None:
        span_id = node.span.span_id.hex()
        if node.operation == EXECUTE_TOOL:
            failed = _is_failed(node.span, node.attributes)
            self.spans.setdefault(span_id, ["tool", failed, 0, 0, ""])
        elif node.operation in INFERENCE_OPERATIONS:
            usage = []
            for key in ("gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens"):
                value = node.attributes.get(key)
                ok = isinstance(value, int) and not isinstance(value, bool) and value >= 0
                usage.append(value if ok else 0)
            model = node.attributes.get("gen_ai.request.model")
            entry = ["step", False, *usage, model[:120] if isinstance(model, str) else ""]
            self.spans.setdefault(span_id, entry)

    def add(self, other: ChildCounts) -> None:
        for span_id, entry in other.spans.items():
            if len(self.spans) >= MAX_CARRIED_SPANS:
                break
            self.spans.setdefault(span_id, entry)

    def _of(self, kind: str) -> list[list[Any]]:
        return [entry for entry in self.spans.values() if entry[0] == kind]

    @property
    def steps(self) -> int:
        return len(self._of("step"))

    @property
    def tool_calls(self) -> int:
        return len(self._of("tool"))

    @property
    def tool_failures(self) -> int:
        return sum(1 for entry in self._of("tool") if entry[1])

    @property
    def tokens_in(self) -> int:
        return sum(entry[2] for entry in self._of("step"))

    @property
    def tokens_out(self) -> int:
        return sum(entry[3] for entry in self._of("step"))

    @property
    def model(self) -> str:
        return next((entry[4] for entry in self._of("step") if entry[4]), "")

    def as_dict(self) -> dict[str, Any]:
        return {"spans": self.spans}

    @classmethod
    def from_dict(cls, data: Any) -> ChildCounts:
        """Counts kept by ``as_dict``; entries of another shape are dropped."""
        counts = cls()
        spans = data.get("spans") if isinstance(data, dict) else None
        if isinstance(spans, dict):
            for span_id, entry in list(spans.items())[:MAX_CARRIED_SPANS]:
                if (
                    isinstance(entry, list)
                    and len(entry) == 5
                    and entry[0] in ("tool", "step")
                    and all(isinstance(n, int) and n >= 0 for n in entry[2:4])
                    and isinstance(entry[4], str)
                ):
                    counts.spans[str(span_id)] = [
                        entry[0],
                        bool(entry[1]),
                        entry[2],
                        entry[3],
                        entry[4][:120],
                    ]
        return counts


def carry_key(trace_id: bytes, span_id: bytes) -> str:
    """The cache key under which counts of child spans waiting for span ``span_id`` of trace
    ``trace_id`` are kept."""
    return f"otlp-carry:{trace_id.hex()}:{span_id.hex()}"


def carry_keys(request: ExportTraceServiceRequest) -> list[str]:
    """Every key :func:`convert` may read for this export: one per span and per parent."""
    keys = set()
    for node in _nodes(request):
        keys.add(carry_key(node.span.trace_id, node.span.span_id))
        if node.span.parent_span_id:
            keys.add(carry_key(node.span.trace_id, node.span.parent_span_id))
    return sorted(keys)


@dataclass
class Conversion:
    """:func:`convert`'s result: the ``records``; ``carry_out``, counts of child spans whose
    agent span is not in this export, by the key of the span they wait for (merge of what was
    kept there before); ``consumed``, the kept keys this export used up (delete them)."""

    records: list[SpanRecord]
    carry_out: dict[str, dict[str, Any]]
    consumed: list[str]


def records_from_request(request: ExportTraceServiceRequest) -> list[SpanRecord]:
    """Every agent invocation of the export as a records-API item, in the export's order
    (see the module docstring for which spans and which attributes), from this export alone."""
    return convert(request).records


def convert(
    request: ExportTraceServiceRequest, *, carried: dict[str, Any] | None = None
) -> Conversion:
    """Records of the export, counting child spans exported earlier too.

    A batch span processor exports spans as they end, in batches; children end before their
    agent span, so a batch boundary can fall between them. Children whose invocation is not in
    this export are counted (``ChildCounts``) and handed back in ``carry_out`` under the key of
    the missing span they hang from; ``carried`` (what the caller kept from earlier exports,
    read by ``carry_keys``) is added to the invocation they reach, or passed further up."""
    carried = carried or {}
    nodes = list(_nodes(request))
    by_id = {(n.span.trace_id, n.span.span_id): n for n in nodes}
    children: dict[tuple[bytes, bytes], list[_Node]] = defaultdict(list)
    for node in nodes:
        if node.span.parent_span_id:
            children[(node.span.trace_id, node.span.parent_span_id)].append(node)
    traces_with_agents = {n.span.trace_id for n in nodes if n.operation == INVOKE_AGENT}

    def has_agent_ancestor(node: _Node) -> bool:
        seen = set()
        parent = by_id.get((node.span.trace_id, node.span.parent_span_id))
        while parent is not None and id(parent) not in seen:
            if parent.operation == INVOKE_AGENT:
                return True
            seen.add(id(parent))
            parent = by_id.get((parent.span.trace_id, parent.span.parent_span_id))
        return False

    chosen_ids: set[int] = set()
    for node in nodes:
        if node.operation == INVOKE_AGENT:
            chosen = not has_agent_ancestor(node)
        else:
            chosen = not node.span.parent_span_id and node.span.trace_id not in traces_with_agents
        if chosen:
            chosen_ids.add(id(node))

    consumed: set[str] = set()

    def subtree(node: _Node, *, stop_at_records: bool) -> list[_Node]:
        found: list[_Node] = []
        stack = list(children.get((node.span.trace_id, node.span.span_id), []))
        seen: set[int] = set()
        while stack:
            child = stack.pop()
            if id(child) in seen:  # a malformed export may loop; count each span once
                continue
            seen.add(id(child))
            if stop_at_records and id(child) in chosen_ids:
                continue
            found.append(child)
            stack.extend(children.get((child.span.trace_id, child.span.span_id), []))
        return found

    def counts_of(top: _Node, below: list[_Node], *, include_top: bool) -> ChildCounts:
        counts = ChildCounts()
        for member in ([top] if include_top else []) + below:
            counts.add_span(member)
        for member in [top, *below]:
            key = carry_key(member.span.trace_id, member.span.span_id)
            if key in carried and key not in consumed:
                counts.add(ChildCounts.from_dict(carried[key]))
                consumed.add(key)
        return counts

    records = []
    for node in nodes:
        if id(node) in chosen_ids:
            below = subtree(node, stop_at_records=False)
            counts = counts_of(node, below, include_top=False)
            records.append(SpanRecord(node.pointer, _record(node, counts)))

    carry_out: dict[str, dict[str, Any]] = {}
    for node in nodes:
        parent_key = (node.span.trace_id, node.span.parent_span_id)
        if id(node) in chosen_ids or not node.span.parent_span_id or parent_key in by_id:
            continue
        # the top of a subtree whose invocation is elsewhere: keep its counts for later
        counts = counts_of(node, subtree(node, stop_at_records=True), include_top=True)
        key = carry_key(*parent_key)
        if key in carried and key not in consumed:  # added once, by the first sibling
            counts.add(ChildCounts.from_dict(carried[key]))
            consumed.add(key)
        if key in carry_out:
            counts.add(ChildCounts.from_dict(carry_out[key]))
        if counts.spans:
            carry_out[key] = counts.as_dict()
    return Conversion(
        records=records,
        carry_out=carry_out,
        consumed=sorted(consumed - set(carry_out)),
    )


def _record(node: _Node, counts: ChildCounts) -> dict[str, Any]:
    span, a, resource = node.span, node.attributes, node.resource

    def usage(key: str, counted: int) -> Any:
        own = a.get(key)
        return own if own is not None else counted

    trace_hex = span.trace_id.hex()
    failed = span.status.code == Status.STATUS_CODE_ERROR
    status_message = span.status.message[:_ERROR_MESSAGE_LIMIT] if failed else ""
    record: dict[str, Any] = {
        "request_id": _first(a.get(PREFIX + "request_id"), f"{trace_hex}-{span.span_id.hex()}"),
        "session_id": _first(a.get("session.id"), a.get("gen_ai.conversation.id")),
        "end_user_hash": _first(a.get(PREFIX + "end_user_hash"), a.get("user.hash")),
        "agent": _first(
            a.get(PREFIX + "agent"), a.get("gen_ai.agent.name"), resource.get(PREFIX + "agent")
        ),
        "version_digest": _first(
            a.get(PREFIX + "bundle.digest"), resource.get(PREFIX + "bundle.digest")
        ),
        "variant": _first(a.get(PREFIX + "variant"), resource.get(PREFIX + "variant"), "stable"),
        "started_at": _rfc3339(span.start_time_unix_nano),
        "latency_ms": round(max(span.end_time_unix_nano - span.start_time_unix_nano, 0) / 1e6),
        "steps": _first(a.get(PREFIX + "steps"), counts.steps),
        "tool_calls": _first(a.get(PREFIX + "tool_calls"), counts.tool_calls),
        "tool_failures": _first(a.get(PREFIX + "tool_failures"), counts.tool_failures),
        "wrong_actions": a.get(PREFIX + "wrong_actions"),
        "tokens_in": usage("gen_ai.usage.input_tokens", counts.tokens_in),
        "tokens_out": usage("gen_ai.usage.output_tokens", counts.tokens_out),
        "cost_usd": _cost(a.get(PREFIX + "cost_usd")),
        "model": _first(
            a.get("gen_ai.request.model"), a.get("gen_ai.response.model"), counts.model, ""
        ),
        "outcome": _first(a.get(PREFIX + "outcome"), "error" if failed else "success"),
        "error_code": _first(a.get(PREFIX + "error_code"), a.get("error.type"), status_message),
        "trace_id": trace_hex,
    }
    for key, source in (
        ("feedback_thumbs", PREFIX + "feedback.thumbs"),
        ("feedback_score", PREFIX + "feedback.score"),
        ("quality_score", PREFIX + "quality_score"),
    ):
        if a.get(source) is not None:
            record[key] = _thumbs(a[source]) if key == "feedback_thumbs" else a[source]
    return {k: v for k, v in record.items() if v is not None}
