from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from apps.accounts.selectors import user_is_admin
from apps.core.authz import requires, user_may
from apps.core.concurrency import who_and_when
from apps.core.ui import Confirmation, ReasonForm, call_service, confirm_with_reason

from .. import selectors, services
from ..effects import kill_switch_effect, kill_switch_release_effect
from ..forms import KillSwitchForm
from ..models import KillSwitch
from ..unleash import kill_feature_name
from ._common import tenant_environments


def _propagation_rows(
    switch: KillSwitch, environments: dict[int, Any], *, released: bool = False
) -> list[Any]:
    """The environments of the current tenant that carry the switch, with their revision.
    (A global switch reaches other tenants too; their runtimes are not this page's.)"""
    revisions = switch.released_revisions if released else switch.engaged_revisions
    return [(environments[int(k)], int(v)) for k, v in revisions.items() if int(k) in environments]


@login_required
@requires("flags.view_killswitch", "Your role does not allow reading kill switches.")
def kill_switch_list(request: HttpRequest) -> HttpResponse:
    tenant, environments = tenant_environments(request)
    if tenant is None:
        return render(request, "flags/kill_switches.html", {"tab": "kill", "tenant": None})
    ids = {e.pk: e for e in environments}
    engaged = [
        {
            "switch": s,
            "feature": kill_feature_name(
                kind=s.kind,
                agent=s.agent.slug if s.agent else None,
                tool_pattern=s.tool_pattern,
                mode=s.mode,
            ),
            "rows": _propagation_rows(s, ids),
        }
        for s in selectors.kill_switch_list_for_user(
            user=request.user, engaged=True, tenant_id=tenant.pk
        )
    ]
    released = [
        {"switch": s, "rows": _propagation_rows(s, ids, released=True)}
        for s in selectors.kill_switch_list_for_user(
            user=request.user, engaged=False, tenant_id=tenant.pk
        )[:20]
    ]
    can_engage = user_may(request.user, "flags.add_killswitch")
    is_admin = user_is_admin(request.user)
    agents = list(selectors.agents_for_kill_page(user=request.user, tenant_id=tenant.pk))
    return render(
        request,
        "flags/kill_switches.html",
        {
            "tab": "kill",
            "tenant": tenant,
            "environments": environments,
            "engaged": engaged,
            "released": released,
            "engaged_count": len(engaged),
            "agents": agents,
            "tokens": selectors.runtime_tokens_for_kill_page(user=request.user, tenant_id=tenant.pk)
            if user_may(request.user, "accounts.change_runtimetoken")
            else [],
            "can_engage": can_engage,
            "is_admin": is_admin,
            "can_release": user_may(request.user, "flags.change_killswitch"),
            "tool_form": KillSwitchForm(
                initial={"kind": "tool_disabled", "scope": "tenant"},
                agents=agents,
                environments=environments,
                allow_global=is_admin,
            ),
        },
    )


def _targets(
    form: KillSwitchForm, tenant: Any, environments: list[Any], agents: list[Any]
) -> dict[str, Any]:
    data = form.cleaned_data
    agent = next((a for a in agents if a.pk == data.get("agent")), None)
    environment = next((e for e in environments if e.pk == data.get("environment")), None)
    scope = data["scope"]
    return {
        "kind": data["kind"],
        "scope": scope,
        "tenant": None if scope == "global" else tenant,
        "agent": None if scope in ("global", "tenant") else agent,
        "environment": environment if scope == "environment" else None,
        "tool_pattern": data.get("tool_pattern", "").strip()
        if data["kind"] == "tool_disabled"
        else "",
        "mode": data.get("mode", "") if data["kind"] == "agent_mode" else "",
    }


@login_required
@requires("flags.add_killswitch", "Your role does not allow engaging kill switches.")
def kill_switch_engage(request: HttpRequest) -> HttpResponse:
    """The confirmation page: what will be stopped, where, and a required reason. GET states
    the effect (from the Kill switches page's buttons); POST engages exactly what was shown."""
    tenant, environments = tenant_environments(request)
    if tenant is None:
        raise Http404("Choose a tenant first.")
    agents = list(selectors.agents_for_kill_page(user=request.user, tenant_id=tenant.pk))
    posted = request.method == "POST"
    form = KillSwitchForm(
        request.POST if posted else (request.GET or None),
        agents=agents,
        environments=environments,
        allow_global=user_is_admin(request.user),
    )
    effect, targets, warnings = "", None, []
    if form.is_bound and form.is_valid():
        targets = _targets(form, tenant, environments, agents)
        errors = services.kill_switch_validate(**targets)
        for field, field_errors in errors.items():
            form.add_error(field if field in form.fields else None, field_errors)
        if not errors:
            count = len(
                selectors.kill_switch_affected_environments(
                    scope=targets["scope"],
                    tenant_id=tenant.pk,
                    environment_id=targets["environment"].pk if targets["environment"] else None,
                )
            )
            effect = kill_switch_effect(environments=count, **targets)
            warnings = services.kill_switch_warnings(**targets)
    reason_form = ReasonForm(request.POST if posted and effect else None)
    if posted and effect and targets is not None and reason_form.is_valid():
        switch = call_service(
            reason_form,
            lambda: services.kill_switch_engage(
                actor=request.user, reason=reason_form.cleaned_data["reason"], **targets
            ),
        )
        if switch is not None:
            messages.success(request, f"Kill switch #{switch.pk} engaged: {switch.target_label}.")
            for warning in warnings:
                messages.warning(request, warning)
            return redirect("flags:kill_switch_list")
    kind = str(form.data.get("kind", "")) if form.is_bound else ""
    title = {
        "tool_disabled": "Disable a tool",
        "agent_mode": "Force an agent's mode",
        "agent_stopped": "Stop an agent",
    }.get(kind, "Engage a kill switch")
    return render(
        request,
        "flags/kill_switch_engage.html",
        {
            "form": form,
            "reason_form": reason_form,
            "effect": effect,
            "warnings": warnings,
            "title": title,
            "tenant": tenant,
            "tab": "kill",
        },
    )


@login_required
@requires("flags.change_killswitch", "Your role does not allow releasing kill switches.")
def kill_switch_release(request: HttpRequest, pk: int) -> HttpResponse:
    switch = selectors.kill_switch_get_for_user(user=request.user, pk=pk, action="change")
    if not switch.is_engaged and request.method != "POST":
        messages.info(
            request,
            f"Kill switch #{switch.pk} was already released "
            f"{who_and_when(switch.released_by_label, switch.released_at)}.",
        )
        return redirect("flags:kill_switch_list")
    count = len(
        selectors.kill_switch_affected_environments(
            scope=switch.scope, tenant_id=switch.tenant_id, environment_id=switch.environment_id
        )
    )
    # The hidden version makes the second of two concurrent releases a clear refusal that
    # names who released first (the service decides under the row lock).
    return confirm_with_reason(
        request,
        shown=Confirmation(
            title=f"Release kill switch #{switch.pk}?",
            effect=kill_switch_release_effect(label=switch.target_label, environments=count),
            action_label="Release",
            danger=False,
            version=switch.version,
        ),
        act=lambda reason, expected_version: services.kill_switch_release(
            actor=request.user, switch=switch, reason=reason, expected_version=expected_version
        ),
        done_url="flags:kill_switch_list",
        done_message=f"Kill switch #{switch.pk} released: {switch.target_label}.",
    )
