"""Query filters of the approvals API list (``apps.core.filters``: a bad value is a 400)."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from apps.core.filters import ChoiceFilter, FilterSet, IdFilter, TextFilter

from ..models import RISKS, ApprovalRequest, Status

MAX_AGE_S = 10 * 366 * 24 * 3600  # ten years: older than any request


class ApprovalListFilter(FilterSet):
    """``status``, ``tenant`` (id), ``queue`` (id), ``agent`` (slug), ``tool``, ``risk``,
    ``min_age_s`` (waiting at least this long)."""

    status = ChoiceFilter(
        method="filter_status", choices=Status.choices, help_text="pending, approved, ..."
    )
    tenant = IdFilter(method="filter_tenant", invalid="A tenant id.", help_text="tenant id")
    queue = IdFilter(method="filter_queue", invalid="A queue id.", help_text="queue id")
    agent = TextFilter(method="filter_agent", max_length=100, help_text="agent slug")
    tool = TextFilter(method="filter_tool", max_length=128, help_text="tool name")
    risk = ChoiceFilter(
        method="filter_risk", choices=[(r, r) for r in RISKS], help_text="read, write, critical"
    )
    min_age_s = IdFilter(
        method="filter_age",
        max_value=MAX_AGE_S,  # "now minus" more than this overflows a datetime
        invalid="Whole seconds.",
        help_text="created at least this long ago",
    )

    class Meta:
        model = ApprovalRequest
        fields: list[str] = []

    def filter_status(self, qs: QuerySet[Any], name: str, value: str) -> QuerySet[Any]:
        return qs.filter(status=value) if value else qs

    def filter_tenant(self, qs: QuerySet[Any], name: str, value: int | None) -> QuerySet[Any]:
        return qs if value is None else qs.filter(tenant_id=value)

    def filter_queue(self, qs: QuerySet[Any], name: str, value: int | None) -> QuerySet[Any]:
        return qs if value is None else qs.filter(queue_id=value)

    def filter_agent(self, qs: QuerySet[Any], name: str, value: str) -> QuerySet[Any]:
        return qs.filter(agent__slug=value) if value else qs

    def filter_tool(self, qs: QuerySet[Any], name: str, value: str) -> QuerySet[Any]:
        return qs.filter(tool=value) if value else qs

    def filter_risk(self, qs: QuerySet[Any], name: str, value: str) -> QuerySet[Any]:
        return qs.filter(risk=value) if value else qs

    def filter_age(self, qs: QuerySet[Any], name: str, value: int | None) -> QuerySet[Any]:
        from datetime import timedelta

        from django.utils import timezone

        if value is None:
            return qs
        return qs.filter(created_at__lte=timezone.now() - timedelta(seconds=value))
