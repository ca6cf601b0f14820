"""Query filters of the bundles API lists (promotion gates); the base classes and the
400-on-a-bad-value rule are in ``apps.core.filters``."""

from __future__ import annotations

from apps.core.filters import FilterSet
from apps.tenancy.api.filters import TenantFilter
from apps.tenancy.models import Environment


class PromotionGateListFilter(FilterSet):
    """Filters the environments whose gates are listed."""

    tenant = TenantFilter()

    class Meta:
        model = Environment
        fields: list[str] = []
