"""PLACEHOLDER for the incident panel (issue 17, part B), so the Overview's links resolve on
this branch; the real ``incident_panel`` replaces this file on merge. Keep it tiny."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from apps.tenancy.selectors import agent_get_for_user, environment_get_for_user


@login_required
def incident_panel(request: HttpRequest, agent_id: int, environment_id: int) -> HttpResponse:
    """Placeholder: names the agent and environment (404 for what the user may not see)."""
    agent = agent_get_for_user(user=request.user, pk=agent_id)
    environment = environment_get_for_user(user=request.user, pk=environment_id)
    return render(
        request,
        "dashboard/incident_placeholder.html",
        {"agent": agent, "environment": environment},
    )
