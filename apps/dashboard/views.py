"""The operator overview, composed from the other apps' selectors (nothing depends on it)."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from apps.audit.links import target_links
from apps.audit.selectors import audit_event_list
from apps.flags.selectors import kill_switch_list_for_user
from apps.rollouts.selectors import stable_deployments
from apps.runtimes.selectors import convergence_for
from apps.tenancy.context_processors import current_tenant_for
from apps.tenancy.selectors import (
    agent_list_for_user,
    environment_list_for_user,
)


@login_required
def overview(request: HttpRequest) -> HttpResponse:
    """At a glance for the current tenant: engaged kill switches, what each agent runs in each
    environment, whether runtimes have caught up, and the latest changes."""
    tenant = current_tenant_for(request)
    events = list(audit_event_list(user=request.user, tenant_id=tenant.pk if tenant else None)[:10])
    links = target_links(events, user=request.user)
    recent = [(event, links.get(event.pk)) for event in events]
    if tenant is None:
        return render(request, "dashboard/overview.html", {"recent_events": recent})
    agents = list(agent_list_for_user(user=request.user, tenant=tenant))
    environments = list(environment_list_for_user(user=request.user, tenant=tenant))
    stable = {
        (d.agent_id, d.environment_id): d
        for e in environments
        for d in stable_deployments(environment_id=e.pk)
    }
    releases = [
        {"agent": a, "cells": [(e, stable.get((a.pk, e.pk))) for e in environments]} for a in agents
    ]
    return render(
        request,
        "dashboard/overview.html",
        {
            "agents": agents,
            "environments": environments,
            "releases": releases,
            "convergence": convergence_for(environments=environments),
            "kill_switches": list(
                kill_switch_list_for_user(user=request.user, tenant_id=tenant.pk, engaged=True)
            ),
            "recent_events": recent,
        },
    )
