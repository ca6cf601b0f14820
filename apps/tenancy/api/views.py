from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from controlplane.api import ErrorSerializer, ReasonSerializer, ScopedViewSet

from .. import selectors, services
from ..models import Agent, Environment, Tenant
from . import serializers as s

ERRORS = {400: ErrorSerializer, 403: ErrorSerializer, 404: ErrorSerializer}
ARCHIVED = OpenApiParameter("archived", bool, description="include archived objects")
TENANT = OpenApiParameter("tenant", str, description="tenant id or slug")


def _include_archived(request: Request) -> bool:
    return request.query_params.get("archived", "").lower() in ("1", "true", "yes")


class TenantViewSet(ScopedViewSet):
    def scoped_queryset(self) -> QuerySet[Tenant]:
        return selectors.tenant_list_for_user(
            user=self.request.user,
            include_archived=_include_archived(self.request) or self.action != "list",
        )

    @extend_schema(parameters=[ARCHIVED], responses={200: s.TenantOutput(many=True)})
    def list(self, request: Request) -> Response:
        return self.paginated(self.get_queryset(), s.TenantOutput)

    @extend_schema(responses={200: s.TenantOutput, **ERRORS})
    def retrieve(self, request: Request, pk: str) -> Response:
        return Response(s.TenantOutput(self.get_object()).data)

    @extend_schema(request=s.TenantCreateInput, responses={201: s.TenantOutput, **ERRORS})
    def create(self, request: Request) -> Response:
        tenant = services.tenant_create(actor=request.user, **self.validated(s.TenantCreateInput))
        return Response(s.TenantOutput(tenant).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=s.TenantUpdateInput, responses={200: s.TenantOutput, **ERRORS})
    def partial_update(self, request: Request, pk: str) -> Response:
        tenant = services.tenant_update(
            actor=request.user, tenant=self.get_object(), **self.validated(s.TenantUpdateInput)
        )
        return Response(s.TenantOutput(tenant).data)

    @extend_schema(request=ReasonSerializer, responses={200: s.TenantOutput, **ERRORS})
    @action(detail=True, methods=["post"])
    def archive(self, request: Request, pk: str) -> Response:
        tenant = services.tenant_archive(
            actor=request.user, tenant=self.get_object(), **self.validated(ReasonSerializer)
        )
        return Response(s.TenantOutput(tenant).data)

    @extend_schema(request=ReasonSerializer, responses={200: s.TenantOutput, **ERRORS})
    @action(detail=True, methods=["post"])
    def restore(self, request: Request, pk: str) -> Response:
        tenant = services.tenant_restore(
            actor=request.user, tenant=self.get_object(), **self.validated(ReasonSerializer)
        )
        return Response(s.TenantOutput(tenant).data)


def _tenant_filter(request: Request) -> Tenant | None:
    value = request.query_params.get("tenant")
    if not value:
        return None
    if value.isdigit():
        return selectors.tenant_get_for_user(user=request.user, pk=int(value))
    return selectors.tenant_get_for_user(user=request.user, slug=value)


class AgentViewSet(ScopedViewSet):
    def scoped_queryset(self) -> QuerySet[Agent]:
        return selectors.agent_list_for_user(
            user=self.request.user,
            tenant=_tenant_filter(self.request),
            include_archived=_include_archived(self.request) or self.action != "list",
        )

    @extend_schema(parameters=[TENANT, ARCHIVED], responses={200: s.AgentOutput(many=True)})
    def list(self, request: Request) -> Response:
        return self.paginated(self.get_queryset(), s.AgentOutput)

    @extend_schema(responses={200: s.AgentOutput, **ERRORS})
    def retrieve(self, request: Request, pk: str) -> Response:
        return Response(s.AgentOutput(self.get_object()).data)

    @extend_schema(request=s.AgentCreateInput, responses={201: s.AgentOutput, **ERRORS})
    def create(self, request: Request) -> Response:
        data: dict[str, Any] = self.validated(s.AgentCreateInput)
        tenant = selectors.tenant_get_for_user(user=request.user, pk=data.pop("tenant"))
        agent = services.agent_create(actor=request.user, tenant=tenant, **data)
        return Response(s.AgentOutput(agent).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=s.AgentUpdateInput, responses={200: s.AgentOutput, **ERRORS})
    def partial_update(self, request: Request, pk: str) -> Response:
        agent = services.agent_update(
            actor=request.user, agent=self.get_object(), **self.validated(s.AgentUpdateInput)
        )
        return Response(s.AgentOutput(agent).data)

    @extend_schema(request=ReasonSerializer, responses={200: s.AgentOutput, **ERRORS})
    @action(detail=True, methods=["post"])
    def archive(self, request: Request, pk: str) -> Response:
        agent = services.agent_archive(
            actor=request.user, agent=self.get_object(), **self.validated(ReasonSerializer)
        )
        return Response(s.AgentOutput(agent).data)


class EnvironmentViewSet(ScopedViewSet):
    def scoped_queryset(self) -> QuerySet[Environment]:
        return selectors.environment_list_for_user(
            user=self.request.user,
            tenant=_tenant_filter(self.request),
            include_archived=_include_archived(self.request) or self.action != "list",
        )

    @extend_schema(parameters=[TENANT, ARCHIVED], responses={200: s.EnvironmentOutput(many=True)})
    def list(self, request: Request) -> Response:
        return self.paginated(self.get_queryset(), s.EnvironmentOutput)

    @extend_schema(responses={200: s.EnvironmentOutput, **ERRORS})
    def retrieve(self, request: Request, pk: str) -> Response:
        return Response(s.EnvironmentOutput(self.get_object()).data)

    @extend_schema(request=s.EnvironmentCreateInput, responses={201: s.EnvironmentOutput, **ERRORS})
    def create(self, request: Request) -> Response:
        data: dict[str, Any] = self.validated(s.EnvironmentCreateInput)
        tenant = selectors.tenant_get_for_user(user=request.user, pk=data.pop("tenant"))
        environment = services.environment_create(actor=request.user, tenant=tenant, **data)
        return Response(s.EnvironmentOutput(environment).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=s.EnvironmentUpdateInput, responses={200: s.EnvironmentOutput, **ERRORS})
    def partial_update(self, request: Request, pk: str) -> Response:
        environment = services.environment_update(
            actor=request.user,
            environment=self.get_object(),
            **self.validated(s.EnvironmentUpdateInput),
        )
        return Response(s.EnvironmentOutput(environment).data)

    @extend_schema(request=s.EnvironmentMoveInput, responses={200: s.EnvironmentOutput, **ERRORS})
    @action(detail=True, methods=["post"])
    def move(self, request: Request, pk: str) -> Response:
        environment = services.environment_move(
            actor=request.user,
            environment=self.get_object(),
            **self.validated(s.EnvironmentMoveInput),
        )
        return Response(s.EnvironmentOutput(environment).data)

    @extend_schema(request=ReasonSerializer, responses={200: s.EnvironmentOutput, **ERRORS})
    @action(detail=True, methods=["post"])
    def archive(self, request: Request, pk: str) -> Response:
        environment = services.environment_archive(
            actor=request.user, environment=self.get_object(), **self.validated(ReasonSerializer)
        )
        return Response(s.EnvironmentOutput(environment).data)
