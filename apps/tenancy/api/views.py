from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from apps.core.api import (
    IF_MATCH,
    ConflictSerializer,
    ErrorSerializer,
    ScopedViewSet,
    expected_version,
)

from .. import selectors, services
from ..models import Agent, Environment, Tenant
from . import serializers as s
from .filters import AgentListFilter, EnvironmentListFilter, TenantListFilter

ERRORS = {400: ErrorSerializer, 403: ErrorSerializer, 404: ErrorSerializer}
# Changes of "the current X": a stale expected_version / If-Match answers 409.
CHANGE_ERRORS = {**ERRORS, 409: ConflictSerializer}


def _versioned(request: Request, data: dict[str, Any]) -> dict[str, Any]:
    """The validated input with ``expected_version`` taken from the body or ``If-Match``."""
    data["expected_version"] = expected_version(request, data)
    return data


def _tagged(data: Any, version: int) -> Response:
    """One object, its ``ETag`` its ``version``, ready for ``If-Match`` on a change."""
    return Response(data, headers={"ETag": f'"{version}"'})


class TenantViewSet(ScopedViewSet):
    """Tenants: the teams or customers whose agents, environments and grants are kept
    apart. Archived tenants are listed only with ``?archived=true``; archiving keeps their
    history and can be undone (``restore``)."""

    permission_model = Tenant
    filterset_class = TenantListFilter

    def scoped_queryset(self) -> QuerySet[Tenant]:
        # Archived ones too: the list leaves them out unless ?archived=true (TenantListFilter).
        return selectors.tenant_list_for_user(
            user=self.request.user, action=self.permission_action, include_archived=True
        )

    @extend_schema(responses={200: s.TenantOutput(many=True)})
    def list(self, request: Request) -> Response:
        return self.paginated(self.filter_queryset(self.get_queryset()), s.TenantOutput)

    @extend_schema(responses={200: s.TenantOutput, **ERRORS})
    def retrieve(self, request: Request, pk: str) -> Response:
        """One tenant; its ``ETag`` is its ``version``, ready for ``If-Match`` on a change."""
        tenant = self.get_object()
        return _tagged(s.TenantOutput(tenant).data, tenant.version)

    @extend_schema(request=s.TenantCreateInput, responses={201: s.TenantOutput, **ERRORS})
    def create(self, request: Request) -> Response:
        tenant = services.tenant_create(actor=request.user, **self.validated(s.TenantCreateInput))
        return Response(s.TenantOutput(tenant).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        request=s.TenantUpdateInput,
        parameters=[IF_MATCH],
        responses={200: s.TenantOutput, **CHANGE_ERRORS},
    )
    def partial_update(self, request: Request, pk: str) -> Response:
        """Change some fields; 409 if ``expected_version``/``If-Match`` is stale."""
        data = _versioned(request, self.validated(s.TenantUpdateInput))
        tenant = services.tenant_update(actor=request.user, tenant=self.get_object(), **data)
        return _tagged(s.TenantOutput(tenant).data, tenant.version)

    @extend_schema(
        summary="Archive a tenant",
        request=s.ArchiveInput,
        parameters=[IF_MATCH],
        responses={200: s.TenantOutput, **CHANGE_ERRORS},
    )
    @action(detail=True, methods=["post"])
    def archive(self, request: Request, pk: str) -> Response:
        """Archive with a reason; 409 if ``expected_version``/``If-Match`` is stale."""
        data = _versioned(request, self.validated(s.ArchiveInput))
        tenant = services.tenant_archive(actor=request.user, tenant=self.get_object(), **data)
        return _tagged(s.TenantOutput(tenant).data, tenant.version)

    @extend_schema(
        summary="Restore an archived tenant",
        request=s.ArchiveInput,
        parameters=[IF_MATCH],
        responses={200: s.TenantOutput, **CHANGE_ERRORS},
    )
    @action(detail=True, methods=["post"])
    def restore(self, request: Request, pk: str) -> Response:
        """Restore with a reason; 409 if ``expected_version``/``If-Match`` is stale."""
        data = _versioned(request, self.validated(s.ArchiveInput))
        tenant = services.tenant_restore(actor=request.user, tenant=self.get_object(), **data)
        return _tagged(s.TenantOutput(tenant).data, tenant.version)


class AgentViewSet(ScopedViewSet):
    """Agents of your tenants: each has its bundle versions, and per environment a stable
    version, rollouts, flags and budgets. Filter by ``?tenant=``; archived agents are listed
    only with ``?archived=true``."""

    permission_model = Agent
    filterset_class = AgentListFilter

    def scoped_queryset(self) -> QuerySet[Agent]:
        # Archived ones too: the list leaves them out unless ?archived=true (AgentListFilter).
        return selectors.agent_list_for_user(
            user=self.request.user, action=self.permission_action, include_archived=True
        )

    @extend_schema(responses={200: s.AgentOutput(many=True)})
    def list(self, request: Request) -> Response:
        return self.paginated(self.filter_queryset(self.get_queryset()), s.AgentOutput)

    @extend_schema(responses={200: s.AgentOutput, **ERRORS})
    def retrieve(self, request: Request, pk: str) -> Response:
        """One agent; its ``ETag`` is its ``version``, ready for ``If-Match`` on a change."""
        agent = self.get_object()
        return _tagged(s.AgentOutput(agent).data, agent.version)

    @extend_schema(request=s.AgentCreateInput, responses={201: s.AgentOutput, **ERRORS})
    def create(self, request: Request) -> Response:
        data: dict[str, Any] = self.validated(s.AgentCreateInput)
        tenant = selectors.tenant_get_for_user(user=request.user, pk=data.pop("tenant"))
        agent = services.agent_create(actor=request.user, tenant=tenant, **data)
        return Response(s.AgentOutput(agent).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        request=s.AgentUpdateInput,
        parameters=[IF_MATCH],
        responses={200: s.AgentOutput, **CHANGE_ERRORS},
    )
    def partial_update(self, request: Request, pk: str) -> Response:
        """Change some fields; 409 if ``expected_version``/``If-Match`` is stale."""
        data = _versioned(request, self.validated(s.AgentUpdateInput))
        agent = services.agent_update(actor=request.user, agent=self.get_object(), **data)
        return _tagged(s.AgentOutput(agent).data, agent.version)

    @extend_schema(
        summary="Archive an agent",
        request=s.ArchiveInput,
        parameters=[IF_MATCH],
        responses={200: s.AgentOutput, **CHANGE_ERRORS},
    )
    @action(detail=True, methods=["post"])
    def archive(self, request: Request, pk: str) -> Response:
        """Archive with a reason; 409 if ``expected_version``/``If-Match`` is stale."""
        data = _versioned(request, self.validated(s.ArchiveInput))
        agent = services.agent_archive(actor=request.user, agent=self.get_object(), **data)
        return _tagged(s.AgentOutput(agent).data, agent.version)

    @extend_schema(
        summary="Restore an archived agent",
        request=s.ArchiveInput,
        parameters=[IF_MATCH],
        responses={200: s.AgentOutput, **CHANGE_ERRORS},
    )
    @action(detail=True, methods=["post"])
    def restore(self, request: Request, pk: str) -> Response:
        """Restore with a reason; 409 if ``expected_version``/``If-Match`` is stale."""
        data = _versioned(request, self.validated(s.ArchiveInput))
        agent = services.agent_restore(actor=request.user, agent=self.get_object(), **data)
        return _tagged(s.AgentOutput(agent).data, agent.version)


class EnvironmentViewSet(ScopedViewSet):
    """Environments of your tenants, in promotion order (development → staging →
    production). Each has its own flags, kill switches, runtime tokens and revision, which
    grows with every change its runtimes must react to. Filter by ``?tenant=``; archived
    environments are listed only with ``?archived=true``."""

    permission_model = Environment
    filterset_class = EnvironmentListFilter

    def scoped_queryset(self) -> QuerySet[Environment]:
        # Archived ones too: the list leaves them out unless ?archived=true (EnvironmentListFilter).
        return selectors.environment_list_for_user(
            user=self.request.user, action=self.permission_action, include_archived=True
        )

    @extend_schema(responses={200: s.EnvironmentOutput(many=True)})
    def list(self, request: Request) -> Response:
        return self.paginated(self.filter_queryset(self.get_queryset()), s.EnvironmentOutput)

    @extend_schema(responses={200: s.EnvironmentOutput, **ERRORS})
    def retrieve(self, request: Request, pk: str) -> Response:
        """One environment; its ``ETag`` is its ``version``, ready for ``If-Match`` on a change."""
        environment = self.get_object()
        return _tagged(s.EnvironmentOutput(environment).data, environment.version)

    @extend_schema(request=s.EnvironmentCreateInput, responses={201: s.EnvironmentOutput, **ERRORS})
    def create(self, request: Request) -> Response:
        data: dict[str, Any] = self.validated(s.EnvironmentCreateInput)
        tenant = selectors.tenant_get_for_user(user=request.user, pk=data.pop("tenant"))
        environment = services.environment_create(actor=request.user, tenant=tenant, **data)
        return Response(s.EnvironmentOutput(environment).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        request=s.EnvironmentUpdateInput,
        parameters=[IF_MATCH],
        responses={200: s.EnvironmentOutput, **CHANGE_ERRORS},
    )
    def partial_update(self, request: Request, pk: str) -> Response:
        """Change some fields; 409 if ``expected_version``/``If-Match`` is stale."""
        data = _versioned(request, self.validated(s.EnvironmentUpdateInput))
        environment = services.environment_update(
            actor=request.user, environment=self.get_object(), **data
        )
        return _tagged(s.EnvironmentOutput(environment).data, environment.version)

    @extend_schema(
        summary="Move an environment one place in the promotion order",
        request=s.EnvironmentMoveInput,
        parameters=[IF_MATCH],
        responses={200: s.EnvironmentOutput, **CHANGE_ERRORS},
    )
    @action(detail=True, methods=["post"])
    def move(self, request: Request, pk: str) -> Response:
        """Swap with a neighbour; 409 if ``expected_version``/``If-Match`` (of the moved
        environment) is stale."""
        data = _versioned(request, self.validated(s.EnvironmentMoveInput))
        environment = services.environment_move(
            actor=request.user, environment=self.get_object(), **data
        )
        return _tagged(s.EnvironmentOutput(environment).data, environment.version)

    @extend_schema(
        summary="Archive an environment",
        request=s.ArchiveInput,
        parameters=[IF_MATCH],
        responses={200: s.EnvironmentOutput, **CHANGE_ERRORS},
    )
    @action(detail=True, methods=["post"])
    def archive(self, request: Request, pk: str) -> Response:
        """Archive with a reason; 409 if ``expected_version``/``If-Match`` is stale."""
        data = _versioned(request, self.validated(s.ArchiveInput))
        environment = services.environment_archive(
            actor=request.user, environment=self.get_object(), **data
        )
        return _tagged(s.EnvironmentOutput(environment).data, environment.version)

    @extend_schema(
        summary="Restore an archived environment",
        request=s.ArchiveInput,
        parameters=[IF_MATCH],
        responses={200: s.EnvironmentOutput, **CHANGE_ERRORS},
    )
    @action(detail=True, methods=["post"])
    def restore(self, request: Request, pk: str) -> Response:
        """Restore with a reason, last in the promotion order if its place was taken; 409 if
        ``expected_version``/``If-Match`` is stale."""
        data = _versioned(request, self.validated(s.ArchiveInput))
        environment = services.environment_restore(
            actor=request.user, environment=self.get_object(), **data
        )
        return _tagged(s.EnvironmentOutput(environment).data, environment.version)
