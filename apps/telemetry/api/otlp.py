"""``POST /api/runtime/v1/otlp/v1/traces``: OTLP/HTTP trace exports from runtimes that already
emit OpenTelemetry, turned into request records (``apps/telemetry/otlp.py``) and stored by the
same ingestion service as ``POST /api/runtime/v1/records`` (docs/runtime-api.md,
docs/decisions/0022)."""

from __future__ import annotations

import zlib

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework import exceptions, status
from rest_framework.request import Request
from rest_framework.response import Response

from apps.accounts.api.authentication import RuntimeTokenAPIView
from apps.core.api import ErrorSerializer
from apps.core.input_guards import PayloadTooLarge, max_body_bytes

from ..otlp import JSON, PROTOBUF, OTLPDecodeError, decode_request
from ..services import TooManyInvocations, traces_ingest
from .serializers import IngestOutput
from .views import batch_limit


class UnsupportedMediaType(exceptions.UnsupportedMediaType):
    def __init__(self, media_type: str) -> None:
        super().__init__(
            media_type, detail=f"Send OTLP as {PROTOBUF} or {JSON}, not {media_type or 'nothing'}."
        )


def _read_body(request: Request) -> bytes:
    """The body, gunzipped when ``Content-Encoding: gzip`` (what OTLP exporters send with
    compression on); 413 past ``API_MAX_BODY_BYTES`` before or after decompression (a small
    gzip bomb is refused, not inflated), 400 for a broken gzip stream."""
    limit = max_body_bytes()
    raw = request._request.read(limit + 1)
    if len(raw) > limit:
        raise PayloadTooLarge(f"The request body is over the limit of {limit:,} bytes.")
    encoding = request.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding in ("", "identity"):
        return raw
    if encoding != "gzip":
        raise exceptions.ParseError(f"Content-Encoding {encoding[:40]!r}: send gzip or none.")
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        body = inflater.decompress(raw, limit + 1)
    except zlib.error as exc:
        raise exceptions.ParseError(f"The gzip body is broken: {exc}.") from None
    if len(body) > limit or inflater.unconsumed_tail:
        raise PayloadTooLarge(f"The decompressed body is over the limit of {limit:,} bytes.")
    if not inflater.eof:
        raise exceptions.ParseError("The gzip body is cut short.")
    return body


class OTLPTracesView(RuntimeTokenAPIView):
    """OTLP/HTTP traces (protobuf or JSON, optionally gzip): each agent invocation span
    becomes a request record. Answers like ``POST /api/runtime/v1/records``: 200 when every
    record was stored or was a duplicate, 207 when some were refused (pointers name the spans,
    and ``partialSuccess`` says how many, as OTLP clients read it)."""

    @extend_schema(
        summary="Send OpenTelemetry traces (OTLP/HTTP)",
        request={PROTOBUF: OpenApiTypes.BINARY, JSON: OpenApiTypes.OBJECT},
        responses={
            200: IngestOutput,
            207: IngestOutput,
            400: ErrorSerializer,
            401: ErrorSerializer,
            413: ErrorSerializer,
            415: ErrorSerializer,
        },
        examples=[
            OpenApiExample(
                "An OTLP/JSON export with one agent invocation",
                request_only=True,
                media_type=JSON,
                value={
                    "resourceSpans": [
                        {
                            "scopeSpans": [
                                {
                                    "spans": [
                                        {
                                            "traceId": "4bf92f3577b34da6a3ce929d0e0e4736",
                                            "spanId": "00f067aa0ba902b7",
                                            "name": "invoke_agent support-bot",
                                            "startTimeUnixNano": "1764900000000000000",
                                            "endTimeUnixNano": "1764900001200000000",
                                            "attributes": [
                                                {
                                                    "key": "gen_ai.operation.name",
                                                    "value": {"stringValue": "invoke_agent"},
                                                },
                                                {
                                                    "key": "gen_ai.agent.name",
                                                    "value": {"stringValue": "support-bot"},
                                                },
                                            ],
                                        }
                                    ]
                                }
                            ]
                        }
                    ]
                },
            )
        ],
        tags=["runtime"],
    )
    def post(self, request: Request) -> Response:
        token = self.runtime_token(request)
        media_type = request.content_type.split(";", 1)[0].strip().lower()
        if media_type not in (PROTOBUF, JSON):
            raise UnsupportedMediaType(media_type[:80])
        body = _read_body(request)
        try:
            export = decode_request(body, media_type)
        except OTLPDecodeError as exc:
            raise exceptions.ParseError(str(exc)[:300]) from None
        try:
            body_json = traces_ingest(token=token, export=export, limit=batch_limit())
        except TooManyInvocations as exc:
            raise PayloadTooLarge(str(exc)) from None
        code = status.HTTP_207_MULTI_STATUS if body_json["rejected"] else status.HTTP_200_OK
        return Response(body_json, status=code)
