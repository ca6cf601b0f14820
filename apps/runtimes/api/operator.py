"""The operator API of the runtime registry: ``GET /api/v1/runtimes/`` (the runtimes and the
agents each serves) and ``GET /api/v1/runtimes/convergence/`` (per environment, how many live
runtimes have applied its revision — per agent with ``?agent=``: only the runtimes that serve
it, and those that reported no agent)."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field
from rest_framework import serializers
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from apps.core.api import ErrorSerializer, ScopedViewSet
from apps.core.filters import FilterSet, IdFilter
from apps.tenancy.models import Agent
from apps.tenancy.selectors import agent_list_for_user, environment_list_for_user

from ..models import RuntimeInstance, serving_q, stale_after
from ..selectors import convergence_for
from ..status import BEHIND, IN_SYNC, NACK, NEW, STALE, runtime_status


class RuntimeListFilter(FilterSet):
    """``environment=<id>``; ``agent=<id>``: the runtimes that count for that agent (those that
    serve it, and those that reported no agent)."""

    environment = IdFilter(
        field_name="environment_id", invalid="Use the environment id.", help_text="environment id"
    )
    agent = IdFilter(
        method="filter_agent",
        invalid="Use the agent id.",
        help_text="agent id: the runtimes that serve it, and those that reported no agent",
    )

    class Meta:
        model = RuntimeInstance
        fields: list[str] = []

    def filter_agent(
        self, queryset: QuerySet[RuntimeInstance], name: str, value: int
    ) -> QuerySet[RuntimeInstance]:
        return queryset.filter(serving_q(value))


class RuntimeOutput(serializers.ModelSerializer):
    """One runtime. ``agents``: the slugs it reported serving; empty with ``serves_all``: it
    reported none, so it counts for every agent of its environment (docs/runtime-api.md)."""

    environment = serializers.IntegerField(source="environment_id")
    environment_slug = serializers.CharField(source="environment.slug")
    agents = serializers.SerializerMethodField()
    serves_all = serializers.SerializerMethodField()
    status = serializers.SerializerMethodField()

    class Meta:
        model = RuntimeInstance
        fields = [
            "id",
            "instance_id",
            "name",
            "environment",
            "environment_slug",
            "agents",
            "serves_all",
            "status",
            "applied_revision",
            "nack_revision",
            "library_version",
            "labels",
            "last_seen_at",
        ]
        read_only_fields = fields

    @extend_schema_field(serializers.ListField(child=serializers.CharField()))
    def get_agents(self, instance: RuntimeInstance) -> list[str]:
        return sorted(a.slug for a in instance.served_agents.all())

    @extend_schema_field(serializers.BooleanField())
    def get_serves_all(self, instance: RuntimeInstance) -> bool:
        return not instance.served_agents.all()

    @extend_schema_field(serializers.ChoiceField(choices=[IN_SYNC, BEHIND, NACK, STALE, NEW]))
    def get_status(self, instance: RuntimeInstance) -> str:
        return runtime_status(
            last_seen_at=instance.last_seen_at,
            last_report=instance.last_report,
            applied_revision=instance.applied_revision,
            nack_revision=instance.nack_revision,
            nack_error=instance.nack_error,
            current_revision=instance.environment.revision,
            now=self.context.get("now") or timezone.now(),
            stale_after=stale_after(),
        ).label


class ConvergenceOutput(serializers.Serializer):
    """How the live runtimes of one environment stand against its revision."""

    environment = serializers.IntegerField(source="environment.pk")
    environment_slug = serializers.CharField(source="environment.slug")
    agent = serializers.CharField(
        source="agent.slug", allow_null=True, default=None, help_text="null: every runtime"
    )
    revision = serializers.IntegerField(help_text="the environment's current revision")
    live = serializers.IntegerField(help_text="live runtimes counted (of the agent, if given)")
    on_revision = serializers.IntegerField(help_text="of them, those that applied `revision`")
    nack = serializers.IntegerField(help_text="of them, those that rejected it")
    stale = serializers.IntegerField(help_text="runtimes without a recent heartbeat, not counted")
    unreported = serializers.IntegerField(
        help_text="of `live`, those that reported no agent (counted for every agent)"
    )
    converged = serializers.BooleanField()


AGENT = OpenApiParameter(
    "agent",
    int,
    description="agent id: count only the runtimes that serve it (and those that reported "
    "no agent, which count for every agent)",
)


class RuntimeViewSet(ScopedViewSet):
    """The registered runtimes of the caller's tenants, and their convergence."""

    permission_model = RuntimeInstance
    filterset_class = RuntimeListFilter

    def scoped_queryset(self) -> QuerySet[RuntimeInstance]:
        return (
            RuntimeInstance.objects.select_related("environment")
            .prefetch_related("served_agents")
            .order_by("environment_id", "name", "instance_id")
        )

    @extend_schema(responses={200: RuntimeOutput(many=True), 400: ErrorSerializer})
    def list(self, request: Request) -> Response:
        return self.paginated(self.filter_queryset(self.get_queryset()), RuntimeOutput)

    @extend_schema(
        summary="How far each environment's runtimes have caught up",
        parameters=[
            OpenApiParameter("environment", int, description="environment id (default: all)"),
            AGENT,
        ],
        responses={200: ConvergenceOutput(many=True), 400: ErrorSerializer, 404: ErrorSerializer},
    )
    def convergence(self, request: Request) -> Response:
        """Per environment the caller may see: live runtimes, how many applied its current
        revision, NACKs and stale ones; with ``?agent=``, for that agent's runtimes only."""
        environments = environment_list_for_user(user=request.user)
        agent: Agent | None = None
        raw_agent, raw_environment = (
            request.query_params.get("agent"),
            request.query_params.get("environment"),
        )
        if raw_agent:
            agent = _by_id(
                agent_list_for_user(user=request.user, include_archived=True), raw_agent, "agent"
            )
            environments = environments.filter(tenant_id=agent.tenant_id)
        if raw_environment:
            environments = environments.filter(pk=_id(raw_environment, "environment"))
        rows = convergence_for(
            environments=environments.order_by("tenant_id", "position"), agent=agent
        )
        page = self.paginate_queryset(rows)
        assert page is not None  # the project paginates every list
        return self.get_paginated_response(ConvergenceOutput(page, many=True).data)


def _id(raw: str, field: str) -> int:
    if not raw.isdigit() or len(raw) > 18:
        raise ValidationError({field: [f"Use the {field} id."]})
    return int(raw)


def _by_id(queryset: QuerySet[Any], raw: str, field: str) -> Any:
    found = queryset.filter(pk=_id(raw, field)).first()
    if found is None:
        raise ValidationError({field: [f"No {field} {raw} among those you may see."]})
    return found
