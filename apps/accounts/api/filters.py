"""Query filters of the accounts API lists (runtime tokens); the base classes and the
400-on-a-bad-value rule are in ``apps.core.filters``."""

from __future__ import annotations

from apps.core.filters import FilterSet, IdFilter

from ..models import RuntimeToken


class RuntimeTokenListFilter(FilterSet):
    environment = IdFilter(
        field_name="environment_id", invalid="An environment id.", help_text="environment id"
    )

    class Meta:
        model = RuntimeToken
        fields: list[str] = []
