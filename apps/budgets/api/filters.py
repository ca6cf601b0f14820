"""Query filters of the budgets API list; the base classes and the 400-on-a-bad-value rule
are in ``apps.core.filters``."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from apps.core.filters import ChoiceFilter, FilterSet, IdFilter
from apps.tenancy.selectors import agent_get_for_user

from ..models import Budget, Scope


class BudgetListFilter(FilterSet):
    """``tenant=<id>``, ``scope=<scope>``, ``agent=<id>`` (one the caller may not see is a
    404, as for one that does not exist)."""

    tenant = IdFilter(method="filter_tenant", invalid="A tenant id.", help_text="tenant id")
    scope = ChoiceFilter(
        method="filter_scope",
        choices=Scope.choices,
        help_text="tenant, agent, tenant_agent or end_user",
    )
    agent = IdFilter(
        method="filter_agent",
        invalid="An agent id.",
        help_text="agent id: the budgets naming this agent (agent and end_user scopes)",
    )

    class Meta:
        model = Budget
        fields: list[str] = []

    def filter_tenant(self, qs: QuerySet[Any], name: str, value: int | None) -> QuerySet[Any]:
        return qs if value is None else qs.filter(tenant_id=value)

    def filter_scope(self, qs: QuerySet[Any], name: str, value: str) -> QuerySet[Any]:
        return qs.filter(scope=value) if value else qs

    def filter_agent(self, qs: QuerySet[Any], name: str, value: int | None) -> QuerySet[Any]:
        if value is None:
            return qs
        return qs.filter(agent=agent_get_for_user(user=self.request.user, pk=value))
