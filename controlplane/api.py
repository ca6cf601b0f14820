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

from .input_guards import PayloadTooLarge


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


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, DjangoValidationError):
        exc = django_validation_error_to_drf(exc)
    elif isinstance(exc, Http404):
        exc = exceptions.NotFound(str(exc) or "Not found.")
    elif isinstance(exc, RequestDataTooBig):
        # A body without a Content-Length that outgrew DATA_UPLOAD_MAX_MEMORY_SIZE.
        exc = PayloadTooLarge()
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
