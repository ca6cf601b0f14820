from __future__ import annotations

from datetime import datetime

from django.db.models import QuerySet
from django.utils.dateparse import parse_datetime
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from apps.core.api import ErrorSerializer, ScopedViewSet

from ..models import AuditCheckpoint, AuditEvent
from ..selectors import audit_checkpoint_list, audit_event_list, checkpoint_record
from .serializers import AuditCheckpointOutput, AuditEventOutput

FILTERS = [
    OpenApiParameter("actor", str, description="username contains"),
    OpenApiParameter("action", str, description="action starts with, e.g. agent."),
    OpenApiParameter("tenant", int, description="tenant id"),
    OpenApiParameter("target", str, description="target label contains, or exact id or type"),
    OpenApiParameter("since", str, description="ISO 8601 time, inclusive"),
    OpenApiParameter("until", str, description="ISO 8601 time, inclusive"),
]


def _time(request: Request, name: str) -> datetime | None:
    raw = request.query_params.get(name)
    if not raw:
        return None
    value = parse_datetime(raw)
    if value is None:
        raise ValidationError({name: ["Use an ISO 8601 time such as 2026-11-23T12:00:00Z."]})
    return value


class AuditEventViewSet(ScopedViewSet):
    """The audit trail, newest first, limited to the tenants the caller may see."""

    permission_model = AuditEvent

    def scoped_queryset(self) -> QuerySet[AuditEvent]:
        params = self.request.query_params
        tenant = params.get("tenant")
        if tenant and not tenant.isdigit():
            raise ValidationError({"tenant": ["Use the tenant id."]})
        return audit_event_list(
            user=self.request.user,
            actor=params.get("actor", ""),
            action_prefix=params.get("action", ""),
            tenant_id=int(tenant) if tenant else None,
            target=params.get("target", ""),
            since=_time(self.request, "since"),
            until=_time(self.request, "until"),
        )

    @extend_schema(
        parameters=FILTERS, responses={200: AuditEventOutput(many=True), 400: ErrorSerializer}
    )
    def list(self, request: Request) -> Response:
        return self.paginated(self.get_queryset(), AuditEventOutput)

    @extend_schema(responses={200: AuditEventOutput, 404: ErrorSerializer})
    def retrieve(self, request: Request, pk: str) -> Response:
        return Response(AuditEventOutput(self.get_object()).data)


class AuditCheckpointViewSet(ScopedViewSet):
    """Signed checkpoints of the audit chain head, oldest first, for copying elsewhere and
    checking with ``./manage.py audit verify --checkpoints FILE``. Admins only: a
    checkpoint counts every tenant's events, so only the Admin role has
    ``audit.view_auditcheckpoint`` (``AuditCheckpoint.tenant_scope`` is None)."""

    permission_model = AuditCheckpoint
    permission_denied_message = (
        "Only Admins may read audit checkpoints: they cover every tenant's events."
    )

    def scoped_queryset(self) -> QuerySet[AuditCheckpoint]:
        raw = self.request.query_params.get("after_event", "0") or "0"
        if not raw.isdigit() or len(raw) > 18:
            raise ValidationError({"after_event": ["Use an audit event id (a whole number)."]})
        return audit_checkpoint_list(after_event=int(raw))

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "after_event", int, description="only checkpoints of heads after this event id"
            )
        ],
        responses={
            200: AuditCheckpointOutput(many=True),
            400: ErrorSerializer,
            403: ErrorSerializer,
        },
    )
    def list(self, request: Request) -> Response:
        page = self.paginate_queryset(self.get_queryset())
        assert page is not None  # the project paginates every list
        return self.get_paginated_response([checkpoint_record(c) for c in page])
