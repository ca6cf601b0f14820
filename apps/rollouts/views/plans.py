"""The rollout plan editor of an environment."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import NON_FIELD_ERRORS, PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from apps.core.authz import requires, user_may
from apps.core.ui import (
    rebase_if_stale,
)
from apps.tenancy.selectors import (
    environment_get_for_user,
)

from .. import selectors, services
from ..forms import (
    MetricFormSet,
    PlanForm,
    StepFormSet,
)
from ..plans import METRIC_LABELS, plan_normalised, plan_summary

# --------------------------------------------------------------------------- plans


def _plan_forms(
    data: Any, document: dict[str, Any], version: int
) -> tuple[PlanForm, Any, Any, list[str]]:
    """The plan form and its step and metric formsets, filled from ``document``; the metric
    forms list every metric the analysis knows (those absent from the plan unticked)."""
    plan = plan_normalised(document)
    form = PlanForm(
        data,
        initial={
            "shadow_percentage": plan["shadow"]["percentage"],
            "shadow_min_dwell_s": plan["shadow"]["min_dwell_s"],
            "shadow_min_requests": plan["shadow"]["min_requests"],
            "failure_limit": plan["failure_limit"],
            "alpha": plan["alpha"],
            "guardrail_max_error_rate": plan["guardrail"]["max_error_rate"],
            "guardrail_min_requests": plan["guardrail"]["min_requests"],
            "stickiness": plan["stickiness"],
            "expected_version": version,
        },
    )
    steps = StepFormSet(data, initial=plan["steps"], prefix="steps")
    present = {m["metric"]: m for m in plan["metrics"]}
    order = [m["metric"] for m in plan["metrics"]] + [
        name for name in METRIC_LABELS if name not in present
    ]
    metric_initial = [
        {**present[name], "enabled": True}
        if name in present
        else {
            "metric": name,
            "enabled": False,
            "tolerated_ratio": 1.5,
            "min_effect": 0.0,
            "on_failure": "pause",
            "critical": False,
            "dry_run": False,
        }
        for name in order
    ]
    metrics = MetricFormSet(data, initial=metric_initial, prefix="metrics")
    return form, steps, metrics, order


def _document(form: PlanForm, steps: Any, metrics: Any) -> tuple[dict[str, Any], dict, dict]:
    """The plan document the forms describe, and where each step and metric of it came from
    (document index -> form index) to put the validation's dotted keys back on fields."""
    data = form.cleaned_data
    step_of, metric_of = {}, {}
    step_rows: list[dict[str, Any]] = []
    for i, step_form in enumerate(steps.forms):
        cleaned = step_form.cleaned_data
        if not cleaned or cleaned.get("DELETE"):
            continue
        step_of[len(step_rows)] = i
        step_rows.append(
            {k: cleaned[k] for k in ("percentage", "min_dwell_s", "min_requests", "auto_advance")}
        )
    metric_rows: list[dict[str, Any]] = []
    for i, metric_form in enumerate(metrics.forms):
        cleaned = metric_form.cleaned_data
        if not cleaned.get("enabled"):
            continue
        metric_of[len(metric_rows)] = i
        metric_rows.append(
            {
                k: cleaned[k]
                for k in (
                    "metric",
                    "tolerated_ratio",
                    "min_effect",
                    "on_failure",
                    "critical",
                    "dry_run",
                )
            }
        )
    document = {
        "shadow": {
            "percentage": data["shadow_percentage"],
            "min_dwell_s": data["shadow_min_dwell_s"],
            "min_requests": data["shadow_min_requests"],
        },
        "steps": step_rows,
        "metrics": metric_rows,
        "failure_limit": data["failure_limit"],
        "alpha": data["alpha"],
        "guardrail": {
            "max_error_rate": data["guardrail_max_error_rate"],
            "min_requests": data["guardrail_min_requests"],
        },
        "stickiness": data["stickiness"],
    }
    return document, step_of, metric_of


def _place_errors(
    exc: ValidationError, form: PlanForm, steps: Any, metrics: Any, step_of: dict, metric_of: dict
) -> None:
    """Put ``plan_validate``'s dotted keys (``steps.1.percentage``) on the field they name."""
    if not hasattr(exc, "error_dict"):
        form.add_error(None, exc)
        return
    for key, problems in exc.message_dict.items():
        parts = key.split(".")
        if key in PlanForm.FIELD_OF:
            form.add_error(PlanForm.FIELD_OF[key], problems)
        elif parts[0] in ("steps", "metrics") and len(parts) == 3 and parts[1].isdigit():
            owner, where = (steps, step_of) if parts[0] == "steps" else (metrics, metric_of)
            index = where.get(int(parts[1]))
            sub = owner.forms[index] if index is not None else None
            if sub is not None and parts[2] in sub.fields:
                sub.add_error(parts[2], problems)
            else:
                form.add_error(None, [f"{key}: {p}" for p in problems])
        else:
            form.add_error(None, [f"{key}: {p}" if key != "__all__" else p for p in problems])


@login_required
@requires("rollouts.view_rolloutplan", "Your role does not allow viewing rollout plans.")
def plan_edit(request: HttpRequest, pk: int) -> HttpResponse:
    """The rollout plan of an environment: shadow share, canary steps, metric gates, failure
    limit, guardrail and stickiness. Saving needs ``rollouts.change_rolloutplan`` and carries
    the plan's version (a plan changed meanwhile is refused, naming who changed it)."""
    environment = environment_get_for_user(user=request.user, pk=pk)
    document, version = selectors.rollout_plan_of(environment=environment)
    may_change = user_may(request.user, "rollouts.change_rolloutplan")
    if request.method == "POST" and not may_change:
        raise PermissionDenied("Your role does not allow changing rollout plans.")
    data = request.POST if request.method == "POST" else None
    form, steps, metrics, _ = _plan_forms(data, document, version)
    if data is not None and form.is_valid() and steps.is_valid() and metrics.is_valid():
        new_document, step_of, metric_of = _document(form, steps, metrics)
        try:
            plan = services.rollout_plan_set(
                actor=request.user,
                environment=environment,
                document=new_document,
                reason=form.cleaned_data["reason"],
                expected_version=form.cleaned_data["expected_version"],
            )
        except ValidationError as exc:
            _place_errors(exc, form, steps, metrics, step_of, metric_of)
            if form.has_error(NON_FIELD_ERRORS, "stale"):
                rebase_if_stale(form, selectors.rollout_plan_of(environment=environment)[1])
        else:
            messages.success(
                request,
                f"The rollout plan of {environment.name} is saved (version {plan.version}): "
                f"{plan_summary(plan.document)}. Rollouts already running keep their plan.",
            )
            return redirect("rollouts:plan_edit", pk=environment.pk)
    return render(
        request,
        "rollouts/plan_edit.html",
        {
            "environment": environment,
            "form": form,
            "steps": steps,
            "metrics": metrics,
            "metric_labels": METRIC_LABELS,
            "may_change": may_change,
            "summary": plan_summary(plan_normalised(document)),
            "version": version,
        },
    )
