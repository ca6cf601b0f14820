"""Deploy and roll back over the API. Both act on "the current stable version", so both
require the release ``version`` the client read (``expected_version`` or ``If-Match``):
a rollback is not idempotent, and two clients rolling back at once must not both win."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from apps.core.api import (
    IF_MATCH,
    ConflictSerializer,
    ErrorSerializer,
    ScopedViewSet,
    expected_version,
)
from apps.core.concurrency import StaleVersion
from apps.tenancy.models import Agent, Environment
from apps.tenancy.selectors import (
    agent_get_for_user,
    environment_get_for_user,
    environment_list_for_user,
)

from .. import selectors, services
from ..models import Deployment, Rollout, RolloutPlan
from ..services.rollouts import ANY_ROLLOUT
from . import serializers as s
from .filters import RolloutListFilter
from .lookups import bundle_version_of, required_version

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
        "rollout": _release_rollout(agent, environment),
    }


def _release_rollout(agent: Agent, environment: Environment) -> dict[str, Any] | None:
    running = selectors.rollout_active(agent=agent, environment=environment)
    if running is None:
        return None
    return {
        "id": running.pk,
        "state": running.state,
        "version": running.sequence,
        "candidate_version": running.candidate.number,
        "percentage": running.percentage,
    }


def _required_version(request: Request, data: dict[str, Any]) -> int:
    return required_version(request, data, "the release `version` you read (GET …/releases/)")


class ReleaseViewSet(ScopedViewSet):
    """Per environment of an agent: its stable version; deploy and roll back."""

    # acts on an agent's environments by the deployment permissions: reads need
    # rollouts.view_deployment, deploy and rollback rollouts.add_deployment
    permission_model = Deployment
    # one row per environment of the agent, never paged (the schema said paged: issue 9 net)
    pagination_class = None

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
        responses={200: s.ReleaseWithRolloutOutput(many=True), **ERRORS},
    )
    def list(self, request: Request, agent_id: str) -> Response:
        agent = self._agent()
        return Response(
            s.ReleaseWithRolloutOutput(
                [_release(agent, e) for e in self.get_queryset()], many=True
            ).data
        )

    @extend_schema(
        summary="The stable version of an agent in one environment",
        responses={200: s.ReleaseWithRolloutOutput, **ERRORS},
    )
    def retrieve(self, request: Request, agent_id: str, environment_id: str) -> Response:
        agent = self._agent()
        release = _release(agent, self._environment(agent))
        return Response(
            s.ReleaseWithRolloutOutput(release).data, headers={"ETag": f'"{release["version"]}"'}
        )

    @extend_schema(
        summary="Deploy a bundle version as the stable version now",
        description="Refused with 422 (one line per missing or short evaluation under "
        "`errors.version`, the gate under `gate`) when the version does not meet the "
        "environment's promotion gate; an Admin may pass it with `override_reason` "
        "(audited; 403 for anyone else). Same as `POST /api/v1/deployments/`.",
        request=s.DeployInput,
        parameters=[IF_MATCH],
        responses={
            201: s.ReleaseWithRolloutOutput,
            **ERRORS,
            409: ConflictSerializer,
            422: s.GateRefusalSerializer,
        },
    )
    def deploy(self, request: Request, agent_id: str, environment_id: str) -> Response:
        agent = self._agent()
        environment = self._environment(agent)
        data = self.validated(s.DeployInput)
        seen = _required_version(request, data)
        version = bundle_version_of(agent, data["version"])
        services.deployment_create(
            actor=request.user,
            agent=agent,
            environment=environment,
            version=version,
            reason=data["reason"],
            expected_version=seen,
            override_reason=data["override_reason"],
        )
        return Response(
            s.ReleaseWithRolloutOutput(_release(agent, environment)).data,
            status=status.HTTP_201_CREATED,
        )

    @extend_schema(
        summary="Roll back: the running rollout, or else the stable version",
        description="The on-call's one button. While a rollout runs, it is rolled back (the "
        "candidate leaves every runtime, stable stays) and `expected_version` is the "
        "rollout's `version` (`rollout.version` in the release); otherwise the stable "
        "version goes back to the last known-good one and `expected_version` is the "
        "release `version`. `rolled_back` says which happened; `rollback_revision` is the "
        "environment revision every runtime must reach.",
        request=s.RollbackInput,
        parameters=[IF_MATCH],
        responses={201: s.ReleaseRollbackOutput, **ERRORS, 409: ConflictSerializer},
    )
    def rollback(self, request: Request, agent_id: str, environment_id: str) -> Response:
        """Never to a version that was rolled back from; 400 naming why when no known-good
        version is left; 409 naming who changed the stable version (or the rollout) if it
        moved."""
        agent = self._agent()
        environment = self._environment(agent)
        data = self.validated(s.RollbackInput)
        seen = _required_version(request, data)
        outcome = services.release_rollback(
            actor=request.user,
            agent=agent,
            environment=environment,
            reason=data["reason"],
            expected_version=seen,
            expected_rollout=data.get("rollout", ANY_ROLLOUT),
        )
        body = {
            **_release(agent, environment),
            "rolled_back": "rollout" if outcome.rollout is not None else "stable",
            "rolled_back_rollout": outcome.rollout.pk if outcome.rollout is not None else None,
            "summary": outcome.summary,
            "rollback_revision": outcome.revision,
        }
        return Response(s.ReleaseRollbackOutput(body).data, status=status.HTTP_201_CREATED)


# --------------------------------------------------------------------------- rollouts

CHANGE_ERRORS = {**ERRORS, 409: ConflictSerializer}
ACTION_SUMMARIES = {
    "advance": "Advance to the next step (past the last one: complete)",
    "pause": "Pause: traffic stays as it is, the analysis stops acting",
    "resume": "Resume a paused rollout where it was",
    "abort": "Abort: the candidate leaves every runtime, nothing is judged bad",
    "rollback": "Roll back: the candidate leaves every runtime, judged bad",
    "complete": "Complete now: the candidate becomes the stable version",
    "shrink": "Shrink: back one canary step, paused there",
}


def _action_schema(name: str) -> Any:
    return extend_schema(
        summary=ACTION_SUMMARIES[name],
        request=s.RolloutActionInput,
        parameters=[IF_MATCH],
        responses={200: s.RolloutDetailOutput, **CHANGE_ERRORS},
    )


def _rollout_detail(rollout_id: int) -> Rollout:
    return (
        Rollout.objects.select_related("agent", "environment", "candidate", "baseline")
        .prefetch_related("transitions")
        .get(pk=rollout_id)
    )


class RolloutViewSet(ScopedViewSet):
    """Staged rollouts of a bundle version: start one, read its steps, transitions and
    verdicts, and move it (advance, pause, resume, abort, roll back, complete). Every move
    takes a reason (audited) and the rollout's ``version`` read (``expected_version`` or
    ``If-Match``; stale: 409)."""

    permission_model = Rollout
    filterset_class = RolloutListFilter

    def scoped_queryset(self) -> QuerySet[Rollout]:
        return selectors.rollout_list()

    @extend_schema(
        summary="Rollouts, newest first", responses={200: s.RolloutOutput(many=True), **ERRORS}
    )
    def list(self, request: Request) -> Response:
        return self.paginated(self.filter_queryset(self.get_queryset()), s.RolloutOutput)

    @extend_schema(
        summary="A rollout: its plan, step, transitions and latest verdicts",
        responses={200: s.RolloutDetailOutput, **ERRORS},
    )
    def retrieve(self, request: Request, pk: str) -> Response:
        rollout = _rollout_detail(self.get_object().pk)
        return Response(
            s.RolloutDetailOutput(rollout).data, headers={"ETag": f'"{rollout.sequence}"'}
        )

    @extend_schema(
        summary="Start a rollout of a bundle version to an agent in an environment",
        description="Gates first: the environment's promotion gate, and for an environment "
        "with a predecessor a completed rollout there (or being stable there). An Admin may "
        "pass a failing gate with `override_reason` (403 for anyone else). A gate that "
        "refuses answers 422 with one line per unmet requirement under `errors.candidate`. "
        "One rollout at a time per agent and environment. The stable version is the baseline.",
        request=s.RolloutStartInput,
        responses={201: s.RolloutDetailOutput, **ERRORS, 422: s.GateRefusalSerializer},
    )
    def create(self, request: Request) -> Response:
        data = self.validated(s.RolloutStartInput)
        agent = agent_get_for_user(user=request.user, pk=data["agent"])
        environment = environment_get_for_user(user=request.user, pk=data["environment"])
        if environment.tenant_id != agent.tenant_id:
            raise ValidationError({"environment": ["Choose an environment of the agent's tenant."]})
        candidate = bundle_version_of(agent, data["version"])
        rollout = services.rollout_start(
            actor=request.user,
            agent=agent,
            environment=environment,
            candidate=candidate,
            reason=data["reason"],
            override_reason=data["override_reason"],
            stickiness=data["stickiness"],
            constraints=[dict(c) for c in data.get("constraints") or []],
        )
        return Response(
            s.RolloutDetailOutput(_rollout_detail(rollout.pk)).data,
            status=status.HTTP_201_CREATED,
            headers={"ETag": f'"{rollout.sequence}"'},
        )

    def _move(self, request: Request, event: str) -> Response:
        rollout = self.get_object()
        data = self.validated(s.RolloutActionInput)
        seen = expected_version(request, data)
        result = services.rollout_transition(
            actor=request.user,
            rollout_id=rollout.pk,
            event=event,
            reason=data["reason"],
            expected_version=seen,
        )
        moved = _rollout_detail(result.rollout.pk)
        return Response(s.RolloutDetailOutput(moved).data, headers={"ETag": f'"{moved.sequence}"'})

    @_action_schema("advance")
    @action(detail=True, methods=["post"])
    def advance(self, request: Request, pk: str) -> Response:
        """400 when the state machine forbids it (e.g. a completed rollout)."""
        return self._move(request, Rollout.Event.ADVANCE)

    @_action_schema("pause")
    @action(detail=True, methods=["post"])
    def pause(self, request: Request, pk: str) -> Response:
        return self._move(request, Rollout.Event.PAUSE)

    @_action_schema("resume")
    @action(detail=True, methods=["post"])
    def resume(self, request: Request, pk: str) -> Response:
        return self._move(request, Rollout.Event.RESUME)

    @_action_schema("abort")
    @action(detail=True, methods=["post"])
    def abort(self, request: Request, pk: str) -> Response:
        return self._move(request, Rollout.Event.ABORT)

    @_action_schema("rollback")
    @action(detail=True, methods=["post"])
    def rollback(self, request: Request, pk: str) -> Response:
        return self._move(request, Rollout.Event.ROLLBACK)

    @_action_schema("complete")
    @action(detail=True, methods=["post"])
    def complete(self, request: Request, pk: str) -> Response:
        return self._move(request, Rollout.Event.COMPLETE)

    @_action_schema("shrink")
    @action(detail=True, methods=["post"])
    def shrink(self, request: Request, pk: str) -> Response:
        """The canary goes back to the previous step's share of sessions and stays paused
        there until someone resumes it; 400 at the first step (pause or roll back instead)
        and outside the canary."""
        return self._move(request, Rollout.Event.SHRINK)


# --------------------------------------------------------------------------- plans


def _plan_row(environment: Environment) -> dict[str, Any]:
    document, version = selectors.rollout_plan_of(environment=environment)
    return {
        "environment": environment.pk,
        "environment_slug": environment.slug,
        "version": version,
        "is_default": not RolloutPlan.objects.filter(environment=environment).exists(),
        "plan": document,
    }


class RolloutPlanViewSet(ScopedViewSet):
    """Per environment: the plan its rollouts follow (a rollout keeps the plan it started
    with). Reads need rollouts.view_rolloutplan, a PUT rollouts.change_rolloutplan."""

    permission_model = RolloutPlan

    def scoped_queryset(self) -> QuerySet[Environment]:
        return environment_list_for_user(user=self.request.user)

    def _environment(self) -> Environment:
        return environment_get_for_user(
            user=self.request.user, pk=int(self.kwargs["environment_id"])
        )

    @extend_schema(
        summary="An environment's rollout plan (the default when none was saved)",
        responses={200: s.RolloutPlanOutput, **ERRORS},
    )
    def retrieve(self, request: Request, environment_id: str) -> Response:
        row = _plan_row(self._environment())
        return Response(s.RolloutPlanOutput(row).data, headers={"ETag": f'"{row["version"]}"'})

    @extend_schema(
        summary="Replace an environment's rollout plan",
        description="The whole document (missing fields take their defaults). Errors are "
        "keyed by the plan's dotted paths: `plan.steps.1.percentage`.",
        request=s.RolloutPlanInput,
        parameters=[IF_MATCH],
        responses={200: s.RolloutPlanOutput, **CHANGE_ERRORS},
    )
    def update(self, request: Request, environment_id: str) -> Response:
        environment = self._environment()
        data = self.validated(s.RolloutPlanInput)
        seen = expected_version(request, data)
        try:
            services.rollout_plan_set(
                actor=request.user,
                environment=environment,
                document=data["plan"],
                reason=data["reason"],
                expected_version=seen,
            )
        except StaleVersion:
            raise  # a 409, not a field error (a ValidationError too)
        except DjangoValidationError as exc:
            raise ValidationError(_plan_errors(exc)) from None
        row = _plan_row(environment)
        return Response(s.RolloutPlanOutput(row).data, headers={"ETag": f'"{row["version"]}"'})


def _plan_errors(exc: DjangoValidationError) -> dict[str, list[str]]:
    """The service's errors keyed by the document's paths, under ``plan.`` (the body field
    that holds the document), so a client points at ``plan.steps.1.percentage``."""
    if not hasattr(exc, "error_dict"):
        return {"plan": list(exc.messages)}
    return {
        key if key in ("plan", "reason") else f"plan.{key}": list(messages)
        for key, messages in exc.message_dict.items()
    }
