"""Query filters of the tenancy API lists (tenants, agents, environments); the base classes and
the 400-on-a-bad-value rule are in ``apps.core.filters``."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from apps.core.filters import BooleanFilter, FilterSet, TextFilter
from apps.core.input_guards import is_digits

from .. import selectors
from ..models import Agent, Environment, Tenant


class IncludeArchivedFilter(BooleanFilter):
    """``archived=true`` lists archived objects too; absent or false, only active ones.
    Unlike other filters it acts when absent: a list leaves out what is archived."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(help_text="include archived objects", **kwargs)

    def filter(self, qs: QuerySet[Any], value: bool | None) -> QuerySet[Any]:
        return qs if value else qs.filter(archived_at__isnull=True)


class TenantFilter(TextFilter):
    """``tenant=<id or slug>``: objects of that tenant. A tenant the caller may not see is a
    404, the same answer as for one that does not exist."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(help_text="tenant id or slug", **kwargs)

    def tenant(self, value: str) -> Tenant | None:
        """The tenant ``value`` names, seen by the request's user; None when not given.
        Raises ``Http404`` when the user sees no such tenant."""
        if not value:
            return None
        user = self.parent.request.user
        if is_digits(value):
            return selectors.tenant_get_for_user(user=user, pk=int(value))
        return selectors.tenant_get_for_user(user=user, slug=value)

    def filter(self, qs: QuerySet[Any], value: str | None) -> QuerySet[Any]:
        tenant = self.tenant(value or "")
        return qs if tenant is None else qs.filter(tenant=tenant)


class TenantListFilter(FilterSet):
    archived = IncludeArchivedFilter()

    class Meta:
        model = Tenant
        fields: list[str] = []


class AgentListFilter(FilterSet):
    tenant = TenantFilter()
    archived = IncludeArchivedFilter()

    class Meta:
        model = Agent
        fields: list[str] = []


class EnvironmentListFilter(FilterSet):
    tenant = TenantFilter()
    archived = IncludeArchivedFilter()

    class Meta:
        model = Environment
        fields: list[str] = []
