from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions, status
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from apps.core.api import (
    IF_MATCH,
    ConflictSerializer,
    ErrorSerializer,
    ScopedViewSet,
    expected_version,
    secret_once,
)
from apps.tenancy.selectors import tenant_get_for_user

from .. import selectors, services
from ..models import Alert, AlertChannel
from . import serializers as s

ERRORS = {400: ErrorSerializer, 403: ErrorSerializer, 404: ErrorSerializer}
CHANGE_ERRORS = {**ERRORS, 409: ConflictSerializer}


def _flag(request: Request, name: str) -> bool:
    raw = request.query_params.get(name, "")
    if raw not in ("", "true", "false", "1", "0"):
        raise exceptions.ValidationError({name: ["Use true or false."]})
    return raw in ("true", "1")


def _tenant_ids(request: Request) -> list[int] | None:
    raw = request.query_params.get("tenant", "")
    if not raw:
        return None
    if not raw.isdigit() or len(raw) > 18:
        raise exceptions.ValidationError({"tenant": ["A tenant id."]})
    return [int(raw)]


class AlertViewSet(ScopedViewSet):
    """Alerts of your tenants, newest first: what the control plane did by itself (an
    automatic rollback or pause) that someone should hear of. Acknowledge to say it is seen."""

    permission_model = Alert
    permission_actions = {"acknowledge": "change"}

    def scoped_queryset(self) -> QuerySet[Alert]:
        return selectors.alert_list_for_user(user=self.request.user, action=self.permission_action)

    @extend_schema(
        parameters=[
            OpenApiParameter("tenant", int, description="only this tenant's alerts"),
            OpenApiParameter("unacknowledged", bool, description="only alerts nobody acknowledged"),
        ],
        responses={200: s.AlertOutput(many=True)},
    )
    def list(self, request: Request) -> Response:
        qs = self.get_queryset()
        tenant_ids = _tenant_ids(request)
        if tenant_ids is not None:
            qs = qs.filter(tenant_id__in=tenant_ids)
        if _flag(request, "unacknowledged"):
            qs = qs.filter(acknowledged_at__isnull=True)
        return self.paginated(qs, s.AlertOutput)

    @extend_schema(responses={200: s.AlertOutput, **ERRORS})
    def retrieve(self, request: Request, pk: str) -> Response:
        return Response(s.AlertOutput(self.get_object()).data)

    @extend_schema(
        summary="Acknowledge an alert", request=None, responses={200: s.AlertOutput, **ERRORS}
    )
    @action(detail=True, methods=["post"])
    def acknowledge(self, request: Request, pk: str) -> Response:
        """Mark the alert seen by you; acknowledging it again changes nothing."""
        alert = services.alert_acknowledge(actor=request.user, alert=self.get_object())
        return Response(s.AlertOutput(alert).data)


class AlertChannelViewSet(ScopedViewSet):
    """Webhook receivers of a tenant's alerts, signed like runtime pushes
    (``X-Controlplane-Signature``, key: hex sha256 of the secret returned at creation)."""

    permission_model = AlertChannel

    def scoped_queryset(self) -> QuerySet[AlertChannel]:
        return selectors.alert_channel_list_for_user(
            user=self.request.user, action=self.permission_action
        )

    @extend_schema(responses={200: s.AlertChannelOutput(many=True)})
    def list(self, request: Request) -> Response:
        qs = self.get_queryset()
        tenant_ids = _tenant_ids(request)
        if tenant_ids is not None:
            qs = qs.filter(tenant_id__in=tenant_ids)
        return self.paginated(qs, s.AlertChannelOutput)

    @extend_schema(responses={200: s.AlertChannelOutput, **ERRORS})
    def retrieve(self, request: Request, pk: str) -> Response:
        """One channel; its ``ETag`` is its ``version``, ready for ``If-Match`` on a change."""
        channel = self.get_object()
        return Response(
            s.AlertChannelOutput(channel).data, headers={"ETag": f'"{channel.version}"'}
        )

    @extend_schema(
        request=s.AlertChannelCreateInput, responses={201: s.AlertChannelCreatedOutput, **ERRORS}
    )
    def create(self, request: Request) -> Response:
        """Add a channel; the answer carries its signing ``secret``, never shown again."""
        data: dict[str, Any] = self.validated(s.AlertChannelCreateInput)
        tenant = tenant_get_for_user(user=request.user, pk=data.pop("tenant"))
        channel, raw = services.alert_channel_create(actor=request.user, tenant=tenant, **data)
        channel.secret = raw  # type: ignore[attr-defined]
        return secret_once(
            s.AlertChannelCreatedOutput(channel).data, status=status.HTTP_201_CREATED
        )

    @extend_schema(
        request=s.AlertChannelUpdateInput,
        parameters=[IF_MATCH],
        responses={200: s.AlertChannelOutput, **CHANGE_ERRORS},
    )
    def partial_update(self, request: Request, pk: str) -> Response:
        """Change some fields; 409 if ``expected_version``/``If-Match`` is stale."""
        data: dict[str, Any] = self.validated(s.AlertChannelUpdateInput)
        seen = expected_version(request, data)
        channel = services.alert_channel_update(
            actor=request.user, channel=self.get_object(), expected_version=seen, **data
        )
        return Response(s.AlertChannelOutput(channel).data)

    @extend_schema(
        request=s.AlertChannelDeleteInput,
        parameters=[OpenApiParameter("reason", str), IF_MATCH],
        responses={204: None, **CHANGE_ERRORS},
    )
    def destroy(self, request: Request, pk: str) -> Response:
        """Delete the channel and its delivery log; 409 if the version is stale."""
        channel = self.get_object()
        data: dict[str, Any] = self.validated(s.AlertChannelDeleteInput)
        seen = expected_version(request, data)
        services.alert_channel_delete(
            actor=request.user,
            channel=channel,
            reason=data.get("reason") or request.query_params.get("reason", ""),
            expected_version=seen,
        )
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(
        summary="Rotate an alert channel's signing secret",
        request=s.AlertChannelRotateInput,
        parameters=[IF_MATCH],
        responses={200: s.AlertChannelCreatedOutput, **CHANGE_ERRORS},
    )
    @action(detail=True, methods=["post"], url_path="rotate-secret")
    def rotate_secret(self, request: Request, pk: str) -> Response:
        """A new signing ``secret``, in this answer only; the old one stops at once."""
        data: dict[str, Any] = self.validated(s.AlertChannelRotateInput)
        seen = expected_version(request, data)
        channel, raw = services.alert_channel_rotate_secret(
            actor=request.user, channel=self.get_object(), expected_version=seen, **data
        )
        channel.secret = raw  # type: ignore[attr-defined]
        return secret_once(s.AlertChannelCreatedOutput(channel).data)

    @extend_schema(
        summary="An alert channel's deliveries",
        responses={200: s.AlertDeliveryOutput(many=True), **ERRORS},
    )
    @action(detail=True, methods=["get"])
    def deliveries(self, request: Request, pk: str) -> Response:
        """The channel's deliveries, newest first: status, attempts, last answer or error."""
        channel = self.get_object()
        return self.paginated(
            channel.deliveries.order_by("-created_at", "-pk"), s.AlertDeliveryOutput
        )
