from __future__ import annotations

from collections.abc import Iterable
from typing import Any, cast

from django import forms
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render

from apps.core.authz import VIEW, restrict, tenant_model, visible_tenant_ids
from apps.core.diffs import json_changes
from apps.core.ui import paginate

from .links import target_link, target_links
from .models import AuditEvent
from .selectors import audit_action_choices, audit_checkpoint_latest, audit_event_list


class AuditFilterForm(forms.Form):
    actor = forms.CharField(required=False)
    action = forms.CharField(required=False)
    tenant = forms.TypedChoiceField(required=False, coerce=int, empty_value=None)
    target = forms.CharField(required=False)
    since = forms.DateTimeField(
        required=False, widget=forms.DateTimeInput(attrs={"type": "datetime-local"})
    )
    until = forms.DateTimeField(
        required=False, widget=forms.DateTimeInput(attrs={"type": "datetime-local"})
    )

    def __init__(self, *args: Any, tenants: Iterable[Any] = (), **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        choices = [("", "All tenants")] + [(t.pk, t.name) for t in tenants]
        cast(forms.TypedChoiceField, self.fields["tenant"]).choices = choices


@login_required
def audit_list(request: HttpRequest) -> HttpResponse:
    # Tenants by the kernel's name for the model: audit sits below tenancy (DESIGN.md layers).
    tenants = restrict(tenant_model()._default_manager.order_by("name"), request.user, VIEW)
    form = AuditFilterForm(request.GET or None, tenants=tenants)
    filters = {
        k: v
        for k, v in (form.cleaned_data if form.is_valid() else {}).items()
        if v not in (None, "")
    }
    if "tenant" in filters:
        filters["tenant_id"] = filters.pop("tenant")
    if "action" in filters:
        filters["action_prefix"] = filters.pop("action")
    visible = visible_tenant_ids(request.user)
    events = audit_event_list(user=request.user, **filters)
    query = request.GET.copy()
    query.pop("page", None)
    page = paginate(request, events, per_page=50)
    links = target_links(page.object_list, user=request.user)
    return render(
        request,
        "audit/event_list.html",
        {
            "form": form,
            "page": page,
            "rows": [(event, links.get(event.pk)) for event in page.object_list],
            "actions": audit_action_choices(),
            "query": query.urlencode(),
            # Admins only: a checkpoint covers every tenant's events.
            "latest_checkpoint": audit_checkpoint_latest() if visible is None else None,
        },
    )


@login_required
def audit_detail(request: HttpRequest, pk: int) -> HttpResponse:
    try:
        event = audit_event_list(user=request.user).get(pk=pk)
    except AuditEvent.DoesNotExist:
        raise Http404("No such audit event.") from None
    return render(
        request,
        "audit/event_detail.html",
        {
            "event": event,
            "changes": json_changes(event.before, event.after),
            "target_url": target_link(event, user=request.user),
        },
    )
