"""The Budgets pages: the list (each budget's current window, state and forecast), the form
(create, edit, with a live preview of what the chosen scope already consumed this window),
delete with confirmation, and the budget page (burn-down, spend by agent and by model,
subjects, alert history, top sessions and end users, cost outliers)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET

from apps.core.authz import requires
from apps.core.charts import figure_html
from apps.core.ui import Confirmation, confirm_with_reason, rebase_if_stale
from apps.telemetry.consumption import (
    consumption_between,
    consumption_by,
    consumption_per_minute,
    cost_outliers,
)
from apps.tenancy.context_processors import current_tenant_for
from apps.tenancy.models import Agent, Tenant
from apps.tenancy.selectors import agent_list_for_user, environment_list_for_user

from . import charts, display, selectors, services
from .forms import BudgetForm
from .models import AGENT_SCOPES, METRICS, PER_SUBJECT_SCOPES, Budget, Scope
from .windows import window_bounds

VIEW = "budgets.view_budget"


def _get(request: HttpRequest, pk: int, action: str = "view") -> Budget:
    try:
        return selectors.budget_get_for_user(user=request.user, pk=pk, action=action)
    except Budget.DoesNotExist:
        raise Http404("No such budget.") from None


def _form(request: HttpRequest, tenant: Tenant, **kwargs: Any) -> BudgetForm:
    return BudgetForm(
        request.POST or None,
        tenant=tenant,
        agents=agent_list_for_user(user=request.user, tenant=tenant),
        environments=environment_list_for_user(user=request.user, tenant=tenant),
        **kwargs,
    )


@login_required
@requires(VIEW, "Your role does not allow viewing budgets.")
def budget_list(request: HttpRequest) -> HttpResponse:
    """Every budget of the current tenant (of all the user's tenants without one) with its
    current window."""
    tenant = current_tenant_for(request)
    budgets = selectors.budget_list_for_user(
        user=request.user, tenant_ids=[tenant.pk] if tenant is not None else None
    )
    now = timezone.now()
    rows = [
        display.window_view(budget, selectors.budget_status(budget, now=now), now)
        for budget in budgets
    ]
    return render(request, "budgets/list.html", {"rows": rows, "tenant": tenant})


def _save(form: BudgetForm, act: Callable[[dict[str, Any]], Budget]) -> Budget | None:
    """Run the service on the form's definition; its refusals go next to the fields."""
    try:
        return act(form.definition())
    except ValidationError as exc:
        form.add_service_errors(exc)
        return None


@login_required
@requires("budgets.add_budget", "Your role does not allow creating budgets.")
def budget_create(request: HttpRequest) -> HttpResponse:
    tenant = current_tenant_for(request)
    if tenant is None:
        raise Http404("Choose or create a tenant first.")
    form = _form(request, tenant)
    if request.method == "POST" and form.is_valid():
        created = _save(
            form,
            lambda data: services.budget_create(
                actor=request.user,
                tenant=tenant,
                data=data,
                reason=form.cleaned_data.get("reason") or "",
            ),
        )
        if isinstance(created, Budget):
            messages.success(request, f"Budget {created.name} created.")
            return redirect("budgets:detail", pk=created.pk)
    return render(
        request,
        "budgets/form.html",
        {
            "form": form,
            "tenant": tenant,
            "title": f"New budget for {tenant.name}",
            "preview": _preview(request, tenant, form),
        },
    )


@login_required
@requires("budgets.change_budget", "Your role does not allow changing budgets.")
def budget_edit(request: HttpRequest, pk: int) -> HttpResponse:
    budget = _get(request, pk, "change")
    form = _form(request, budget.tenant, editing=True, initial=BudgetForm.initial_of(budget))
    if request.method == "POST" and form.is_valid():
        saved = _save(
            form,
            lambda data: services.budget_update(
                actor=request.user,
                budget=budget,
                data=data,
                expected_version=form.cleaned_data.get("expected_version"),
                reason=form.cleaned_data.get("reason") or "",
            ),
        )
        if isinstance(saved, Budget):
            messages.success(request, f"Budget {saved.name} saved.")
            return redirect("budgets:detail", pk=saved.pk)
        budget.refresh_from_db()
        rebase_if_stale(form, budget.version)
    return render(
        request,
        "budgets/form.html",
        {
            "form": form,
            "tenant": budget.tenant,
            "budget": budget,
            "title": f"Edit budget {budget.name}",
            "preview": _preview(request, budget.tenant, form),
        },
    )


@login_required
@requires("budgets.delete_budget", "Your role does not allow deleting budgets.")
def budget_delete(request: HttpRequest, pk: int) -> HttpResponse:
    budget = _get(request, pk, "delete")

    def shown(budget: Budget) -> Confirmation:
        effect = (
            f"{display.scope_words(budget).capitalize()} of {budget.tenant.name} is no longer "
            f"limited by {budget.name}: its counters go, and runtimes stop enforcing it on the "
            "next snapshot"
        )
        if budget.action != "alert":
            effect += f" (it {display.action_words(budget)} at the limit today)"
        return Confirmation(
            title=f"Delete budget {budget.name}?",
            effect=effect + ".",
            action_label="Delete budget",
            version=budget.version,
        )

    return confirm_with_reason(
        request,
        shown=shown(budget),
        act=lambda reason, expected_version: (
            services.budget_delete(
                actor=request.user, budget=budget, reason=reason, expected_version=expected_version
            )
            or True
        ),
        done_url="budgets:list",
        done_message=f"Budget {budget.name} deleted.",
        reread=lambda: shown(_get(request, pk)),
    )


# --------------------------------------------------------------------------- preview


def _preview(request: HttpRequest, tenant: Tenant, form: BudgetForm) -> dict[str, Any]:
    """What the scope chosen in the form already consumed in the current window."""
    source = request.POST if request.method == "POST" else (form.initial or {})
    return _consumed(
        tenant,
        scope=str(source.get("scope") or ""),
        agent=form.agents.get(str(source.get("agent") or "")),
        environment_id=getattr(
            form.environments.get(str(source.get("environment") or "")), "pk", None
        ),
        window=str(source.get("window") or ""),
    )


def _consumed(
    tenant: Tenant,
    *,
    scope: str,
    agent: Agent | None,
    environment_id: int | None,
    window: str,
) -> dict[str, Any]:
    if scope not in Scope.values or window not in ("hour", "day", "week", "month"):
        return {"ready": False, "why": "Choose a scope and a window.", "zone": "UTC"}
    if scope in AGENT_SCOPES and agent is None:
        return {"ready": False, "why": "Choose the agent.", "zone": "UTC"}
    now = timezone.now()
    start, end = window_bounds(window, now, tenant.time_zone)
    by = {"tenant_agent": "agent", "end_user": "end_user"}.get(scope, "")
    spent = consumption_between(
        tenant_id=tenant.pk,
        start=start,
        end=end,  # what the budget would count: its whole window (budgets.services._backfill)
        environment_id=environment_id,
        agent_id=agent.pk if agent is not None and scope in AGENT_SCOPES else None,
        by=by,  # type: ignore[arg-type]
    )
    labels: dict[str, str] = {}
    if scope == Scope.TENANT_AGENT:
        labels = {
            str(pk): slug
            for pk, slug in Agent.objects.filter(
                tenant=tenant, pk__in=[int(k) for k in spent if k.isascii() and k.isdigit()]
            ).values_list("pk", "slug")
        }
    rows = sorted(spent.items(), key=lambda item: item[1].cost_usd, reverse=True)
    zone = display.zone_of(tenant.time_zone)
    return {
        "ready": True,
        "zone": zone,
        "per_subject": scope in PER_SUBJECT_SCOPES,
        "window_start": start,
        "resets_at": end,
        "subjects": [
            {
                "label": labels.get(subject, subject) or "all",
                "amounts": [display.amount(m, getattr(c, m)) for m in METRICS],
            }
            for subject, c in rows[:10]
        ],
        "more": max(0, len(rows) - 10),
    }


@login_required
@requires(VIEW, "Your role does not allow viewing budgets.")
@require_GET
def budget_preview(request: HttpRequest) -> HttpResponse:
    """The form's live preview (an htmx fragment): what the chosen scope consumed so far in
    the current window. ``?budget=<id>`` when editing, else the current tenant."""
    budget_id = request.GET.get("budget", "")
    # ASCII digits only: "²" is a digit to ``isdigit`` but not to ``int``
    if budget_id.isascii() and budget_id.isdigit() and len(budget_id) < 19:
        tenant = _get(request, int(budget_id)).tenant
    else:
        found = current_tenant_for(request)
        if found is None:
            raise Http404("Choose or create a tenant first.")
        tenant = found
    agents = {a.slug: a for a in agent_list_for_user(user=request.user, tenant=tenant)}
    environments = {e.slug: e for e in environment_list_for_user(user=request.user, tenant=tenant)}
    environment = environments.get(request.GET.get("environment", ""))
    preview = _consumed(
        tenant,
        scope=request.GET.get("scope", ""),
        agent=agents.get(request.GET.get("agent", "")),
        environment_id=environment.pk if environment is not None else None,
        window=request.GET.get("window", ""),
    )
    return render(request, "budgets/_preview.html", {"preview": preview})


# --------------------------------------------------------------------------- the budget page


def _subject_rows(budget: Budget, view: display.WindowView) -> list[dict[str, Any]]:
    usage = selectors.budget_usage_rows(budget)
    labels = selectors.subject_labels(budget, [row.subject for row in usage])
    rows = []
    for row in usage[:50]:
        percent, metric = services.percent_used(budget, row)
        rows.append(
            {
                "label": labels.get(row.subject, row.subject),
                "amounts": [display.amount(m, getattr(row, m)) for m in METRICS],
                "reserved": display.amount("cost_usd", row.reserved_cost_usd),
                "percent": percent,
                "bar": min(float(percent), 100.0),
                "metric": display.METRIC_WORDS.get(metric, metric),
                "at_limit": row.subject in view.status.exhausted_subjects,
            }
        )
    return rows


def _burn_down(budget: Budget, view: display.WindowView, now: datetime) -> Any:
    status = view.status
    scope = selectors.budget_scope(budget)
    whose = ""
    end_user: str | None = None
    if budget.scope in PER_SUBJECT_SCOPES:
        usage = selectors.budget_usage_rows(budget, now=now)
        if not usage:
            return None
        worst = max(usage, key=lambda row: services.percent_used(budget, row)[0])
        label = selectors.subject_labels(budget, [worst.subject])[worst.subject]
        if budget.scope == Scope.TENANT_AGENT:
            scope["agent_id"] = int(worst.subject)
            whose = f"agent {label}"
        else:
            end_user = worst.subject
            whose = f"end user {label[:12]}…"
    points = consumption_per_minute(
        start=status.window_start,
        end=status.resets_at,
        end_user_hash=end_user,
        **scope,  # type: ignore[arg-type]
    )
    if not points:
        return None
    figure = charts.burn_down(
        metric=status.metric,
        limit=budget.limits().get(status.metric),
        points=points,
        window_start=status.window_start,
        resets_at=status.resets_at,
        now=now,
        exhausts_at=status.exhausts_at,
        zone=display.tenant_zone(budget),
        whose=whose,
    )
    return figure_html(figure, label=f"Burn-down of {budget.name} in the current window")


@login_required
@requires(VIEW, "Your role does not allow viewing budgets.")
def budget_detail(request: HttpRequest, pk: int) -> HttpResponse:
    budget = _get(request, pk)
    now = timezone.now()
    view = display.window_view(budget, selectors.budget_status(budget, now=now), now)
    status = view.status
    scope = selectors.budget_scope(budget)
    start, end = status.window_start, status.resets_at
    by_agent_raw = consumption_between(
        start=start,
        end=end,
        by="agent",
        **scope,  # type: ignore[arg-type]
    )
    slugs = dict(
        Agent.objects.filter(tenant=budget.tenant, pk__in=[int(k) for k in by_agent_raw])
        .values_list("pk", "slug")
        .order_by()
    )
    by_agent = sorted(
        ((slugs.get(int(k), k), c) for k, c in by_agent_raw.items()),
        key=lambda item: item[1].cost_usd,
        reverse=True,
    )[:15]
    by_model = consumption_by(key="model", limit=15, start=start, end=end, **scope)  # type: ignore[arg-type]
    sessions = consumption_by(key="session_id", start=start, end=end, **scope)  # type: ignore[arg-type]
    end_users = consumption_by(key="end_user_hash", start=start, end=end, **scope)  # type: ignore[arg-type]
    median, outliers = cost_outliers(start=start, end=end, **scope)  # type: ignore[arg-type]
    outlier_agents = dict(
        Agent.objects.filter(tenant=budget.tenant, pk__in=[o.agent_id for o in outliers])
        .values_list("pk", "slug")
        .order_by()
    )
    return render(
        request,
        "budgets/detail.html",
        {
            "budget": budget,
            "view": view,
            "zone": display.tenant_zone(budget),
            "scope_words": display.scope_words(budget),
            "action_words": display.action_words(budget),
            "limits": [
                (display.METRIC_WORDS[m], display.amount(m, v))
                for m, v in budget.limits().items()
                if v is not None
            ],
            "consumed": [
                (display.METRIC_WORDS[m], display.amount(m, status.consumed[m])) for m in METRICS
            ],
            "reserved": display.amount("cost_usd", status.reserved["cost_usd"]),
            "burn_down": _burn_down(budget, view, now),
            "by_agent": figure_html(
                charts.spend_bars(title="Which agents spend it? (USD, this window)", rows=by_agent),
                label="Spend by agent",
            )
            if by_agent
            else None,
            "by_model": figure_html(
                charts.spend_bars(title="Which models cost it? (USD, this window)", rows=by_model),
                label="Spend by model",
            )
            if by_model
            else None,
            "subjects": _subject_rows(budget, view) if view.per_subject else [],
            "marks": selectors.budget_marks(budget, limit=30),
            "alerts": list(selectors.budget_alerts(budget, limit=30)),
            "sessions": [(k, display.amount("cost_usd", c.cost_usd), c) for k, c in sessions],
            "end_users": [(k, display.amount("cost_usd", c.cost_usd), c) for k, c in end_users],
            "median": display.amount("cost_usd", median) if median is not None else None,
            "outliers": [
                {
                    "o": o,
                    "agent": outlier_agents.get(o.agent_id, str(o.agent_id)),
                    "cost": display.amount("cost_usd", o.cost_usd),
                }
                for o in outliers
            ],
        },
    )
