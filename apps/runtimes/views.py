from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.cache import never_cache

from apps.accounts.models import RuntimeToken
from apps.accounts.runtime_tokens import runtime_token_create, runtime_token_revoke
from apps.accounts.selectors import runtime_token_list
from apps.core.authz import requires
from apps.core.input_guards import is_digits
from apps.core.ui import Confirmation, call_service, confirm_with_reason, local_url
from apps.tenancy.context_processors import current_tenant_for
from apps.tenancy.models import Agent
from apps.tenancy.selectors import (
    agent_get_for_user,
    agent_list_for_user,
    environment_get_for_user,
    environment_list_for_user,
)

from . import selectors
from .forms import RuntimeTokenForm


def _environments(request: HttpRequest):  # type: ignore[no-untyped-def]
    tenant = current_tenant_for(request)
    return tenant, (environment_list_for_user(user=request.user, tenant=tenant) if tenant else [])


def _agent_of(request: HttpRequest, environment: Any | None = None) -> Agent | None:
    """The agent named by ``?agent=<id>`` (one the user may see, of ``environment``'s tenant
    when given), or None for every agent; an unknown or foreign id is a 404."""
    raw = request.GET.get("agent", "")
    if not raw:
        return None
    if not is_digits(raw):
        raise Http404("No such agent.")
    agent = agent_get_for_user(user=request.user, pk=int(raw))
    if environment is not None and agent.tenant_id != environment.tenant_id:
        raise Http404("No such agent.")
    return agent


@login_required
def runtime_overview(request: HttpRequest) -> HttpResponse:
    """Every environment's runtimes, live; ``?agent=<id>`` keeps the runtimes that count for
    one agent (those serving it, and those that reported no agent)."""
    tenant, environments = _environments(request)
    tokens = runtime_token_list(tenant_ids=[tenant.pk]) if tenant else []
    agents = list(agent_list_for_user(user=request.user, tenant=tenant)) if tenant else []
    agent = _agent_of(request)
    if agent is not None and (tenant is None or agent.tenant_id != tenant.pk):
        raise Http404("No such agent.")
    return render(
        request,
        "runtimes/overview.html",
        {
            "convergence": selectors.convergence_for(environments=environments, agent=agent),
            "tokens": tokens,
            "agents": agents,
            "agent": agent,
        },
    )


@login_required
def runtime_environment_live(request: HttpRequest, pk: int) -> HttpResponse:
    """The live part of an environment's runtime list (htmx polls it); ``?agent=<id>``: only
    the runtimes that count for that agent."""
    environment = environment_get_for_user(user=request.user, pk=pk)
    agent = _agent_of(request, environment)
    return render(
        request,
        "runtimes/_environment.html",
        {
            "c": selectors.convergence_for(environments=[environment], agent=agent)[0],
            "rows": selectors.runtime_rows(environment=environment, agent=agent),
            "agent": agent,
            "rendered_at": timezone.now(),
        },
    )


@login_required
def convergence_badge(request: HttpRequest, pk: int) -> HttpResponse:
    """The "287/300 on revision 42" summary shown on agent and environment pages (htmx);
    ``?agent=<id>`` counts the runtimes of that agent only."""
    environment = environment_get_for_user(user=request.user, pk=pk)
    agent = _agent_of(request, environment)
    return render(
        request,
        "runtimes/_convergence_badge.html",
        {"c": selectors.convergence_for(environments=[environment], agent=agent)[0]},
    )


@login_required
def propagation(request: HttpRequest) -> HttpResponse:
    """How far a revision has reached: used by kill switch and deploy pages (htmx).
    ``?agent=<id>``: only the runtimes that count for that agent (an agent's kill switch)."""
    try:
        environment = environment_get_for_user(
            user=request.user, pk=int(request.GET.get("environment", ""))
        )
        revision = int(request.GET.get("revision", ""))
    except ValueError:
        raise Http404("Say which environment and revision.") from None
    agent = _agent_of(request, environment)
    return render(
        request,
        "runtimes/_propagation.html",
        {
            "p": selectors.propagation_of(environment=environment, revision=revision, agent=agent),
        },
    )


@never_cache  # shows a secret once: no copy in any cache or history
@login_required
@requires("accounts.add_runtimetoken", "Your role does not allow creating runtime tokens.")
def runtime_token_new(request: HttpRequest) -> HttpResponse:
    tenant, environments = _environments(request)
    if tenant is None:
        raise Http404("Choose a tenant first.")
    agents = agent_list_for_user(user=request.user, tenant=tenant)
    form = RuntimeTokenForm(request.POST or None, environments=environments, agents=agents)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        environment = environment_get_for_user(user=request.user, pk=data["environment"])
        agent = agent_get_for_user(user=request.user, pk=data["agent"]) if data["agent"] else None
        expires_at = (
            timezone.now() + timedelta(days=data["expires_in_days"])
            if data["expires_in_days"]
            else None
        )
        created = call_service(
            form,
            lambda: runtime_token_create(
                actor=request.user,
                tenant=tenant,
                environment=environment,
                agent=agent,
                name=data["name"],
                expires_at=expires_at,
                reason=data["reason"],
            ),
        )
        if created is not None:
            token, raw = created
            return render(request, "runtimes/token_created.html", {"token": token, "raw": raw})
    return render(
        request,
        "tenancy/form.html",
        {"form": form, "title": f"New runtime token for {tenant.name}"},
    )


@login_required
def runtime_token_revoke_view(request: HttpRequest, pk: int) -> HttpResponse:
    """Cut a (compromised) runtime off: its token is refused on its next call. The one
    revoke page, linked from the Runtimes page and the Kill switches page; it goes back to
    ``?next=`` (a local path) when given, else to the Runtimes page."""
    tenant = current_tenant_for(request)
    try:
        token = runtime_token_list(tenant_ids=[tenant.pk] if tenant else []).get(pk=pk)
    except RuntimeToken.DoesNotExist:
        raise Http404("No such runtime token.") from None
    instances = token.instances.count()
    agent = f", agent {token.agent.name}" if token.agent else ""
    return confirm_with_reason(
        request,
        shown=Confirmation(
            title=f"Revoke runtime token {token}?",
            effect=f"Every runtime using it ({instances} registered in "
            f"{token.environment.name}{agent}) is refused on its next call, including open "
            "streams and long-polls at their next change; they keep serving their "
            "last-known-good configuration. This cannot be undone: issue a new token to let a "
            "runtime back in.",
            action_label="Revoke token",
        ),
        act=lambda reason, _version: runtime_token_revoke(
            actor=request.user, token=token, reason=reason
        ),
        done_url=local_url(request, request.GET.get("next"), "runtimes:overview"),
        done_message=f"Runtime token {token} revoked: its next call is refused.",
    )
