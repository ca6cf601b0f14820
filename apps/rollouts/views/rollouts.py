"""The rollout pages: the list, the rollout page with its live part, charts and buttons, and
starting a rollout."""

from __future__ import annotations

import zoneinfo
from datetime import timedelta
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
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
    query_choice,
)
from apps.runtimes.selectors import convergence_for
from apps.telemetry.selectors import Series, telemetry_series
from apps.tenancy.context_processors import current_tenant_for
from apps.tenancy.selectors import (
    agent_get_for_user,
    agent_list_for_user,
    environment_list_for_user,
)

from .. import charts, selectors, services
from ..forms import (
    RolloutStartForm,
)
from ..models import Rollout
from ..plans import METRIC_LABELS, plan_normalised, plan_summary

# --------------------------------------------------------------------------- rollouts

# How far back the rollout page's charts reach: a long rollout shows its latest hours.
CHART_WINDOW = timedelta(hours=6)
HTMX_STOP_POLLING = 286
ACTIONS = ("advance", "complete", "pause", "shrink", "resume", "abort", "rollback")
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
    return {
        "pause": "Pause…",
        "shrink": "Shrink…",
        "resume": "Resume…",
        "abort": "Abort…",
        "complete": "Complete…",
    }.get(event, "Roll back…")


def _actions_offered(rollout: Rollout) -> set[str]:
    """The buttons the rollout page offers for ``rollout`` now: the moves its state allows,
    less those the service would refuse anyway (and "complete" outside a paused canary)."""
    allowed = {
        event
        for (state, event), _ in Rollout.TRANSITIONS.items()
        if state == rollout.state and event in ACTIONS
    }
    # "Complete" is the human's decision on a rollout paused in the canary (the analysis
    # pauses at the last step when a critical metric is not at PASS yet); a running canary
    # completes by advancing past its last step.
    if rollout.state != Rollout.State.PAUSED or rollout.paused_from != Rollout.State.CANARY:
        allowed.discard("complete")
    # shrinking goes back to a share the plan already took: not from the first step
    if rollout.shrink_to is None:
        allowed.discard("shrink")
    return allowed


def _live_context(request: HttpRequest, rollout: Rollout) -> dict[str, Any]:
    """What the polled part of the rollout page shows: cheap reads only (the rollout row, its
    transitions, the newest analyses, one convergence count)."""
    analyses = selectors.rollout_analyses(rollout=rollout, limit=10)
    allowed = _actions_offered(rollout)
    return {
        "rollout": rollout,
        "steps": selectors.rollout_steps(rollout),
        "transitions": selectors.rollout_transitions(rollout=rollout),
        "latest": analyses[0] if analyses else None,
        "analyses": analyses,
        "convergence": convergence_for(environments=[rollout.environment], agent=rollout.agent)[0],
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


def effect_of(rollout: Rollout, event: str, live: int) -> tuple[str, str]:
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
    if event == "complete":
        return (
            f"Complete the rollout of {agent} {v_new} in {environment} now?",
            f"{v_new} (now {now}) becomes the stable version of {agent} in {environment} on "
            f"every one of the {runtimes}; {v_old} stops serving. The analysis has not shown "
            "every critical metric at PASS: you decide instead.",
        )
    if event == "pause":
        return (
            f"Pause the rollout of {agent} {v_new} in {environment}?",
            f"{v_new} keeps {now}, but nothing advances it until someone resumes; the "
            "analysis keeps watching, and its guardrail and roll-back gates still act.",
        )
    if event == "shrink":
        shrink_to = rollout.shrink_to
        smaller = f"{shrink_to:g}%" if shrink_to is not None else "the previous step"
        # none: the page states the service's refusal instead
        to = f" to {smaller}" if shrink_to is not None else ""
        return (
            f"Shrink the canary of {agent} {v_new} in {environment}{to}?",
            f"{v_new} goes from {now} back to {smaller} of the sessions of {agent} in "
            f"{environment} ({runtimes}) and stays paused there until someone resumes it; "
            f"{v_old} serves the rest.",
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
        live = convergence_for(environments=[rollout.environment], agent=rollout.agent)[0].live
        title, effect = effect_of(rollout, event, live)
        refusal = services.transition_refusal(rollout, event)
        if refusal:  # what the service would answer, not an effect that will not happen
            effect = f"{refusal} Nothing will change."
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
    # ?version=<N>&environment=<id>: one that is not this agent's is a 404, not another.
    shown = query_choice(
        request, "version", {str(v.number): v for v in versions}, versions[0] if versions else None
    )
    query_choice(request, "environment", {str(e.pk): e for e in environments}, None)
    chosen_number = (
        _int_or_none(data.get("version"))
        if data is not None
        else (shown.number if shown is not None else None)
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
            live = convergence_for(environments=[environment], agent=agent)[0].live
            plan = plan_normalised(selectors.rollout_plan_document(environment=environment))
            baseline = stable.get(environment.pk)
            confirming = (
                f"{agent.name} v{version.number} goes out in {environment.name}, a production "
                f"environment with {live} live runtime{'s' if live != 1 else ''} serving "
                f"{agent.name}, step by step "
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
