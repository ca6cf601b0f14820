"""Query filters of the flags API lists (flags, segments, kill switches); the base classes and
the 400-on-a-bad-value rule are in ``apps.core.filters``."""

from __future__ import annotations

from typing import Any

from django.db.models import Q, QuerySet

from apps.core.filters import ChoiceFilter, FilterSet, IdFilter
from apps.tenancy.selectors import environment_get_for_user

from ..models import Flag, KillSwitch, Segment


class EnvironmentFilter(IdFilter):
    """``environment=<id>``: objects of that environment. One the caller may not see is a
    404, the same answer as for one that does not exist."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(invalid="An environment id.", help_text="environment id", **kwargs)

    def filter(self, qs: QuerySet[Any], value: int | None) -> QuerySet[Any]:
        if value is None:
            return qs
        environment = environment_get_for_user(user=self.parent.request.user, pk=value)
        return qs.filter(environment=environment)


class FlagListFilter(FilterSet):
    environment = EnvironmentFilter()

    class Meta:
        model = Flag
        fields: list[str] = []


class SegmentListFilter(FilterSet):
    environment = EnvironmentFilter()

    class Meta:
        model = Segment
        fields: list[str] = []


class KillSwitchListFilter(FilterSet):
    tenant = IdFilter(
        method="filter_tenant",
        invalid="A tenant id.",
        help_text="tenant id: that tenant's switches and the global ones",
    )
    status = ChoiceFilter(
        method="filter_status",
        choices=[("engaged", "engaged"), ("released", "released")],
        help_text="engaged (not released yet) or released",
    )

    class Meta:
        model = KillSwitch
        fields: list[str] = []

    def filter_tenant(
        self, queryset: QuerySet[KillSwitch], name: str, value: int
    ) -> QuerySet[KillSwitch]:
        # A global switch concerns every tenant, so it stays in a tenant's list.
        return queryset.filter(Q(tenant__isnull=True) | Q(tenant_id=value))

    def filter_status(
        self, queryset: QuerySet[KillSwitch], name: str, value: str
    ) -> QuerySet[KillSwitch]:
        return queryset.filter(released_at__isnull=value == "engaged")
