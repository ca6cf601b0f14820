"""The operator overview, composed from the other apps' selectors (nothing depends on it)."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import PermissionsMixin
from django.db.models import prefetch_related_objects
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from apps.audit.selectors import audit_event_list
from apps.tenancy.context_processors import current_tenant_for

from .overview import overview_context

LIVE_SECONDS = 15  # how often the live part refreshes (rollups move by the minute)


def _roles_once(request: HttpRequest) -> None:
    # Every selector checks the user's role (``user_role`` reads ``user.groups.all()``):
    # loaded once here rather than once per selector.
    user = request.user
    if isinstance(user, PermissionsMixin):
        # the instance behind the request's lazy user: the selectors read its cache
        prefetch_related_objects([getattr(user, "_wrapped", user)], "groups")


@login_required
def overview(request: HttpRequest) -> HttpResponse:
    """At a glance for the current tenant: one row per agent x environment (stable version,
    candidate and its step, health over the last hour with sparklines, budget burn, pending
    approvals, kill switches, runtime convergence), the incident timeline, and the latest
    changes. The rows and the timeline refresh live (``overview_live``)."""
    _roles_once(request)
    tenant = current_tenant_for(request)
    events = list(audit_event_list(user=request.user, tenant_id=tenant.pk if tenant else None)[:10])
    context = {
        # each links to its audit event, whose page links to the target: deciding here which
        # targets this reader may open costs a query per target type (~20 ms, a fifth of the
        # page; benchmarks.overview), for ten lines below the rows
        "recent_events": [(event, None) for event in events],
        "live_seconds": LIVE_SECONDS,
    }
    if tenant is not None:
        context.update(overview_context(user=request.user, tenant=tenant))
    return render(request, "dashboard/overview.html", context)


@login_required
def overview_live(request: HttpRequest) -> HttpResponse:
    """The Overview's live part alone (rows, timeline, when read), what the page polls every
    ``LIVE_SECONDS``: the page's script swaps each row that does not hold the keyboard focus."""
    _roles_once(request)
    tenant = current_tenant_for(request)
    context = overview_context(user=request.user, tenant=tenant) if tenant is not None else {}
    return render(request, "dashboard/_overview_live.html", context)
