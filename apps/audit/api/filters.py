"""Query filters of the audit API lists (events, checkpoints); the base classes and the
400-on-a-bad-value rule are in ``apps.core.filters``. The same filters as the dashboard's
audit page (``apps.audit.views.AuditFilterForm`` through ``audit_event_list``)."""

from __future__ import annotations

from django.db.models import Q, QuerySet

from apps.core.filters import DateTimeFilter, FilterSet, IdFilter, TextFilter

from ..models import AuditCheckpoint, AuditEvent


class AuditEventListFilter(FilterSet):
    actor = TextFilter(
        field_name="actor_label", lookup_expr="icontains", help_text="username contains"
    )
    action = TextFilter(
        field_name="action", lookup_expr="startswith", help_text="action starts with, e.g. agent."
    )
    tenant = IdFilter(field_name="tenant_id", invalid="Use the tenant id.", help_text="tenant id")
    target = TextFilter(
        method="filter_target", help_text="target label contains, or exact id or type"
    )
    since = DateTimeFilter(
        field_name="occurred_at", lookup_expr="gte", help_text="ISO 8601 time, inclusive"
    )
    until = DateTimeFilter(
        field_name="occurred_at", lookup_expr="lte", help_text="ISO 8601 time, inclusive"
    )

    class Meta:
        model = AuditEvent
        fields: list[str] = []

    def filter_target(
        self, queryset: QuerySet[AuditEvent], name: str, value: str
    ) -> QuerySet[AuditEvent]:
        return queryset.filter(
            Q(target_label__icontains=value) | Q(target_id=value) | Q(target_type=value)
        )


class AuditCheckpointListFilter(FilterSet):
    after_event = IdFilter(
        field_name="event_id",
        lookup_expr="gt",
        min_value=0,
        invalid="Use an audit event id (a whole number).",
        help_text="only checkpoints of heads after this event id",
    )

    class Meta:
        model = AuditCheckpoint
        fields: list[str] = []
