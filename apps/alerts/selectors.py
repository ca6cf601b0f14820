"""Reads of alerts, always scoped to the user's tenants (``apps.core.authz.restrict``)."""

from __future__ import annotations

from django.db.models import Prefetch, QuerySet

from apps.core.authz import VIEW, AnyUser, get_restricted, restrict, user_may

from .models import Alert, AlertChannel, AlertDelivery

RECENT_DELIVERIES = 5


def alert_list_for_user(
    *,
    user: AnyUser,
    action: str = VIEW,
    tenant_ids: list[int] | None = None,
    unacknowledged: bool = False,
) -> QuerySet[Alert]:
    """Alerts of the user's tenants (optionally only ``tenant_ids``), newest first."""
    qs = restrict(Alert.objects.select_related("tenant"), user, action)
    if tenant_ids is not None:
        qs = qs.filter(tenant_id__in=tenant_ids)
    if unacknowledged:
        qs = qs.filter(acknowledged_at__isnull=True)
    return qs.order_by("-created_at", "-pk")


def alert_get_for_user(*, user: AnyUser, pk: int, action: str = VIEW) -> Alert:
    """One alert the user may ``action``; ``Http404`` otherwise (never a 403)."""
    return get_restricted(Alert.objects.select_related("tenant"), user, action, pk=pk)


def alert_unacknowledged_count(*, user: AnyUser, tenant_ids: list[int]) -> int:
    """How many alerts of ``tenant_ids`` nobody acknowledged yet (0 without the view role);
    one indexed count (the partial index ``alerts_alert_unacknowledged``)."""
    if not tenant_ids or not user_may(user, "alerts.view_alert"):
        return 0
    return alert_list_for_user(user=user, tenant_ids=tenant_ids, unacknowledged=True).count()


def alert_channel_list_for_user(
    *, user: AnyUser, action: str = VIEW, tenant_ids: list[int] | None = None
) -> QuerySet[AlertChannel]:
    """Alert channels of the user's tenants, by name."""
    qs = restrict(AlertChannel.objects.select_related("tenant"), user, action)
    if tenant_ids is not None:
        qs = qs.filter(tenant_id__in=tenant_ids)
    return qs.order_by("tenant__name", "name", "pk")


def alert_channel_get_for_user(*, user: AnyUser, pk: int, action: str = VIEW) -> AlertChannel:
    """One channel the user may ``action``; ``Http404`` otherwise (never a 403)."""
    return get_restricted(AlertChannel.objects.select_related("tenant"), user, action, pk=pk)


def alert_channels_with_deliveries(
    *, user: AnyUser, tenant_ids: list[int], per_channel: int = RECENT_DELIVERIES
) -> list[AlertChannel]:
    """The channels of ``tenant_ids`` with their last ``per_channel`` deliveries as
    ``channel.recent_deliveries`` (newest first), in two queries: the prefetch is sliced in
    SQL (a window function per channel), so a long delivery history is never loaded."""
    channels: list[AlertChannel] = list(
        alert_channel_list_for_user(user=user, tenant_ids=tenant_ids).prefetch_related(
            Prefetch(
                "deliveries",
                queryset=AlertDelivery.objects.select_related("alert").order_by(
                    "-created_at", "-pk"
                )[:per_channel],
                to_attr="recent_deliveries",
            )
        )
    )
    return channels
