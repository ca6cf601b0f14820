"""Deploy and roll back over the API. Both act on "the current stable version", so both
require the release ``version`` the client read (``expected_version`` or ``If-Match``):
a rollback is not idempotent, and two clients rolling back at once must not both win."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from apps.bundles.models import BundleVersion
from apps.core.api import (
    IF_MATCH,
    ConflictSerializer,
    ErrorSerializer,
    ScopedViewSet,
    expected_version,
)
from apps.tenancy.models import Agent, Environment
from apps.tenancy.selectors import (
    agent_get_for_user,
    environment_get_for_user,
    environment_list_for_user,
)

from .. import selectors, services
from ..models import Deployment
from . import serializers as s

ERRORS = {400: ErrorSerializer, 403: ErrorSerializer, 404: ErrorSerializer}


def _release(agent: Agent, environment: Environment) -> dict[str, Any]:
    plan = selectors.rollback_plan(agent=agent, environment=environment)
    current = plan.current
    return {
        "environment": environment.pk,
        "environment_slug": environment.slug,
        "version": selectors.deployment_sequence(current),
        "stable_version": current.version.number if current else None,
        "kind": current.kind if current else None,
        "deployed_by": current.deployed_by_label if current else None,
        "deployed_at": current.created_at if current else None,
        "revision": current.revision if current else None,
        "rollback_target": plan.target.version.number if plan.target else None,
        "rollback_refusal": plan.refusal,
    }


def _required_version(request: Request, data: dict[str, Any]) -> int:
    seen = expected_version(request, data)
    if seen is None:
        raise ValidationError(
            {
                "expected_version": [
                    "Required: the release `version` you read (GET …/releases/), or If-Match."
                ]
            }
        )
    return seen


class ReleaseViewSet(ScopedViewSet):
    """Per environment of an agent: its stable version; deploy and roll back."""

    # acts on an agent's environments by the deployment permissions: reads need
    # rollouts.view_deployment, deploy and rollback rollouts.add_deployment
    permission_model = Deployment

    def scoped_queryset(self) -> QuerySet[Environment]:
        if getattr(self, "swagger_fake_view", False):
            return Environment.objects.none()
        return environment_list_for_user(user=self.request.user, tenant=self._agent().tenant)

    def _agent(self) -> Agent:
        return agent_get_for_user(user=self.request.user, pk=int(self.kwargs["agent_id"]))

    def _environment(self, agent: Agent) -> Environment:
        environment = environment_get_for_user(
            user=self.request.user, pk=int(self.kwargs["environment_id"])
        )
        if environment.tenant_id != agent.tenant_id:
            raise NotFound("No such environment for this agent.")
        return environment

    @extend_schema(
        summary="The stable version of an agent in each environment",
        responses={200: s.ReleaseOutput(many=True), **ERRORS},
    )
    def list(self, request: Request, agent_id: str) -> Response:
        agent = self._agent()
        return Response(
            s.ReleaseOutput([_release(agent, e) for e in self.get_queryset()], many=True).data
        )

    @extend_schema(
        summary="The stable version of an agent in one environment",
        responses={200: s.ReleaseOutput, **ERRORS},
    )
    def retrieve(self, request: Request, agent_id: str, environment_id: str) -> Response:
        agent = self._agent()
        release = _release(agent, self._environment(agent))
        return Response(s.ReleaseOutput(release).data, headers={"ETag": f'"{release["version"]}"'})

    @extend_schema(
        summary="Deploy a bundle version as the stable version now",
        request=s.DeployInput,
        parameters=[IF_MATCH],
        responses={201: s.ReleaseOutput, **ERRORS, 409: ConflictSerializer},
    )
    def deploy(self, request: Request, agent_id: str, environment_id: str) -> Response:
        agent = self._agent()
        environment = self._environment(agent)
        data = self.validated(s.DeployInput)
        seen = _required_version(request, data)
        try:
            version = BundleVersion.objects.get(agent=agent, number=data["version"])
        except BundleVersion.DoesNotExist:
            raise ValidationError({"version": ["No such version of this agent."]}) from None
        services.deployment_create(
            actor=request.user,
            agent=agent,
            environment=environment,
            version=version,
            reason=data["reason"],
            expected_version=seen,
        )
        return Response(
            s.ReleaseOutput(_release(agent, environment)).data, status=status.HTTP_201_CREATED
        )

    @extend_schema(
        summary="Roll back to the last known-good version before the current one",
        request=s.RollbackInput,
        parameters=[IF_MATCH],
        responses={201: s.ReleaseOutput, **ERRORS, 409: ConflictSerializer},
    )
    def rollback(self, request: Request, agent_id: str, environment_id: str) -> Response:
        """Never to a version that was rolled back from; 400 naming why when no known-good
        version is left; 409 naming who changed the stable version if it moved."""
        agent = self._agent()
        environment = self._environment(agent)
        data = self.validated(s.RollbackInput)
        seen = _required_version(request, data)
        services.deployment_rollback(
            actor=request.user,
            agent=agent,
            environment=environment,
            reason=data["reason"],
            expected_version=seen,
        )
        return Response(
            s.ReleaseOutput(_release(agent, environment)).data, status=status.HTTP_201_CREATED
        )
