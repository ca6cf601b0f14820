from __future__ import annotations

import zoneinfo
from datetime import timedelta
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import NON_FIELD_ERRORS, PermissionDenied, ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import urlencode

from apps.bundles.selectors import bundle_version_list
from apps.core.authz import requires, user_may
from apps.core.charts import figure_html
from apps.core.ui import (
    Confirmation,
    call_service,
    confirm_with_reason,
    paginate,
    rebase_if_stale,
)
from apps.runtimes.selectors import convergence_for
from apps.telemetry.selectors import Series, telemetry_series
from apps.tenancy.context_processors import current_tenant_for
from apps.tenancy.selectors import (
    agent_get_for_user,
    agent_list_for_user,
    environment_get_for_user,
    environment_list_for_user,
)

from . import charts, selectors, services
from .forms import (
    DeployForm,
    MetricFormSet,
    PlanForm,
    RolloutStartForm,
    StepFormSet,
)
from .models import Rollout
from .plans import METRIC_LABELS, plan_normalised, plan_summary
from .selectors import RollbackPlan


@login_required
def agent_releases(request: HttpRequest, pk: int) -> HttpResponse:
    """Per environment: the stable version, who deployed it, and runtime convergence (htmx)."""
    agent = agent_get_for_user(user=request.user, pk=pk)
    environments = list(environment_list_for_user(user=request.user, tenant=agent.tenant))
    convergence = {c.environment.pk: c for c in convergence_for(environments=environments)}
    running = selectors.rollouts_active_by_environment(agent=agent)
    rows = []
    for e in environments:
        plan = selectors.rollback_plan(agent=agent, environment=e)
        rows.append(
            {
                "environment": e,
                "current": plan.current,
                "rollback_target": plan.target,
                "rollout": running.get(e.pk),
                "convergence": convergence[e.pk],
            }
        )
    return render(request, "rollouts/_agent_releases.html", {"agent": agent, "rows": rows})


@login_required
@requires("rollouts.add_deployment", "Your role does not allow deploying.")
def deploy(request: HttpRequest, pk: int) -> HttpResponse:
    agent = agent_get_for_user(user=request.user, pk=pk)
    environments = list(environment_list_for_user(user=request.user, tenant=agent.tenant))
    versions = list(bundle_version_list(agent=agent))
    initial = {"version": request.GET.get("version"), "environment": request.GET.get("environment")}
    current = {e.pk: selectors.deployment_current(agent=agent, environment=e) for e in environments}
    form = DeployForm(
        request.POST or None,
        initial=initial,
        environments=environments,
        versions=versions,
        current=current,
    )
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        environment = environment_get_for_user(user=request.user, pk=data["environment"])
        version = next(v for v in versions if v.pk == data["version"])
        deployment = call_service(
            form,
            lambda: services.deployment_create(
                actor=request.user,
                agent=agent,
                environment=environment,
                version=version,
                reason=data["reason"],
                expected_version=data["expected_version"],
            ),
        )
        if deployment is not None:
            messages.success(
                request,
                f"v{version.number} is now stable for {agent.name} in {environment.name} "
                f"(revision {deployment.revision}); runtimes are picking it up.",
            )
            return redirect("tenancy:agent_detail", pk=agent.pk)
    return render(
        request,
        "rollouts/deploy.html",
        {"form": form, "agent": agent, "has_versions": bool(versions)},
    )


def _state_now(pk: int) -> str:
    return Rollout.objects.get(pk=pk).get_state_display()


def _rollback_running(request: HttpRequest, rollout: Rollout) -> HttpResponse:
    """The one rollback button while a rollout runs: the candidate leaves every runtime,
    stable stays; then the rollout page shows the convergence until every runtime has
    acknowledged."""
    agent, environment = rollout.agent, rollout.environment

    def shown(rollout: Rollout | None) -> Confirmation:
        live = convergence_for(environments=[environment])[0].live
        if rollout is None:
            return Confirmation(
                title=f"Roll back {agent.name} in {environment.name}?",
                effect="The rollout running here has ended meanwhile: reload the agent's "
                "page to see what runs now.",
                action_label="Roll back now",
                version=0,
            )
        title, effect = _effect(rollout, "rollback", live)
        return Confirmation(
            title=title,
            effect=effect,
            action_label=f"Roll back to v{rollout.baseline.number} now",
            version=rollout.sequence,
        )

    def act(reason: str, expected_version: int | None) -> object:
        # The page stated this rollout's rollback: if it ended meanwhile, the one button would
        # revert the stable version instead, which nobody confirmed.
        now = selectors.rollout_active(agent=agent, environment=environment)
        if now is None or now.pk != rollout.pk:
            raise ValidationError(
                f"Rollout #{rollout.pk} ended meanwhile ({_state_now(rollout.pk)}). Nothing "
                "was changed: check the agent's releases and roll back from there if needed.",
                code="stale",
            )
        return services.release_rollback(
            actor=request.user,
            agent=agent,
            environment=environment,
            reason=reason,
            expected_version=expected_version,
        )

    return confirm_with_reason(
        request,
        shown=shown(rollout),
        act=act,
        done_url=reverse("rollouts:rollout_detail", kwargs={"pk": rollout.pk}),
        done_message=lambda outcome: f"{outcome.summary} (revision {outcome.revision})",
        reread=lambda: shown(selectors.rollout_active(agent=agent, environment=environment)),
    )


@login_required
@requires("rollouts.add_deployment", "Your role does not allow rolling back.")
def rollback(request: HttpRequest, pk: int, environment_pk: int) -> HttpResponse:
    """The rollback confirmation: names the version it goes back to (the last known-good one
    before the current, never one rolled back from) and carries the release-history version
    the page showed, so two operators clicking at once cannot both roll back."""
    agent = agent_get_for_user(user=request.user, pk=pk)
    environment = environment_get_for_user(user=request.user, pk=environment_pk)
    if environment.tenant_id != agent.tenant_id:
        raise Http404("No such environment for this agent.")
    running = selectors.rollout_active(agent=agent, environment=environment)
    if running is not None:
        return _rollback_running(request, running)
    plan = selectors.rollback_plan(agent=agent, environment=environment)
    if request.method != "POST" and plan.target is None:
        messages.error(request, f"Nothing to roll back to. {plan.refusal}")
        return redirect("tenancy:agent_detail", pk=agent.pk)

    def shown(plan: RollbackPlan) -> Confirmation:
        live = convergence_for(environments=[environment])[0].live
        if plan.current is not None and plan.target is not None:
            effect = (
                f"{agent.name} in {environment.name} goes back from "
                f"v{plan.current.version.number} to v{plan.target.version.number} on {live} "
                f"live runtime{'s' if live != 1 else ''}. v{plan.target.version.number} is the "
                f"last known-good version (deployed {plan.target.created_at:%Y-%m-%d %H:%M} UTC "
                f"by {plan.target.deployed_by_label}, never rolled back from); "
                f"v{plan.current.version.number} is marked rolled back and is never a rollback "
                "target again."
            )
        else:
            effect = plan.refusal
        target = f" to v{plan.target.version.number}" if plan.target is not None else ""
        return Confirmation(
            title=f"Roll back {agent.name} in {environment.name}{target}?",
            effect=effect,
            action_label=f"Roll back{target} now",
            version=selectors.deployment_sequence(plan.current),
        )

    def act(reason: str, expected_version: int | None) -> object:
        # The page stated a revert of the stable version: a rollout started meanwhile would
        # make the one button roll that back instead, which nobody confirmed.
        started = selectors.rollout_active(agent=agent, environment=environment)
        if started is not None:
            raise ValidationError(
                f"Rollout #{started.pk} of v{started.candidate.number} started here meanwhile "
                f"(by {started.started_by_label}). Nothing was changed: reload the page to roll "
                "it back.",
                code="stale",
            )
        return services.release_rollback(
            actor=request.user,
            agent=agent,
            environment=environment,
            reason=reason,
            expected_version=expected_version,
        )

    return confirm_with_reason(
        request,
        shown=shown(plan),
        act=act,
        done_url=reverse("tenancy:agent_detail", kwargs={"pk": agent.pk}),
        done_message=lambda outcome: (
            f"Rolled back: {agent.name} in {environment.name} serves "
            f"v{outcome.deployment.version.number} again (revision {outcome.revision})."
            if outcome.deployment is not None
            else f"{outcome.summary} (revision {outcome.revision})"
        ),
        reread=lambda: shown(selectors.rollback_plan(agent=agent, environment=environment)),
    )


# --------------------------------------------------------------------------- rollouts

# How far back the rollout page's charts reach: a long rollout shows its latest hours.
CHART_WINDOW = timedelta(hours=6)
HTMX_STOP_POLLING = 286
ACTIONS = ("advance", "pause", "resume", "abort", "rollback")
STATE_FILTERS = ("active", *Rollout.State.values)
# ?sort= of the rollout list (a leading "-": descending)
SORTS = {
    "id": "id",
    "agent": "agent__name",
    "environment": "environment__position",
    "state": "state",
}


def _tz(tenant: Any) -> zoneinfo.ZoneInfo:
    try:
        return zoneinfo.ZoneInfo(tenant.time_zone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return zoneinfo.ZoneInfo("UTC")


def _int_or_none(value: str | None) -> int | None:
    return int(value) if value and value.isdigit() and len(value) < 10 else None


@login_required
@requires("rollouts.view_rollout", "Your role does not allow viewing rollouts.")
def rollout_list(request: HttpRequest) -> HttpResponse:
    """Rollouts of the user's tenants, newest first, filtered by agent, environment, state."""
    tenant = current_tenant_for(request)
    agent_id = _int_or_none(request.GET.get("agent"))
    environment_id = _int_or_none(request.GET.get("environment"))
    state = request.GET.get("state", "")
    state = state if state in STATE_FILTERS else ""
    rows = selectors.rollout_list_for_user(
        user=request.user, agent_id=agent_id, environment_id=environment_id, state=state
    )
    if tenant is not None:
        rows = rows.filter(agent__tenant=tenant)
    sort = request.GET.get("sort", "")
    if sort.lstrip("-") in SORTS:
        field = SORTS[sort.lstrip("-")]
        rows = rows.order_by(f"-{field}" if sort.startswith("-") else field, "-id")
    else:
        sort = ""
    filters = {k: str(v) for k, v in request.GET.items() if k in ("agent", "environment", "state")}
    return render(
        request,
        "rollouts/rollout_list.html",
        {
            "page": paginate(request, rows),
            "agents": agent_list_for_user(user=request.user, tenant=tenant) if tenant else [],
            "environments": environment_list_for_user(user=request.user, tenant=tenant)
            if tenant
            else [],
            "states": STATE_FILTERS,
            "chosen": {"agent": agent_id, "environment": environment_id, "state": state},
            "filtered": bool(agent_id or environment_id or state),
            "query": urlencode({**filters, **({"sort": sort} if sort else {})}),
            "filters": urlencode(filters),
            "sort": sort,
            "sort_columns": [
                ("id", "#"),
                ("agent", "Agent"),
                ("environment", "Environment"),
                ("state", "State"),
            ],
        },
    )


def _label(rollout: Rollout, event: str) -> str:
    """A button's words: advancing past the last step completes the rollout."""
    last = rollout.state == Rollout.State.CANARY and rollout.step_index + 1 >= len(
        rollout.plan["steps"]
    )
    if event == "advance":
        return "Complete…" if last else "Advance…"
    return {"pause": "Pause…", "resume": "Resume…", "abort": "Abort…"}.get(event, "Roll back…")


def _live_context(request: HttpRequest, rollout: Rollout) -> dict[str, Any]:
    """What the polled part of the rollout page shows: cheap reads only (the rollout row, its
    transitions, the newest analyses, one convergence count)."""
    analyses = selectors.rollout_analyses(rollout=rollout, limit=10)
    allowed = {
        event
        for (state, event), _ in Rollout.TRANSITIONS.items()
        if state == rollout.state and event in ACTIONS
    }
    return {
        "rollout": rollout,
        "steps": selectors.rollout_steps(rollout),
        "transitions": selectors.rollout_transitions(rollout=rollout),
        "latest": analyses[0] if analyses else None,
        "analyses": analyses,
        "convergence": convergence_for(environments=[rollout.environment])[0],
        "actions": [(a, _label(rollout, a)) for a in ACTIONS if a in allowed],
        "metric_labels": METRIC_LABELS,
        "rendered_at": timezone.now(),
        "tz": _tz(rollout.agent.tenant),
    }


@login_required
@requires("rollouts.view_rollout", "Your role does not allow viewing rollouts.")
def rollout_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """The rollout page: step progress, charts, verdicts, decision log, timeline, buttons."""
    rollout = selectors.rollout_get_for_user(user=request.user, pk=pk)
    return render(request, "rollouts/rollout_detail.html", _live_context(request, rollout))


@login_required
@requires("rollouts.view_rollout", "Your role does not allow viewing rollouts.")
def rollout_live(request: HttpRequest, pk: int) -> HttpResponse:
    """The live part of the rollout page (htmx polls it every few seconds)."""
    rollout = selectors.rollout_get_for_user(user=request.user, pk=pk)
    context = _live_context(request, rollout)
    response = render(request, "rollouts/_rollout_live.html", context)
    convergence = context["convergence"]
    if not rollout.is_active and (convergence.converged or not convergence.live):
        # Ended, and every runtime has acknowledged (or none is live): nothing left to watch.
        # htmx stops polling on a 286 (and still swaps this last state in).
        response.status_code = HTMX_STOP_POLLING
    return response


@login_required
@requires("rollouts.view_rollout", "Your role does not allow viewing rollouts.")
def rollout_charts(request: HttpRequest, pk: int) -> HttpResponse:
    """Candidate against stable per metric of the plan, per minute, with the tolerated band
    (htmx polls it every 30 s: minute rollups change once a minute)."""
    rollout = selectors.rollout_get_for_user(user=request.user, pk=pk)
    end = rollout.finished_at or timezone.now()
    start = max(rollout.created_at, end - CHART_WINDOW).replace(second=0, microsecond=0)

    def side(digest: str, variants: list[str]) -> list[Series]:
        return telemetry_series(
            tenant=rollout.agent.tenant,
            agent=rollout.agent,
            environment=rollout.environment,
            start=start,
            end=end + timedelta(minutes=1),
            resolution="minute",
            version_digests=[digest],
            variants=variants,
        )

    stable = side(rollout.baseline.digest, ["stable"])
    candidate = side(rollout.candidate.digest, ["candidate", "shadow"])
    figures = [
        figure_html(figure, label=label)
        for _, label, figure in charts.rollout_figures(
            metrics=rollout.plan["metrics"],
            stable=stable,
            candidate=candidate,
            tz=_tz(rollout.agent.tenant),
            start=start,
            end=end,
        )
    ]
    return render(
        request,
        "rollouts/_rollout_charts.html",
        {"rollout": rollout, "figures": figures, "rendered_at": timezone.now()},
    )


def _effect(rollout: Rollout, event: str, live: int) -> tuple[str, str]:
    """(title, effect) of a confirmation, in the operator's words."""
    agent, environment = rollout.agent.name, rollout.environment.name
    v_new, v_old = f"v{rollout.candidate.number}", f"v{rollout.baseline.number}"
    runtimes = f"{live} live runtime{'s' if live != 1 else ''}"
    now = (
        f"shadowing {rollout.shadow_percentage:g}% of sessions"
        if rollout.shadow_percentage
        else f"serving {rollout.percentage:g}% of sessions"
    )
    steps = rollout.plan["steps"]
    if event == "advance":
        if rollout.state == Rollout.State.SHADOW:
            nxt = f"{steps[0]['percentage']:g}%"
            return (
                f"Advance {agent} {v_new} in {environment} to {nxt}?",
                f"{v_new} stops shadowing and serves {nxt} of the sessions of {agent} in "
                f"{environment} ({runtimes}); {v_old} serves the rest.",
            )
        if rollout.step_index + 1 >= len(steps):
            return (
                f"Complete the rollout of {agent} {v_new} in {environment}?",
                f"{v_new} becomes the stable version of {agent} in {environment} on every "
                f"one of the {runtimes}; {v_old} stops serving.",
            )
        nxt = f"{steps[rollout.step_index + 1]['percentage']:g}%"
        return (
            f"Advance {agent} {v_new} in {environment} to {nxt}?",
            f"{v_new} goes from {rollout.percentage:g}% to {nxt} of the sessions of {agent} "
            f"in {environment} ({runtimes}).",
        )
    if event == "pause":
        return (
            f"Pause the rollout of {agent} {v_new} in {environment}?",
            f"{v_new} keeps {now}, but nothing advances it until someone resumes; the "
            "analysis keeps recording.",
        )
    if event == "resume":
        return (
            f"Resume the rollout of {agent} {v_new} in {environment}?",
            f"{v_new} goes on {now} and the analysis may advance or roll it back again.",
        )
    if event == "abort":
        return (
            f"Abort the rollout of {agent} {v_new} in {environment}?",
            f"{v_new} (now {now}) leaves all {runtimes}; {v_old} stays stable. The rollout "
            "ends without judging the version bad.",
        )
    return (
        f"Roll back {agent} in {environment} to {v_old}?",
        f"{agent} in {environment} goes back to {v_old} on {runtimes}: {v_new} (now {now}) "
        "leaves every runtime and the rollout ends as rolled back.",
    )


@login_required
@requires("rollouts.change_rollout", "Your role does not allow changing rollouts.")
def rollout_action(request: HttpRequest, pk: int, event: str) -> HttpResponse:
    """The confirmation of a button on the rollout page (advance, pause, resume, abort, roll
    back): states the effect, asks a reason, and carries the rollout's ``sequence`` as
    ``expected_version`` so a rollout that moved meanwhile (the analysis, another operator)
    is refused with who moved it rather than moved twice."""
    if event not in ACTIONS:
        raise Http404("No such action.")
    rollout = selectors.rollout_get_for_user(user=request.user, pk=pk)
    detail = reverse("rollouts:rollout_detail", kwargs={"pk": rollout.pk})

    def shown(rollout: Rollout) -> Confirmation:
        live = convergence_for(environments=[rollout.environment])[0].live
        title, effect = _effect(rollout, event, live)
        if (rollout.state, event) not in Rollout.TRANSITIONS:
            effect = (
                f"This rollout is {rollout.get_state_display()} now: it cannot "
                f"{Rollout.Event(event).label}. Nothing will change."
            )
        return Confirmation(
            title=title,
            effect=effect,
            action_label=title.split(" ", 1)[0].rstrip("?") + " now"
            if event != "rollback"
            else f"Roll back to v{rollout.baseline.number} now",
            danger=event in ("abort", "rollback"),
            version=rollout.sequence,
        )

    # Roll back acts on *this* rollout, like the other buttons: release_rollback would, once
    # no rollout runs any more, revert the stable version instead, which is not what this
    # page stated. The agent's releases page offers that one.
    def act(reason: str, expected_version: int | None) -> object:
        return services.rollout_transition(
            actor=request.user,
            rollout_id=rollout.pk,
            event=event,
            reason=reason,
            expected_version=expected_version,
        )

    return confirm_with_reason(
        request,
        shown=shown(rollout),
        act=act,
        done_url=detail,
        done_message=lambda result: (
            f"Rollout #{result.rollout.pk} is {result.rollout.get_state_display()} "
            f"(revision {result.transition.revision}); runtimes are picking it up."
        ),
        reread=lambda: shown(selectors.rollout_get_for_user(user=request.user, pk=pk)),
    )


@login_required
@requires("rollouts.add_rollout", "Your role does not allow starting rollouts.")
def rollout_start(request: HttpRequest, pk: int) -> HttpResponse:
    """Start a rollout of a version of the agent: choose the environment (each listed with
    its stable version), see the gates that fail before submitting, optionally narrow the
    canary to some tenants; a production environment asks for a confirmation first."""
    agent = agent_get_for_user(user=request.user, pk=pk)
    environments = list(environment_list_for_user(user=request.user, tenant=agent.tenant))
    versions = list(bundle_version_list(agent=agent))
    stable = {}
    for e in environments:
        current = selectors.deployment_current(agent=agent, environment=e)
        stable[e.pk] = current.version if current else None
    data = request.POST if request.method == "POST" else None
    chosen_number = _int_or_none(
        (data or request.GET).get("version") or (str(versions[0].number) if versions else "")
    )
    version = next((v for v in versions if v.number == chosen_number), None)
    form = RolloutStartForm(
        data,
        initial={"version": chosen_number, "environment": request.GET.get("environment")},
        environments=environments,
        versions=versions,
        stable=stable,
        may_override=user_may(request.user, "rollouts.override_rollout_gate"),
    )
    gates = [
        {
            "environment": e,
            "stable": stable[e.pk],
            "running": selectors.rollout_active(agent=agent, environment=e),
            "failures": services.rollout_gate_failures(candidate=version, environment=e)
            if version is not None
            else [],
        }
        for e in environments
    ]
    confirming = None
    if request.method == "POST" and form.is_valid():
        cleaned = form.cleaned_data
        environment = next(e for e in environments if e.pk == cleaned["environment"])
        version = next(v for v in versions if v.number == cleaned["version"])
        if environment.is_production and not cleaned.get("confirmed"):
            live = convergence_for(environments=[environment])[0].live
            plan = plan_normalised(selectors.rollout_plan_document(environment=environment))
            baseline = stable.get(environment.pk)
            confirming = (
                f"{agent.name} v{version.number} goes out in {environment.name}, a production "
                f"environment with {live} live runtime{'s' if live != 1 else ''}, step by step "
                f"({plan_summary(plan)} of sessions), judged against "
                f"{f'v{baseline.number}' if baseline else 'the stable version'}; a failing "
                "metric rolls it back automatically."
            )
            form.data = {**request.POST.dict(), "confirmed": "on"}
        else:
            rollout = call_service(
                form,
                lambda: services.rollout_start(
                    actor=request.user,
                    agent=agent,
                    environment=environment,
                    candidate=version,
                    reason=cleaned["reason"],
                    override_reason=cleaned.get("override_reason") or "",
                    stickiness=cleaned["stickiness"],
                    constraints=form.constraints(),
                ),
            )
            if rollout is not None:
                messages.success(
                    request,
                    f"Rollout #{rollout.pk} started: {agent.name} v{version.number} in "
                    f"{environment.name}, {rollout.get_state_display()} at "
                    f"{rollout.shadow_percentage or rollout.percentage:g}%.",
                )
                return redirect("rollouts:rollout_detail", pk=rollout.pk)
    return render(
        request,
        "rollouts/rollout_start.html",
        {
            "form": form,
            "agent": agent,
            "version": version,
            "gates": gates,
            "has_versions": bool(versions),
            "versions": versions,
            "confirming": confirming,
        },
    )


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
