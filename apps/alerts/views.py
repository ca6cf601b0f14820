"""The Alerts page: recent alerts of the user's tenants with an acknowledge button, and the
current tenant's alert channels with their last deliveries; forms to add, edit and delete a
channel. The nav badge (unacknowledged alerts) is loaded by htmx from ``badge``, so no other
page pays a query for it."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from apps.core.authz import requires, user_may
from apps.core.ui import (
    Confirmation,
    VersionedReasonForm,
    call_service,
    confirm_with_reason,
    local_url,
    paginate,
    rebase_if_stale,
)
from apps.tenancy.context_processors import current_tenant, current_tenant_for

from . import selectors, services
from .forms import AlertChannelForm
from .models import AlertChannel

VIEW = "alerts.view_alert"


def _tenant_ids(request: HttpRequest) -> list[int]:
    return [t.pk for t in current_tenant(request).get("tenants", [])]


@login_required
@requires(VIEW)
def alert_list(request: HttpRequest) -> HttpResponse:
    show_all = request.GET.get("show") == "all"
    alerts = selectors.alert_list_for_user(
        user=request.user, tenant_ids=_tenant_ids(request), unacknowledged=not show_all
    )
    tenant = current_tenant_for(request)
    channels = (
        selectors.alert_channels_with_deliveries(user=request.user, tenant_ids=[tenant.pk])
        if tenant is not None and user_may(request.user, "alerts.view_alertchannel")
        else []
    )
    return render(
        request,
        "alerts/list.html",
        {"page": paginate(request, alerts), "show_all": show_all, "channels": channels},
    )


@login_required
@requires(VIEW)
@require_GET
def badge(request: HttpRequest) -> HttpResponse:
    """The nav's count of unacknowledged alerts of the user's tenants (an htmx fragment)."""
    count = selectors.alert_unacknowledged_count(user=request.user, tenant_ids=_tenant_ids(request))
    return render(request, "alerts/_badge.html", {"count": count})


@login_required
@requires(VIEW)
@requires("alerts.change_alert", "Your role does not allow acknowledging alerts.")
@require_POST
def acknowledge(request: HttpRequest, pk: int) -> HttpResponse:
    alert = selectors.alert_get_for_user(user=request.user, pk=pk, action="change")
    services.alert_acknowledge(actor=request.user, alert=alert)
    messages.success(request, f"Alert “{alert.title}” acknowledged.")
    return redirect(local_url(request, request.POST.get("next"), reverse("alerts:list")))


@never_cache  # shows a secret once: no copy in any cache or history
@login_required
@requires("alerts.add_alertchannel", "Your role does not allow adding alert channels.")
def channel_create(request: HttpRequest) -> HttpResponse:
    tenant = current_tenant_for(request)
    if tenant is None:
        raise Http404("Choose or create a tenant first.")
    form = AlertChannelForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        created = call_service(
            form,
            lambda: services.alert_channel_create(actor=request.user, tenant=tenant, **data),
        )
        if created is not None:
            channel, raw = created
            return render(request, "alerts/channel_created.html", {"channel": channel, "raw": raw})
    return render(
        request,
        "alerts/channel_form.html",
        {"form": form, "tenant": tenant, "title": f"New alert channel for {tenant.name}"},
    )


@login_required
@requires("alerts.change_alertchannel", "Your role does not allow changing alert channels.")
def channel_edit(request: HttpRequest, pk: int) -> HttpResponse:
    channel = selectors.alert_channel_get_for_user(user=request.user, pk=pk, action="change")
    form = AlertChannelForm(
        request.POST or None,
        editing=True,
        initial={
            "name": channel.name,
            "url": channel.url,
            "kinds": channel.kinds,
            "enabled": channel.enabled,
            "expected_version": channel.version,
        },
    )
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        saved = call_service(
            form,
            lambda: services.alert_channel_update(actor=request.user, channel=channel, **data),
        )
        if saved is not None:
            messages.success(request, f"Alert channel {saved.name} saved.")
            return redirect("alerts:list")
    return render(
        request,
        "alerts/channel_form.html",
        {
            "form": form,
            "tenant": channel.tenant,
            "channel": channel,
            "title": f"Edit alert channel {channel.name}",
        },
    )


@login_required
@requires("alerts.delete_alertchannel", "Your role does not allow deleting alert channels.")
def channel_delete(request: HttpRequest, pk: int) -> HttpResponse:
    channel = selectors.alert_channel_get_for_user(user=request.user, pk=pk, action="delete")

    def shown(channel: AlertChannel) -> Confirmation:
        return Confirmation(
            title=f"Delete alert channel {channel.name}?",
            effect=f"{channel.url} stops receiving {channel.tenant.name}'s alerts at once, "
            "including retries still pending; its delivery log goes too. Alerts stay.",
            action_label="Delete channel",
            version=channel.version,
        )

    return confirm_with_reason(
        request,
        shown=shown(channel),
        act=lambda reason, expected_version: services.alert_channel_delete(
            actor=request.user, channel=channel, reason=reason, expected_version=expected_version
        ),
        done_url="alerts:list",
        done_message=f"Alert channel {channel.name} deleted.",
        reread=lambda: shown(selectors.alert_channel_get_for_user(user=request.user, pk=pk)),
    )


@never_cache  # shows a secret once: no copy in any cache or history
@login_required
@requires("alerts.change_alertchannel", "Your role does not allow changing alert channels.")
def channel_rotate(request: HttpRequest, pk: int) -> HttpResponse:
    """A new signing secret, shown once; the old one stops at once (after a leak)."""
    channel = selectors.alert_channel_get_for_user(user=request.user, pk=pk, action="change")
    form = VersionedReasonForm(request.POST or None, initial={"expected_version": channel.version})
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        rotated = call_service(
            form,
            lambda: services.alert_channel_rotate_secret(
                actor=request.user,
                channel=channel,
                reason=data["reason"],
                expected_version=data["expected_version"],
            ),
        )
        if rotated is not None:
            channel, raw = rotated
            return render(
                request,
                "alerts/channel_created.html",
                {"channel": channel, "raw": raw, "rotated": True},
            )
        channel = selectors.alert_channel_get_for_user(user=request.user, pk=pk)
        rebase_if_stale(form, channel.version)
    return render(
        request,
        "partials/confirm.html",
        {
            "form": form,
            "title": f"New signing secret for alert channel {channel.name}?",
            "effect": f"{channel.url} gets alerts signed with a new secret at once; signatures "
            "made with the old one no longer verify, so update the receiver right away.",
            "action_label": "Rotate secret",
            "danger": True,
        },
    )
