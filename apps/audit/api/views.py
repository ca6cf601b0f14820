from __future__ import annotations

from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from apps.core.api import ErrorSerializer, ScopedViewSet

from ..links import target_links
from ..models import AuditCheckpoint, AuditEvent
from ..selectors import audit_checkpoint_list, audit_event_list, checkpoint_record
from .filters import AuditCheckpointListFilter, AuditEventListFilter
from .serializers import AuditCheckpointOutput, AuditEventOutput


class AuditEventViewSet(ScopedViewSet):
    """The audit trail, newest first, limited to the tenants the caller may see."""

    permission_model = AuditEvent
    filterset_class = AuditEventListFilter

    def scoped_queryset(self) -> QuerySet[AuditEvent]:
        return audit_event_list(user=self.request.user, action=self.permission_action)

    @extend_schema(responses={200: AuditEventOutput(many=True), 400: ErrorSerializer})
    def list(self, request: Request) -> Response:
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        assert page is not None  # the project paginates every list
        # Target links for the whole page at once: one query per target type, not per event.
        context = {
            **self.get_serializer_context(),
            "target_links": target_links(page, user=request.user),
        }
        return self.get_paginated_response(AuditEventOutput(page, many=True, context=context).data)

    @extend_schema(responses={200: AuditEventOutput, 404: ErrorSerializer})
    def retrieve(self, request: Request, pk: str) -> Response:
        return Response(
            AuditEventOutput(self.get_object(), context=self.get_serializer_context()).data
        )


class AuditCheckpointViewSet(ScopedViewSet):
    """Signed checkpoints of the audit chain head, oldest first, for copying elsewhere and
    checking with ``./manage.py audit verify --checkpoints FILE``. Admins only: a
    checkpoint counts every tenant's events, so only the Admin role has
    ``audit.view_auditcheckpoint`` (``AuditCheckpoint.tenant_scope`` is None)."""

    permission_model = AuditCheckpoint
    permission_denied_message = (
        "Only Admins may read audit checkpoints: they cover every tenant's events."
    )
    filterset_class = AuditCheckpointListFilter

    def scoped_queryset(self) -> QuerySet[AuditCheckpoint]:
        return audit_checkpoint_list()

    @extend_schema(
        responses={
            200: AuditCheckpointOutput(many=True),
            400: ErrorSerializer,
            403: ErrorSerializer,
        },
    )
    def list(self, request: Request) -> Response:
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        assert page is not None  # the project paginates every list
        return self.get_paginated_response([checkpoint_record(c) for c in page])
