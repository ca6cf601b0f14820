from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.decorators import action
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response

from apps.core.api import (
    IF_MATCH,
    ConflictSerializer,
    ErrorSerializer,
    ScopedViewSet,
    expected_version,
)
from apps.core.api_http import ExactNumberJSONParser
from apps.tenancy.models import Tenant
from apps.tenancy.selectors import agent_get_for_user, environment_get_for_user, tenant_get_for_user

from .. import selectors, services
from ..models import Flag, KillSwitch, Segment
from . import serializers as s
from .filters import FlagListFilter, KillSwitchListFilter, SegmentListFilter

ERRORS = {400: ErrorSerializer, 403: ErrorSerializer, 404: ErrorSerializer}
# Constraint values and payloads keep every digit of a JSON number (issue 8, kind 5).
PARSERS = [ExactNumberJSONParser, FormParser, MultiPartParser]
# Changes of "the current X": a stale expected_version / If-Match answers 409.
CHANGE_ERRORS = {**ERRORS, 409: ConflictSerializer}


class FlagViewSet(ScopedViewSet):
    """Flags per environment, in the Unleash model. Every change bumps the environment's
    revision; in production a reason is required."""

    parser_classes = PARSERS
    permission_model = Flag
    filterset_class = FlagListFilter

    def scoped_queryset(self) -> QuerySet[Flag]:
        return selectors.flag_list_for_user(user=self.request.user, action=self.permission_action)

    @extend_schema(responses={200: s.FlagOutput(many=True)})
    def list(self, request: Request) -> Response:
        return self.paginated(self.filter_queryset(self.get_queryset()), s.FlagOutput)

    @extend_schema(responses={200: s.FlagOutput, **ERRORS})
    def retrieve(self, request: Request, pk: str) -> Response:
        """One flag; its ``ETag`` is its ``version``, ready for ``If-Match`` on a change."""
        flag = self.get_object()
        return Response(s.FlagOutput(flag).data, headers={"ETag": f'"{flag.version}"'})

    @extend_schema(request=s.FlagCreateInput, responses={201: s.FlagOutput, **ERRORS})
    def create(self, request: Request) -> Response:
        data: dict[str, Any] = self.validated(s.FlagCreateInput)
        environment = environment_get_for_user(user=request.user, pk=data.pop("environment"))
        flag = services.flag_create(actor=request.user, environment=environment, **data)
        return Response(s.FlagOutput(flag).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        request=s.FlagUpdateInput,
        parameters=[IF_MATCH],
        responses={200: s.FlagOutput, **CHANGE_ERRORS},
    )
    def partial_update(self, request: Request, pk: str) -> Response:
        """Change some fields. Send the ``version`` you read (``expected_version`` or
        ``If-Match``) to be refused with 409 if someone changed the flag since."""
        data: dict[str, Any] = self.validated(s.FlagUpdateInput)
        seen = expected_version(request, data)
        flag = services.flag_update(
            actor=request.user, flag=self.get_object(), expected_version=seen, **data
        )
        return Response(s.FlagOutput(flag).data)

    @extend_schema(
        request=s.FlagDeleteInput,
        parameters=[OpenApiParameter("reason", str), IF_MATCH],
        responses={204: None, **CHANGE_ERRORS},
    )
    def destroy(self, request: Request, pk: str) -> Response:
        """Delete the flag. Send the ``version`` you read (``If-Match`` or
        ``expected_version``) to be refused with 409 if someone changed it since."""
        flag = self.get_object()
        data: dict[str, Any] = self.validated(s.FlagDeleteInput)
        seen = expected_version(request, data)
        services.flag_delete(
            actor=request.user,
            flag=flag,
            reason=data.get("reason") or request.query_params.get("reason", ""),
            expected_version=seen,
        )
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(
        summary="Turn a flag on or off",
        request=s.FlagToggleInput,
        parameters=[IF_MATCH],
        responses={200: s.FlagOutput, **CHANGE_ERRORS},
    )
    @action(detail=True, methods=["post"])
    def toggle(self, request: Request, pk: str) -> Response:
        """Turn the flag on or off; 409 if ``expected_version``/``If-Match`` is stale."""
        data = self.validated(s.FlagToggleInput)
        seen = expected_version(request, data)
        flag = services.flag_toggle(
            actor=request.user, flag=self.get_object(), expected_version=seen, **data
        )
        return Response(s.FlagOutput(flag).data)

    @extend_schema(
        summary="Import flags from an Unleash client-features payload",
        request=s.FlagImportInput,
        responses={200: s.FlagImportOutput, **ERRORS},
    )
    @action(detail=False, methods=["post"], url_path="import")
    def import_(self, request: Request) -> Response:
        """Import an Unleash client-features payload (v1/v2 with segments and dependencies, or
        delta events) into one environment: ``merge`` or ``replace``."""
        data: dict[str, Any] = self.validated(s.FlagImportInput)
        environment = environment_get_for_user(user=request.user, pk=data.pop("environment"))
        result = services.flags_import(actor=request.user, environment=environment, **data)
        return Response(result.summary())

    @extend_schema(
        summary="Which SDK instances evaluate a flag, and how often",
        responses={200: s.FlagUsageOutput, **ERRORS},
    )
    @action(detail=True, methods=["get"])
    def usage(self, request: Request, pk: str) -> Response:
        """Registered SDK instances of the flag's environment and its evaluation counts per hour."""
        flag = self.get_object()
        return Response(
            {
                "instances": s.SdkInstanceOutput(
                    selectors.sdk_instances_for_environment(environment=flag.environment), many=True
                ).data,
                "hourly": [
                    {"hour": r.hour, "yes": r.yes, "no": r.no}
                    for r in selectors.flag_usage_hourly(flag=flag)
                ],
                "variants": [
                    {"hour": h, "variant": v, "count": c}
                    for h, v, c in selectors.flag_variant_usage_hourly(flag=flag)
                ],
            }
        )


class SegmentViewSet(ScopedViewSet):
    """Segments: named, reusable lists of constraints that flag strategies reference (Unleash
    segments), one set per environment. A change bumps the environment's revision, so SDKs
    and runtimes fetch it."""

    parser_classes = PARSERS
    permission_model = Segment
    filterset_class = SegmentListFilter

    def scoped_queryset(self) -> QuerySet[Segment]:
        return selectors.segment_list_for_user(
            user=self.request.user, action=self.permission_action
        )

    @extend_schema(responses={200: s.SegmentOutput(many=True)})
    def list(self, request: Request) -> Response:
        return self.paginated(self.filter_queryset(self.get_queryset()), s.SegmentOutput)

    @extend_schema(responses={200: s.SegmentOutput, **ERRORS})
    def retrieve(self, request: Request, pk: str) -> Response:
        """One segment; its ``ETag`` is its ``version``, ready for ``If-Match`` on a change."""
        segment = self.get_object()
        return Response(s.SegmentOutput(segment).data, headers={"ETag": f'"{segment.version}"'})

    @extend_schema(request=s.SegmentCreateInput, responses={201: s.SegmentOutput, **ERRORS})
    def create(self, request: Request) -> Response:
        data: dict[str, Any] = self.validated(s.SegmentCreateInput)
        environment = environment_get_for_user(user=request.user, pk=data.pop("environment"))
        segment = services.segment_create(actor=request.user, environment=environment, **data)
        return Response(s.SegmentOutput(segment).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        request=s.SegmentUpdateInput,
        parameters=[IF_MATCH],
        responses={200: s.SegmentOutput, **CHANGE_ERRORS},
    )
    def partial_update(self, request: Request, pk: str) -> Response:
        """Change some fields; 409 if ``expected_version``/``If-Match`` is stale."""
        data: dict[str, Any] = self.validated(s.SegmentUpdateInput)
        seen = expected_version(request, data)
        segment = services.segment_update(
            actor=request.user, segment=self.get_object(), expected_version=seen, **data
        )
        return Response(s.SegmentOutput(segment).data)

    @extend_schema(
        request=s.SegmentDeleteInput,
        parameters=[OpenApiParameter("reason", str), IF_MATCH],
        responses={204: None, **CHANGE_ERRORS},
    )
    def destroy(self, request: Request, pk: str) -> Response:
        """Delete the segment; 409 if ``expected_version``/``If-Match`` is stale."""
        segment = self.get_object()
        data: dict[str, Any] = self.validated(s.SegmentDeleteInput)
        seen = expected_version(request, data)
        services.segment_delete(
            actor=request.user,
            segment=segment,
            reason=data.get("reason") or request.query_params.get("reason", ""),
            expected_version=seen,
        )
        return Response(status=status.HTTP_204_NO_CONTENT)


class KillSwitchViewSet(ScopedViewSet):
    """Kill switches: engaged with a reason, released only explicitly (with a reason)."""

    permission_model = KillSwitch
    filterset_class = KillSwitchListFilter

    def scoped_queryset(self) -> QuerySet[KillSwitch]:
        return selectors.kill_switch_list_for_user(
            user=self.request.user, action=self.permission_action
        )

    @extend_schema(responses={200: s.KillSwitchOutput(many=True)})
    def list(self, request: Request) -> Response:
        return self.paginated(self.filter_queryset(self.get_queryset()), s.KillSwitchOutput)

    @extend_schema(responses={200: s.KillSwitchOutput, **ERRORS})
    def retrieve(self, request: Request, pk: str) -> Response:
        """One kill switch; its ``ETag`` is its ``version`` (1 engaged, 2 released)."""
        switch = self.get_object()
        return Response(s.KillSwitchOutput(switch).data, headers={"ETag": f'"{switch.version}"'})

    @extend_schema(
        request=s.KillSwitchEngageInput, responses={201: s.KillSwitchEngageOutput, **ERRORS}
    )
    def create(self, request: Request) -> Response:
        """Engage a kill switch. It never releases by itself. The same switch already engaged
        (even by a concurrent request) is a 400 naming it, decided by a database constraint.
        ``warnings`` says in words what looks wrong but is allowed: a tool name or glob that
        matches no tool of the deployed versions it reaches (a pattern may aim at a future
        tool), an agent deployed nowhere."""
        data: dict[str, Any] = self.validated(s.KillSwitchEngageInput)
        agent_id, environment_id, tenant_id = (
            data.pop("agent"),
            data.pop("environment"),
            data.pop("tenant"),
        )
        agent = agent_get_for_user(user=request.user, pk=agent_id) if agent_id else None
        environment = (
            environment_get_for_user(user=request.user, pk=environment_id)
            if environment_id
            else None
        )
        tenant: Tenant | None = (
            tenant_get_for_user(user=request.user, pk=tenant_id) if tenant_id else None
        )
        if tenant is None and data["scope"] != "global":
            tenant = agent.tenant if agent else (environment.tenant if environment else None)
        switch = services.kill_switch_engage(
            actor=request.user, tenant=tenant, agent=agent, environment=environment, **data
        )
        switch.warnings = services.kill_switch_warnings(  # type: ignore[attr-defined]
            kind=switch.kind,
            scope=switch.scope,
            tenant=switch.tenant,
            agent=switch.agent,
            environment=switch.environment,
            tool_pattern=switch.tool_pattern,
        )
        return Response(s.KillSwitchEngageOutput(switch).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        summary="Release a kill switch",
        request=s.KillSwitchReleaseInput,
        parameters=[IF_MATCH],
        responses={200: s.KillSwitchOutput, **CHANGE_ERRORS},
    )
    @action(detail=True, methods=["post"])
    def release(self, request: Request, pk: str) -> Response:
        """Release with a reason. A switch released meanwhile (by anyone) answers 409 naming
        who released it and when; so does a stale ``expected_version``/``If-Match``."""
        data = self.validated(s.KillSwitchReleaseInput)
        seen = expected_version(request, data)
        switch = services.kill_switch_release(
            actor=request.user, switch=self.get_object(), expected_version=seen, **data
        )
        return Response(s.KillSwitchOutput(switch).data)
