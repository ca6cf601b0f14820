"""Query filters of the rollouts API list; the base classes and the 400-on-a-bad-value rule
are in ``apps.core.filters``."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from apps.core.filters import ChoiceFilter, FilterSet, IdFilter
from apps.tenancy.selectors import agent_get_for_user, environment_get_for_user

from ..models import Deployment, Rollout


class _AgentEnvironmentFilterSet(FilterSet):
    """``agent=<id>`` and ``environment=<id>``, scoped to the caller: one the caller may not
    see is a 404, as for one that does not exist."""

    agent = IdFilter(method="filter_agent", invalid="An agent id.", help_text="agent id")
    environment = IdFilter(
        method="filter_environment", invalid="An environment id.", help_text="environment id"
    )

    def filter_agent(self, qs: QuerySet[Any], name: str, value: int | None) -> QuerySet[Any]:
        if value is None:
            return qs
        return qs.filter(agent=agent_get_for_user(user=self.request.user, pk=value))

    def filter_environment(self, qs: QuerySet[Any], name: str, value: int | None) -> QuerySet[Any]:
        if value is None:
            return qs
        return qs.filter(environment=environment_get_for_user(user=self.request.user, pk=value))


class RolloutListFilter(_AgentEnvironmentFilterSet):
    """``agent=<id>``, ``environment=<id>`` (one the caller may not see is a 404, as for one
    that does not exist), ``state=<state>`` or ``state=active`` (not ended yet)."""

    state = ChoiceFilter(
        method="filter_state",
        choices=[*Rollout.State.choices, ("active", "active")],
        help_text="a state, or active: pending, shadow, canary or paused",
    )

    class Meta:
        model = Rollout
        fields: list[str] = []

    def filter_state(self, qs: QuerySet[Any], name: str, value: str) -> QuerySet[Any]:
        if not value:
            return qs
        if value == "active":
            return qs.filter(state__in=Rollout.ACTIVE)
        return qs.filter(state=value)


class DeploymentListFilter(_AgentEnvironmentFilterSet):
    """``agent=<id>``, ``environment=<id>`` (one the caller may not see is a 404, as for one
    that does not exist), ``state=live|superseded|rolled_back``, ``kind=deploy|rollback``."""

    state = ChoiceFilter(
        choices=Deployment.State.choices,
        help_text="live (what runtimes serve now), superseded (known-good) or rolled_back",
    )
    kind = ChoiceFilter(choices=Deployment.Kind.choices, help_text="deploy or rollback")

    class Meta:
        model = Deployment
        fields: list[str] = []
