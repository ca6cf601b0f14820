"""What every API view shares: one error shape and the scoped-queryset rule.

Errors always look like ``{"detail": "...", "errors": {"field": ["..."]}}``."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ObjectDoesNotExist, PermissionDenied, RequestDataTooBig
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import QuerySet
from django.http import Http404
from rest_framework import exceptions, serializers, viewsets
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from apps.audit.concurrency import DeletedMeanwhile, StaleVersion

from .errors import too_large_detail


def _as_field_errors(detail: Any) -> dict[str, Any]:
    if isinstance(detail, dict):
        return {str(k): v if isinstance(v, list | dict) else [v] for k, v in detail.items()}
    if isinstance(detail, list):
        return {"non_field_errors": detail}
    return {"non_field_errors": [detail]}


def django_validation_error_to_drf(exc: DjangoValidationError) -> exceptions.ValidationError:
    if hasattr(exc, "error_dict"):
        return exceptions.ValidationError({k: list(v) for k, v in exc.message_dict.items()})
    return exceptions.ValidationError({"non_field_errors": list(exc.messages)})


class PayloadTooLarge(exceptions.APIException):
    status_code = 413
    default_detail = "The request body is too large."
    default_code = "payload_too_large"


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, StaleVersion):
        # Optimistic concurrency: the client acted on a version that moved on. 409, with
        # what it needs to re-read and decide again (docs/decisions/0007).
        message = exc.messages[0]
        return Response(
            {
                "detail": message,
                "errors": {"expected_version": [message]},
                "current_version": exc.current_version,
                "changed_by": exc.changed_by or None,
                "changed_at": exc.changed_at.isoformat() if exc.changed_at else None,
            },
            status=409,
        )
    if isinstance(exc, DeletedMeanwhile):
        # Same 409 shape: what the client acted on is gone, and who removed it.
        message = exc.messages[0]
        return Response(
            {
                "detail": message,
                "errors": {},
                "current_version": None,
                "changed_by": exc.changed_by or None,
                "changed_at": exc.changed_at.isoformat() if exc.changed_at else None,
            },
            status=409,
        )
    if isinstance(exc, RequestDataTooBig):
        exc = PayloadTooLarge(too_large_detail())
    elif isinstance(exc, DjangoValidationError):
        exc = django_validation_error_to_drf(exc)
    elif isinstance(exc, Http404):
        exc = exceptions.NotFound(str(exc) or "Not found.")
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied(str(exc) or None)
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.ValidationError):
        errors = _as_field_errors(response.data)
        response.data = {"detail": "Invalid input: see errors by field.", "errors": errors}
    elif isinstance(response.data, dict) and "detail" in response.data:
        response.data = {"detail": response.data["detail"], "errors": {}}
    return response


class ReasonSerializer(serializers.Serializer):
    reason = serializers.CharField(
        allow_blank=False,
        max_length=2000,
        help_text="Why: kept in the audit log. Required for destructive actions.",
    )


class OptionalReasonMixin(serializers.Serializer):
    reason = serializers.CharField(required=False, allow_blank=True, max_length=2000, default="")


class ExpectedVersionMixin(serializers.Serializer):
    """``expected_version``: the ``version`` the client read; optional on the API (absent:
    the change applies to whatever is current, as before). ``If-Match: "<version>"`` says
    the same. A mismatch answers 409 (``ConflictSerializer``)."""

    expected_version = serializers.IntegerField(
        required=False,
        min_value=0,
        max_value=2**31 - 1,
        help_text="The `version` you read. If it moved on since, nothing changes and the "
        'answer is 409 naming who changed it and when. Same as `If-Match: "<version>"`.',
    )


def expected_version(request: Any, data: dict[str, Any]) -> int | None:
    """The version a request says it acted on: the body's ``expected_version``, else an
    ``If-Match`` header holding one quoted (or weak) version tag (``"3"``, ``W/"3"``);
    ``*`` or no header is None (no check). Raises a 400 ``ValidationError`` for an
    ``If-Match`` that is not a single version, or that disagrees with the body."""
    body = data.pop("expected_version", None)
    header = (request.headers.get("If-Match") or "").strip()
    if not header or header == "*":
        return body
    tag = header.removeprefix("W/").strip()
    if not (
        len(tag) >= 3 and tag[0] == tag[-1] == '"' and tag[1:-1].isascii() and tag[1:-1].isdigit()
    ):
        raise exceptions.ValidationError(
            {"If-Match": ['One version in quotes, e.g. If-Match: "3" (the "version" you read).']}
        )
    if len(tag) > 12:
        raise exceptions.ValidationError({"If-Match": ["Not a version of this object."]})
    version = int(tag[1:-1])
    if body is not None and body != version:
        raise exceptions.ValidationError(
            {"expected_version": ["Disagrees with If-Match: send one or make them equal."]}
        )
    return version


class ConflictSerializer(serializers.Serializer):
    """The 409 answer to a stale ``expected_version`` / ``If-Match`` (schema only)."""

    def get_fields(self) -> dict[str, serializers.Field]:
        return {
            "detail": serializers.CharField(),
            "errors": serializers.DictField(
                child=serializers.ListField(child=serializers.CharField())
            ),
            "current_version": serializers.IntegerField(allow_null=True),
            "changed_by": serializers.CharField(allow_null=True),
            "changed_at": serializers.DateTimeField(allow_null=True),
        }


class ErrorSerializer(serializers.Serializer):
    """The error shape, for the schema only. Its fields are built in ``get_fields`` because a
    field named ``errors`` declared on the class would hide ``Serializer.errors``."""

    def get_fields(self) -> dict[str, serializers.Field]:
        return {
            "detail": serializers.CharField(),
            "errors": serializers.DictField(
                child=serializers.ListField(child=serializers.CharField())
            ),
        }


class ScopedViewSet(viewsets.GenericViewSet):
    """Base for operator API views: the queryset comes only from ``scoped_queryset()``, which
    must go through a selector that filters by what ``request.user`` may see. There is no
    class-level ``queryset`` to fall back on, so a new endpoint cannot forget the scope."""

    lookup_value_regex = r"[0-9]+"

    def scoped_queryset(self) -> QuerySet[Any]:
        raise NotImplementedError

    def get_queryset(self) -> QuerySet[Any]:
        return self.scoped_queryset()

    def get_object(self) -> Any:
        try:
            return self.get_queryset().get(pk=int(self.kwargs["pk"]))
        except (ObjectDoesNotExist, ValueError):
            raise exceptions.NotFound("Not found.") from None

    def validated(
        self, serializer_class: type[serializers.Serializer], data: Any | None = None
    ) -> dict[str, Any]:
        serializer = serializer_class(data=self.request.data if data is None else data)
        serializer.is_valid(raise_exception=True)
        return dict(serializer.validated_data)

    def paginated(self, queryset: QuerySet[Any], output: type[serializers.Serializer]) -> Response:
        page = self.paginate_queryset(queryset)
        if page is not None:
            return self.get_paginated_response(output(page, many=True).data)
        return Response(output(queryset, many=True).data)
