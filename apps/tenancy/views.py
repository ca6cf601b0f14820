from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from apps.core.authz import requires
from apps.core.ui import (
    Confirmation,
    call_service,
    confirm_with_reason,
    local_url,
    paginate,
)

from . import selectors, services
from .context_processors import SESSION_KEY, current_tenant_for
from .forms import (
    AgentEditForm,
    AgentForm,
    EnvironmentEditForm,
    EnvironmentForm,
    TenantEditForm,
    TenantForm,
)
from .models import Agent, Environment, Tenant


def _show_archived(request: HttpRequest) -> bool:
    return request.GET.get("archived") == "1"


def _unless_moot(scope: Tenant | Agent | Environment, *, restoring: bool, effect: str) -> str:
    """The confirmation's effect, or what makes it moot: restoring what is not archived,
    archiving what already is (the service refuses either; the page says so up front)."""
    if restoring and not scope.is_archived:
        return f"{scope.name} is not archived: there is nothing to restore."
    if not restoring and scope.is_archived:
        return f"{scope.name} is already archived."
    return effect


# --------------------------------------------------------------------------- tenants


@login_required
def tenant_list(request: HttpRequest) -> HttpResponse:
    tenants = selectors.tenant_list_for_user(
        user=request.user, include_archived=_show_archived(request)
    )
    q = request.GET.get("q", "").strip()
    if q:
        tenants = tenants.filter(name__icontains=q) | tenants.filter(slug__icontains=q)
    return render(
        request,
        "tenancy/tenant_list.html",
        {"page": paginate(request, tenants), "q": q, "show_archived": _show_archived(request)},
    )


@login_required
@requires("tenancy.add_tenant")
def tenant_create(request: HttpRequest) -> HttpResponse:
    form = TenantForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        tenant = call_service(
            form, lambda: services.tenant_create(actor=request.user, **form.cleaned_data)
        )
        if tenant is not None:
            request.session[SESSION_KEY] = tenant.slug
            messages.success(request, f"Tenant {tenant.name} created.")
            return redirect("tenancy:tenant_detail", slug=tenant.slug)
    return render(
        request,
        "tenancy/form.html",
        {"form": form, "title": "New tenant", "cancel_url": "tenancy:tenant_list"},
    )


@login_required
def tenant_detail(request: HttpRequest, slug: str) -> HttpResponse:
    tenant = selectors.tenant_get_for_user(user=request.user, slug=slug)
    return render(
        request,
        "tenancy/tenant_detail.html",
        {
            "tenant": tenant,
            "agents": selectors.agent_list_for_user(user=request.user, tenant=tenant),
            "environments": selectors.environment_list_for_user(user=request.user, tenant=tenant),
            "archived_environments": selectors.environment_list_for_user(
                user=request.user, tenant=tenant, include_archived=True
            ).filter(archived_at__isnull=False),
        },
    )


@login_required
@requires("tenancy.change_tenant")
def tenant_edit(request: HttpRequest, slug: str) -> HttpResponse:
    tenant = selectors.tenant_get_for_user(user=request.user, slug=slug, action="change")
    form = TenantEditForm(
        request.POST or None,
        initial={
            "name": tenant.name,
            "time_zone": tenant.time_zone,
            "trace_link_template": tenant.trace_link_template,
            "expected_version": tenant.version,
        },
    )
    if (
        request.method == "POST"
        and form.is_valid()
        and call_service(
            form,
            lambda: services.tenant_update(actor=request.user, tenant=tenant, **form.cleaned_data),
        )
        is not None
    ):
        messages.success(request, "Tenant saved.")
        return redirect("tenancy:tenant_detail", slug=tenant.slug)
    return render(request, "tenancy/form.html", {"form": form, "title": f"Edit {tenant.name}"})


@login_required
@requires("tenancy.change_tenant")
def tenant_archive(request: HttpRequest, slug: str) -> HttpResponse:
    tenant = selectors.tenant_get_for_user(user=request.user, slug=slug, action="change")
    return confirm_with_reason(
        request,
        shown=Confirmation(
            title=f"Archive {tenant.name}?",
            effect=_unless_moot(
                tenant,
                restoring=False,
                effect=f"{tenant.name} disappears from lists and takes no new agents or "
                "environments; its runtime tokens are refused and its running rollouts are "
                "paused. Its history stays; you can restore it.",
            ),
            action_label="Archive tenant",
            version=tenant.version,
        ),
        act=lambda reason, expected_version: services.tenant_archive(
            actor=request.user, tenant=tenant, reason=reason, expected_version=expected_version
        ),
        done_url="tenancy:tenant_list",
        done_message=f"{tenant.name} archived.",
    )


@login_required
@requires("tenancy.change_tenant")
def tenant_restore(request: HttpRequest, slug: str) -> HttpResponse:
    tenant = selectors.tenant_get_for_user(user=request.user, slug=slug, action="change")
    return confirm_with_reason(
        request,
        shown=Confirmation(
            title=f"Restore {tenant.name}?",
            effect=_unless_moot(
                tenant,
                restoring=True,
                effect=f"{tenant.name} comes back into lists and its runtime tokens work again; "
                "rollouts paused by the archive stay paused until you resume them.",
            ),
            action_label="Restore tenant",
            danger=False,
            version=tenant.version,
        ),
        act=lambda reason, expected_version: services.tenant_restore(
            actor=request.user, tenant=tenant, reason=reason, expected_version=expected_version
        ),
        done_url="tenancy:tenant_list",
        done_message=f"{tenant.name} restored.",
    )


@login_required
@require_POST
def tenant_switch(request: HttpRequest) -> HttpResponse:
    tenant = selectors.tenant_get_for_user(user=request.user, slug=request.POST.get("tenant", ""))
    request.session[SESSION_KEY] = tenant.slug
    return redirect(local_url(request, request.POST.get("next"), "/"))


# --------------------------------------------------------------------------- agents


@login_required
def agent_list(request: HttpRequest) -> HttpResponse:
    tenant = current_tenant_for(request)
    agents = (
        selectors.agent_list_for_user(
            user=request.user, tenant=tenant, include_archived=_show_archived(request)
        )
        if tenant
        else Agent.objects.none()
    )
    q = request.GET.get("q", "").strip()
    if q:
        agents = agents.filter(name__icontains=q) | agents.filter(slug__icontains=q)
    return render(
        request,
        "tenancy/agent_list.html",
        {
            "page": paginate(request, agents),
            "q": q,
            "show_archived": _show_archived(request),
        },
    )


@login_required
@requires("tenancy.add_agent")
def agent_create(request: HttpRequest) -> HttpResponse:
    tenant = current_tenant_for(request)
    if tenant is None:
        messages.info(request, "Create a tenant first: agents belong to a tenant.")
        return redirect("tenancy:tenant_create")
    form = AgentForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        agent = call_service(
            form,
            lambda: services.agent_create(actor=request.user, tenant=tenant, **form.cleaned_data),
        )
        if agent is not None:
            messages.success(request, f"Agent {agent.name} created.")
            return redirect("tenancy:agent_detail", pk=agent.pk)
    return render(
        request, "tenancy/form.html", {"form": form, "title": f"New agent in {tenant.name}"}
    )


@login_required
def agent_detail(request: HttpRequest, pk: int) -> HttpResponse:
    agent = selectors.agent_get_for_user(user=request.user, pk=pk)
    return render(
        request,
        "tenancy/agent_detail.html",
        {
            "agent": agent,
            "environments": selectors.environment_list_for_user(
                user=request.user, tenant=agent.tenant
            ),
        },
    )


@login_required
@requires("tenancy.change_agent")
def agent_edit(request: HttpRequest, pk: int) -> HttpResponse:
    agent = selectors.agent_get_for_user(user=request.user, pk=pk, action="change")
    form = AgentEditForm(
        request.POST or None,
        initial={
            "name": agent.name,
            "description": agent.description,
            "expected_version": agent.version,
        },
    )
    if (
        request.method == "POST"
        and form.is_valid()
        and call_service(
            form,
            lambda: services.agent_update(actor=request.user, agent=agent, **form.cleaned_data),
        )
        is not None
    ):
        messages.success(request, "Agent saved.")
        return redirect("tenancy:agent_detail", pk=agent.pk)
    return render(request, "tenancy/form.html", {"form": form, "title": f"Edit {agent.name}"})


@login_required
@requires("tenancy.change_agent")
def agent_archive(request: HttpRequest, pk: int) -> HttpResponse:
    agent = selectors.agent_get_for_user(user=request.user, pk=pk, action="change")
    return confirm_with_reason(
        request,
        shown=Confirmation(
            title=f"Archive {agent.name}?",
            effect=_unless_moot(
                agent,
                restoring=False,
                effect=f"{agent.name} ({agent.tenant.name}) disappears from lists and leaves every "
                "runtime's configuration; its runtime tokens are refused, its running rollouts "
                "are paused, and nothing can be pushed, deployed or rolled out for it. Its "
                "history stays; you can restore it.",
            ),
            action_label="Archive agent",
            version=agent.version,
        ),
        act=lambda reason, expected_version: services.agent_archive(
            actor=request.user, agent=agent, reason=reason, expected_version=expected_version
        ),
        done_url="tenancy:agent_list",
        done_message=f"{agent.name} archived.",
    )


@login_required
@requires("tenancy.change_agent")
def agent_restore(request: HttpRequest, pk: int) -> HttpResponse:
    agent = selectors.agent_get_for_user(user=request.user, pk=pk, action="change")
    return confirm_with_reason(
        request,
        shown=Confirmation(
            title=f"Restore {agent.name}?",
            effect=_unless_moot(
                agent,
                restoring=True,
                effect=f"{agent.name} comes back into lists and into the configuration of every "
                "active environment where it has a stable version; its runtime tokens work again. "
                "Rollouts paused by the archive stay paused until you resume them.",
            ),
            action_label="Restore agent",
            danger=False,
            version=agent.version,
        ),
        act=lambda reason, expected_version: services.agent_restore(
            actor=request.user, agent=agent, reason=reason, expected_version=expected_version
        ),
        done_url=f"/agents/{agent.pk}/",
        done_message=f"{agent.name} restored.",
    )


# --------------------------------------------------------------------------- environments


@login_required
@requires("tenancy.add_environment")
def environment_create(request: HttpRequest, slug: str) -> HttpResponse:
    tenant = selectors.tenant_get_for_user(user=request.user, slug=slug)
    form = EnvironmentForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        environment = call_service(
            form,
            lambda: services.environment_create(
                actor=request.user, tenant=tenant, **form.cleaned_data
            ),
        )
        if environment is not None:
            messages.success(request, f"Environment {environment.name} created.")
            return redirect("tenancy:tenant_detail", slug=tenant.slug)
    return render(
        request, "tenancy/form.html", {"form": form, "title": f"New environment in {tenant.name}"}
    )


@login_required
@requires("tenancy.change_environment")
def environment_edit(request: HttpRequest, pk: int) -> HttpResponse:
    environment = selectors.environment_get_for_user(user=request.user, pk=pk, action="change")
    form = EnvironmentEditForm(
        request.POST or None,
        initial={
            "name": environment.name,
            "is_production": environment.is_production,
            "expected_version": environment.version,
        },
    )
    if (
        request.method == "POST"
        and form.is_valid()
        and call_service(
            form,
            lambda: services.environment_update(
                actor=request.user, environment=environment, **form.cleaned_data
            ),
        )
        is not None
    ):
        messages.success(request, "Environment saved.")
        return redirect("tenancy:tenant_detail", slug=environment.tenant.slug)
    return render(request, "tenancy/form.html", {"form": form, "title": f"Edit {environment.name}"})


@login_required
@require_POST
@requires("tenancy.change_environment")
def environment_move(request: HttpRequest, pk: int) -> HttpResponse:
    environment = selectors.environment_get_for_user(user=request.user, pk=pk, action="change")
    seen = request.POST.get("expected_version", "")
    if not (seen.isascii() and seen.isdigit() and len(seen) <= 9):
        # the version the page showed is required, as on every other versioned form
        messages.error(
            request, "The page did not say which version it showed: reload it and retry."
        )
        return redirect("tenancy:tenant_detail", slug=environment.tenant.slug)
    try:
        services.environment_move(
            actor=request.user,
            environment=environment,
            direction=request.POST.get("direction", ""),
            expected_version=int(seen),
        )
    except ValidationError as exc:
        for message in exc.messages:
            messages.error(request, message)
    return redirect("tenancy:tenant_detail", slug=environment.tenant.slug)


@login_required
@requires("tenancy.change_environment")
def environment_archive(request: HttpRequest, pk: int) -> HttpResponse:
    environment = selectors.environment_get_for_user(user=request.user, pk=pk, action="change")
    return confirm_with_reason(
        request,
        shown=Confirmation(
            title=f"Archive {environment.name} of {environment.tenant.name}?",
            effect=_unless_moot(
                environment,
                restoring=False,
                effect=f"{environment.name} leaves the promotion order; runtimes of it keep their "
                "last configuration, its runtime tokens are refused and its running rollouts are "
                "paused. Its history stays; you can restore it.",
            ),
            action_label="Archive environment",
            version=environment.version,
        ),
        act=lambda reason, expected_version: services.environment_archive(
            actor=request.user,
            environment=environment,
            reason=reason,
            expected_version=expected_version,
        ),
        done_url=f"/tenants/{environment.tenant.slug}/",
        done_message=f"{environment.name} archived.",
    )


@login_required
@requires("tenancy.change_environment")
def environment_restore(request: HttpRequest, pk: int) -> HttpResponse:
    environment = selectors.environment_get_for_user(user=request.user, pk=pk, action="change")
    return confirm_with_reason(
        request,
        shown=Confirmation(
            title=f"Restore {environment.name} of {environment.tenant.name}?",
            effect=_unless_moot(
                environment,
                restoring=True,
                effect=f"{environment.name} comes back "
                + (
                    "last in the promotion order (another environment took its place)"
                    if selectors.environment_place_taken(environment=environment)
                    else "to its place in the promotion order"
                )
                + "; its runtime tokens work again. Rollouts paused by the archive stay paused "
                "until you resume them.",
            ),
            action_label="Restore environment",
            danger=False,
            version=environment.version,
        ),
        act=lambda reason, expected_version: services.environment_restore(
            actor=request.user,
            environment=environment,
            reason=reason,
            expected_version=expected_version,
        ),
        done_url=f"/tenants/{environment.tenant.slug}/",
        done_message=f"{environment.name} restored.",
    )
