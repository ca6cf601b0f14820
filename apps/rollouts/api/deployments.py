"""``/api/v1/deployments/``: the release history of every agent you can see, and deploy and
roll back from a pipeline — the same services, permissions, gate and audit as the UI and the
CLI (docs/releases.md)."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework import status
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from apps.core.api import IF_MATCH, ConflictSerializer, ErrorSerializer, ScopedViewSet
from apps.core.api import expected_version as expected_version_of
from apps.tenancy.models import Agent, Environment
from apps.tenancy.selectors import agent_get_for_user, environment_get_for_user

from .. import selectors, services
from ..models import Deployment
from ..services.rollouts import ANY_ROLLOUT
from . import serializers as s
from .filters import DeploymentListFilter
from .lookups import bundle_version_of, required_version

ERRORS = {400: ErrorSerializer, 403: ErrorSerializer, 404: ErrorSerializer}
GATE_REFUSAL_EXAMPLE = OpenApiExample(
    "Promotion gate not met",
    status_codes=["422"],
    response_only=True,
    value={
        "detail": "Not allowed to deploy v3 in Production yet: golden: no results yet (needs "
        "95%); adversarial: 82% < 90% required (9 of 50 failed). An Admin may override the "
        "gate, giving a reason.",
        "errors": {
            "version": [
                "golden: no results yet (needs 95%)",
                "adversarial: 82% < 90% required (9 of 50 failed)",
            ]
        },
        "gate": {
            "environment": "Production",
            "state": "failing",
            "met": False,
            "checks": [],
        },
    },
)


def _deployments() -> QuerySet[Deployment]:
    return Deployment.objects.select_related(
        "agent", "environment", "version", "previous__version"
    ).order_by("-id")


class DeploymentViewSet(ScopedViewSet):
    """The release history of the agents of your tenants (newest first), and the two ways
    to change it: deploy a version now, or roll back. Reads need ``rollouts.view_deployment``;
    deploy and rollback ``rollouts.add_deployment`` (Operators, Admins); deploying past a
    promotion gate that is not met ``rollouts.override_rollout_gate`` (Admins)."""

    permission_model = Deployment
    filterset_class = DeploymentListFilter
    permission_actions = {"rollback": "add"}

    def scoped_queryset(self) -> QuerySet[Deployment]:
        return _deployments()

    def _agent_and_environment(self, data: dict[str, Any]) -> tuple[Agent, Environment]:
        """The body's agent and environment, scoped to the caller's tenants: one that does
        not exist and another tenant's are the same 404 (as for the rollouts API)."""
        agent = agent_get_for_user(user=self.request.user, pk=data["agent"])
        environment = environment_get_for_user(user=self.request.user, pk=data["environment"])
        if environment.tenant_id != agent.tenant_id:
            raise ValidationError({"environment": ["Choose an environment of the agent's tenant."]})
        return agent, environment

    @extend_schema(
        summary="Deployments: the release history, newest first",
        description="Every change of the stable version of the agents in your tenants. "
        "Filter by `agent`, `environment`, `state` (`live` rows are what runtimes serve now) "
        "or `kind`. A live row's `sequence` is the `expected_version` of the next deploy or "
        "rollback of that agent and environment.",
        responses={200: s.DeploymentOutput(many=True), **ERRORS},
    )
    def list(self, request: Request) -> Response:
        return self.paginated(self.filter_queryset(self.get_queryset()), s.DeploymentOutput)

    @extend_schema(
        summary="One deployment",
        responses={200: s.DeploymentOutput, **ERRORS},
    )
    def retrieve(self, request: Request, pk: str) -> Response:
        return Response(s.DeploymentOutput(self.get_object()).data)

    @extend_schema(
        summary="Deploy a bundle version as the stable version now",
        description="Makes `version` (N of vN) the stable version of `agent` in "
        "`environment` on every runtime at once (use a rollout to go gradually); the "
        "deployment it replaces becomes `superseded`, a known-good rollback target.\n\n"
        "**Promotion gate.** If the environment has a gate the version does not meet — an "
        "evaluation suite with no results, or a pass rate under its minimum — the answer is "
        "**422** with one line per suite under `errors.version` and the gate's state under "
        "`gate`, and nothing changes. An Admin may deploy anyway with `override_gate: true` "
        "and an `override_reason` (kept in the deployment and its audit event); anyone else "
        "sending the override gets 403.\n\n"
        "**Concurrency.** Deploys and rollbacks of one agent and environment take turns. "
        "Send the live deployment's `sequence` as `expected_version` (or `If-Match`) to be "
        "refused with 409 if someone changed the stable version since you read it; a repeat "
        "of a deploy that succeeded is refused (400: already stable), never applied twice. "
        "Refused while a rollout of the agent runs there (400).",
        request=s.DeploymentCreateInput,
        parameters=[IF_MATCH],
        responses={
            201: s.DeploymentOutput,
            **ERRORS,
            409: ConflictSerializer,
            422: s.GateRefusalSerializer,
        },
        examples=[GATE_REFUSAL_EXAMPLE],
    )
    def create(self, request: Request) -> Response:
        data = self.validated(s.DeploymentCreateInput)
        seen = expected_version_of(request, data)
        agent, environment = self._agent_and_environment(data)
        version = bundle_version_of(agent, data["version"])
        deployment = services.deployment_create(
            actor=request.user,
            agent=agent,
            environment=environment,
            version=version,
            reason=data["reason"],
            expected_version=seen,
            override_reason=data["override_reason"] if data["override_gate"] else "",
        )
        return Response(
            s.DeploymentOutput(_deployments().get(pk=deployment.pk)).data,
            status=status.HTTP_201_CREATED,
            headers={"ETag": f'"{deployment.sequence}"'},
        )

    @extend_schema(
        summary="Roll back: the running rollout, else the stable version",
        description="The on-call's one button, never refused by a promotion gate (the "
        "version it goes back to served here before). While a rollout of the agent runs in "
        "the environment it is rolled back (the candidate leaves every runtime, stable "
        "stays) and `expected_version` is the rollout's `version`; otherwise the stable "
        "version goes back to the last known-good one — or to `version`, an earlier "
        "known-good one — and `expected_version` is the live deployment's `sequence`. A "
        "version that was rolled back from is never a target again. `expected_version` (or "
        "`If-Match`) is required: two clients rolling back at once must not go back two "
        "versions (409 for the second).",
        request=s.DeploymentRollbackInput,
        parameters=[IF_MATCH],
        responses={201: s.DeploymentRollbackOutput, **ERRORS, 409: ConflictSerializer},
    )
    @action(detail=False, methods=["post"])
    def rollback(self, request: Request) -> Response:
        data = self.validated(s.DeploymentRollbackInput)
        seen = required_version(
            request,
            data,
            "the live deployment's `sequence` you read (GET "
            "/api/v1/deployments/?state=live&agent=…&environment=…)",
        )
        agent, environment = self._agent_and_environment(data)
        number = data.get("version")
        if number is not None:
            deployment = services.deployment_rollback(
                actor=request.user,
                agent=agent,
                environment=environment,
                reason=data["reason"],
                expected_version=seen,
                target_version=bundle_version_of(agent, number),
            )
            outcome = services.RollbackOutcome(deployment.revision, deployment=deployment)
        else:
            outcome = services.release_rollback(
                actor=request.user,
                agent=agent,
                environment=environment,
                reason=data["reason"],
                expected_version=seen,
                expected_rollout=ANY_ROLLOUT,
            )
        body: dict[str, Any] = {
            "rolled_back": "rollout" if outcome.rollout is not None else "stable",
            "rollout": outcome.rollout.pk if outcome.rollout is not None else None,
            "summary": outcome.summary,
            "revision": outcome.revision,
        }
        live = selectors.deployment_current(agent=agent, environment=environment)
        assert live is not None  # a rollback leaves (or keeps) a live deployment
        body["deployment"] = _deployments().get(pk=live.pk)
        return Response(s.DeploymentRollbackOutput(body).data, status=status.HTTP_201_CREATED)
