"""``POST /api/runtime/v1/records``: request records and 10-second buckets from runtimes.

Django, not the fast path: ingestion is a write whose cost is the database transaction, not
the HTTP layer (docs/decisions/0021, measured by ``benchmarks.ingest``). The body is read and
parsed here rather than by DRF's parser, and items are checked by hand, one by one."""

from __future__ import annotations

import json
import re
from decimal import Decimal
from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import exceptions
from rest_framework.request import Request
from rest_framework.response import Response

from apps.accounts.api.authentication import RuntimeTokenAPIView
from apps.core.api import ErrorSerializer
from apps.core.input_guards import PayloadTooLarge, max_body_bytes

from ..services import IngestResult, buckets_ingest, records_ingest
from .serializers import BatchInput, IngestOutput

_INSTANCE_ID = re.compile(r"^[\w.:@/-]{1,128}$")


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def batch_limit() -> int:
    from django.conf import settings

    return int(settings.TELEMETRY_MAX_BATCH_ITEMS)


def parse_batch(raw: bytes) -> dict[str, Any]:
    """The body as a JSON object. Numbers with a fraction become ``Decimal`` (costs stay
    exact). Raises a 400 ``ValidationError`` for malformed JSON or a body of the wrong shape,
    ``PayloadTooLarge`` (413) for more items than ``TELEMETRY_MAX_BATCH_ITEMS``."""
    try:
        body = json.loads(raw, parse_float=Decimal, parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as exc:
        detail = str(exc)[:200] if isinstance(exc, json.JSONDecodeError) else "not JSON"
        raise exceptions.ParseError(f"Malformed JSON: {detail}.") from exc
    if not isinstance(body, dict):
        raise exceptions.ValidationError(
            {"non_field_errors": ['Send a JSON object: {"records": [...]} or {"buckets": [...]}.']}
        )
    errors: dict[str, list[str]] = {}
    for name in ("records", "buckets"):
        if name in body and not isinstance(body[name], list):
            errors[name] = ["Must be an array."]
    if "records" not in body and "buckets" not in body:
        errors["records"] = ['Send "records" (an array), "buckets" (an array) or both.']
    if isinstance(body.get("buckets"), list) and body["buckets"]:
        instance_id = body.get("instance_id")
        if not isinstance(instance_id, str) or not _INSTANCE_ID.match(instance_id):
            errors["instance_id"] = [
                "Required with buckets: the runtime instance id (1-128 of letters, digits, "
                "and . : @ / - _)."
            ]
    if errors:
        raise exceptions.ValidationError(errors)
    limit = batch_limit()
    for name in ("records", "buckets"):
        count = len(body.get(name) or [])
        if count > limit:
            raise PayloadTooLarge(
                f"At most {limit} {name} per request; this one has {count}. Split the batch."
            )
    return body


class RecordsView(RuntimeTokenAPIView):
    """Batched request records and/or pre-aggregated 10-second buckets (docs/runtime-api.md).
    200 when every item was stored or was a duplicate; 207 when some items (possibly all)
    were refused: the body lists each with its JSON pointer and errors."""

    @extend_schema(
        summary="Send request records and 10-second buckets",
        request=BatchInput,
        responses={
            200: IngestOutput,
            207: IngestOutput,
            400: ErrorSerializer,
            401: ErrorSerializer,
            413: ErrorSerializer,
            429: ErrorSerializer,
        },
        tags=["runtime"],
    )
    def post(self, request: Request) -> Response:
        token = self.runtime_token(request)
        limit = max_body_bytes()
        raw = request._request.read(limit + 1)
        if len(raw) > limit:
            raise PayloadTooLarge(f"The request body is over the limit of {limit:,} bytes.")
        body = parse_batch(raw)
        result = IngestResult()
        if body.get("records"):
            result.add(records_ingest(token=token, records=body["records"]))
        if body.get("buckets"):
            result.add(
                buckets_ingest(
                    token=token, instance_id=body["instance_id"], buckets=body["buckets"]
                )
            )
        return Response(result.as_json(), status=207 if result.rejected else 200)
