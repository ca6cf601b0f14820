"""The incident panel of one agent in one environment: the on-call playbook on one page,
*stop harm → stabilise → investigate*, composed from the other apps' services and selectors
(nothing here writes by itself).

- Stop harm: disable one of the tools the deployed versions declare, force read-only or
  draft-only, stop the agent — each a kill switch scoped to this agent in this environment
  (``apps.flags.services.kill_switch_engage``).
- Stabilise: roll back (the running rollout, or the stable version to the last known-good
  one: ``apps.rollouts.services.release_rollback``), or pause the canary
  (``rollout_transition``).
- Investigate: failing verdicts, failed and outlier requests with their traces, the audit
  events of the last hour, links to the explorer and the audit log filtered.

From the overview each action is two clicks: open the panel, press the action. The reason is
prefilled with the incident, editable and required. After an action the panel shows the
propagation (htmx polling of a small fragment) until every runtime serving the agent in the
environment has acknowledged the revision the action produced."""

from __future__ import annotations

import zoneinfo
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from apps.audit.selectors import audit_event_list
from apps.core.authz import requires, user_may
from apps.core.deployed_tools import deployed_tools
from apps.core.ui import ExpectedVersionField, call_service
from apps.flags import services as flag_services
from apps.flags.models import AgentMode, KillSwitchKind, KillSwitchScope
from apps.flags.selectors import kill_switches_engaged_for
from apps.rollouts import selectors as rollout_selectors
from apps.rollouts import services as rollout_services
from apps.rollouts.models import Rollout
from apps.runtimes.selectors import propagation_of
from apps.telemetry import explorer
from apps.telemetry.models import Outcome
from apps.tenancy.models import Agent, Environment
from apps.tenancy.selectors import agent_get_for_user, environment_get_for_user

VIEW_PERMISSION = "tenancy.view_agent"
KILL_PERMISSION = "flags.add_killswitch"
ROLLBACK_PERMISSION = "rollouts.add_deployment"
PAUSE_PERMISSION = "rollouts.change_rollout"
# How far back "around the incident" looks: the audit window and the requests listed.
WINDOW = timedelta(hours=1)
RECORDS_SHOWN = 10
REASON_REQUIRED = "Say why: the reason is kept in the audit log and shown to runtimes."


class _ReasonForm(forms.Form):
    reason = forms.CharField(
        max_length=2000,
        widget=forms.Textarea(attrs={"rows": 2}),
        error_messages={"required": REASON_REQUIRED},
    )


class StopHarmForm(_ReasonForm):
    """One kill switch on this agent in this environment. ``harm`` is the pressed button's
    value: ``tool:<name>``, ``mode:read_only``, ``mode:draft_only`` or ``stop``."""

    harm = forms.CharField(max_length=220)

    def clean_harm(self) -> dict[str, str]:
        value = self.cleaned_data["harm"]
        if value == "stop":
            return {"kind": KillSwitchKind.AGENT_STOPPED, "tool_pattern": "", "mode": ""}
        if value.startswith("mode:") and value[5:] in AgentMode.values:
            return {"kind": KillSwitchKind.AGENT_MODE, "tool_pattern": "", "mode": value[5:]}
        if value.startswith("tool:") and value[5:].strip():
            # the service checks the name (kill_switch_validate): one spelling of the rule
            return {"kind": KillSwitchKind.TOOL_DISABLED, "tool_pattern": value[5:], "mode": ""}
        raise ValidationError("Press one of the stop-harm buttons.")


class StabiliseForm(_ReasonForm):
    """Roll back or pause, carrying what the panel showed: the running rollout (``rollout``,
    empty: none ran) and the version of what the button acts on (the rollout's ``sequence``,
    or the stable deployment's), so a click never acts on a state nobody saw."""

    rollout = forms.IntegerField(
        required=False, min_value=1, max_value=2**63 - 1, widget=forms.HiddenInput
    )
    expected_version = ExpectedVersionField()


@dataclass(frozen=True)
class _Place:
    agent: Agent
    environment: Environment


def _place(request: HttpRequest, agent_id: int, environment_id: int) -> _Place:
    """The agent and environment the URL names, both the user's and of one tenant (404
    otherwise: never another tenant's, never a mismatched pair)."""
    agent = agent_get_for_user(user=request.user, pk=agent_id)
    environment = environment_get_for_user(user=request.user, pk=environment_id)
    if environment.tenant_id != agent.tenant_id:
        raise Http404("No such environment for this agent.")
    return _Place(agent, environment)


def _tz(agent: Agent) -> zoneinfo.ZoneInfo:
    try:
        return zoneinfo.ZoneInfo(agent.tenant.time_zone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return zoneinfo.ZoneInfo("UTC")


def _revision_asked(request: HttpRequest, environment: Environment) -> int:
    """The revision whose propagation the panel follows: ``?revision=`` (the one an action
    produced), else the environment's current one. Anything unreadable or from the future
    falls back to the current one: a stale bookmark never errors."""
    wanted = request.GET.get("revision", "")
    if wanted.isascii() and wanted.isdigit() and len(wanted) < 12:
        revision = int(wanted)
        if 0 < revision <= environment.revision:
            return revision
    return environment.revision


def _failing_line(analysis: Any) -> str:
    failed = [v for v in analysis.verdicts if v.get("verdict") == "FAIL"]
    first = failed[0] if failed else {}
    return f"{first.get('metric', '?')} FAIL — {first.get('reason', analysis.reason)}"


def _default_reason(place: _Place, failing: list[Any], now: datetime) -> str:
    """The prefilled reason: what the incident is, in words the audit log keeps."""
    local = timezone.localtime(now, _tz(place.agent))
    text = (
        f"Incident on {place.agent.slug} in {place.environment.name} at "
        f"{local:%H:%M} {local.tzname()}"
    )
    if failing:
        latest = failing[0]
        text += f": rollout #{latest.rollout_id} analysis says {_failing_line(latest)}"
    return text[:2000]


def _panel_context(
    request: HttpRequest,
    place: _Place,
    *,
    stop_form: StopHarmForm | None = None,
    stabilise_form: StabiliseForm | None = None,
) -> dict[str, Any]:
    agent, environment = place.agent, place.environment
    now = timezone.now()
    failing = rollout_selectors.rollout_analyses_failing(agent=agent, environment=environment)
    reason = _default_reason(place, failing, now)
    running = rollout_selectors.rollout_active(agent=agent, environment=environment)
    current = rollout_selectors.deployment_current(agent=agent, environment=environment)
    plan = rollout_selectors.rollback_plan(agent=agent, environment=environment)
    known = deployed_tools(
        tenant_id=agent.tenant_id, agent_id=agent.pk, environment_id=environment.pk
    )
    tools = sorted(next((a.tools for a in known or [] if a.agent_id == agent.pk), frozenset()))
    can_kill = user_may(request.user, KILL_PERMISSION)
    can_rollback = user_may(request.user, ROLLBACK_PERMISSION)
    pausable = running is not None and running.state in (
        Rollout.State.SHADOW,
        Rollout.State.CANARY,
    )
    # back to the previous canary step's share (and paused there): not from the first step
    shrink_to = running.shrink_to if running is not None else None
    stabilise_version = (
        running.sequence if running is not None else rollout_selectors.deployment_sequence(current)
    )
    if stop_form is None:
        stop_form = StopHarmForm(prefix="stop", initial={"reason": reason})
    if stabilise_form is None:
        stabilise_form = StabiliseForm(
            prefix="stabilise",
            initial={
                "reason": reason,
                "rollout": running.pk if running is not None else None,
                "expected_version": stabilise_version,
            },
        )
    else:
        # Drawn again after a refusal (stale, no reason…), the panel shows the state now: its
        # buttons act on that (as rebase_if_stale on confirmation pages), or each of them is
        # refused as stale again until the on-call thinks of reloading. The reason is kept.
        stabilise_form.data = {
            **{key: stabilise_form.data.get(key) for key in stabilise_form.data},
            stabilise_form.add_prefix("rollout"): str(running.pk) if running is not None else "",
            stabilise_form.add_prefix("expected_version"): str(stabilise_version),
        }
    switches = list(kill_switches_engaged_for(environment=environment, agent_id=agent.pk))
    here = {
        (str(s.kind), s.tool_pattern, s.mode)
        for s in switches
        if s.agent_id == agent.pk and s.environment_id == environment.pk
    }
    since = now - WINDOW
    errors = explorer.records_for(
        agent=agent,
        environment=environment,
        filters=explorer.RecordFilters(since=since, until=now, outcome=Outcome.ERROR),
    )[:RECORDS_SHOWN]
    rule = explorer.cost_outlier_rule(agent=agent, environment=environment)
    outliers = explorer.cost_outliers(
        explorer.records_for(
            agent=agent, environment=environment, filters=explorer.RecordFilters(since, now)
        ),
        rule,
    )[:RECORDS_SHOWN]
    records_url = reverse("telemetry:records", kwargs={"pk": agent.pk})
    audit_since = timezone.localtime(since, zoneinfo.ZoneInfo("UTC"))
    audit_events = list(
        audit_event_list(
            user=request.user, tenant_id=agent.tenant_id, target=agent.slug, since=since
        )[:RECORDS_SHOWN]
    )
    return {
        "agent": agent,
        "environment": environment,
        "tz": _tz(agent),
        "now": now,
        "tools": tools,
        "tools_known": known is not None,
        "running": running,
        "pausable": pausable,
        "current": current,
        "plan": plan,
        "switches": switches,
        # What this panel already engaged here is shown as engaged, not as a button that
        # would only be refused as a duplicate.
        "tool_buttons": [(tool, ("tool_disabled", tool, "") in here) for tool in tools],
        "read_only_engaged": ("agent_mode", "", AgentMode.READ_ONLY) in here,
        "draft_only_engaged": ("agent_mode", "", AgentMode.DRAFT_ONLY) in here,
        "stopped_engaged": ("agent_stopped", "", "") in here,
        "propagation": propagation_of(
            environment=environment,
            revision=_revision_asked(request, environment),
            agent=agent,
        ),
        "can_kill": can_kill,
        "can_rollback": can_rollback and (running is not None or plan.target is not None),
        "can_pause": pausable and user_may(request.user, PAUSE_PERMISSION),
        "can_shrink": shrink_to is not None and user_may(request.user, PAUSE_PERMISSION),
        "shrink_to": shrink_to,
        "may_release": user_may(request.user, "flags.change_killswitch"),
        "stop_form": stop_form,
        "stabilise_form": stabilise_form,
        "failing": failing[:3],
        "errors": [(r, explorer.trace_url(agent.tenant, r.trace_id)) for r in errors],
        "outliers": [(r, explorer.trace_url(agent.tenant, r.trace_id)) for r in outliers],
        "errors_url": f"{records_url}?"
        + urlencode({"environment": environment.slug, "outcome": "error", "range": "1h"}),
        "outliers_url": f"{records_url}?"
        + urlencode({"environment": environment.slug, "outliers": "1", "range": "1h"}),
        "audit_events": audit_events,
        "audit_url": reverse("audit:event_list")
        + "?"
        + urlencode(
            {
                "tenant": agent.tenant_id,
                "target": agent.slug,
                "since": audit_since.strftime("%Y-%m-%dT%H:%M"),
            }
        ),
    }


def _panel(request: HttpRequest, place: _Place, status: int = 200, **forms: Any) -> HttpResponse:
    return render(
        request, "dashboard/incident.html", _panel_context(request, place, **forms), status=status
    )


def _back(place: _Place, revision: int) -> HttpResponse:
    url = reverse(
        "dashboard:incident",
        kwargs={"agent_id": place.agent.pk, "environment_id": place.environment.pk},
    )
    return redirect(f"{url}?revision={revision}#propagation")


@login_required
@require_GET
@requires(VIEW_PERMISSION, "Your role does not allow reading agents.")
def incident_panel(request: HttpRequest, agent_id: int, environment_id: int) -> HttpResponse:
    """The panel: stop harm, stabilise, investigate, and the propagation of the latest
    revision (``?revision=``: the one an action produced) to the runtimes serving the agent.
    Each action is shown only to a role that may take it."""
    return _panel(request, _place(request, agent_id, environment_id))


@login_required
@require_POST
@requires(KILL_PERMISSION, "Your role does not allow engaging kill switches.")
def incident_stop_harm(request: HttpRequest, agent_id: int, environment_id: int) -> HttpResponse:
    """Engage one kill switch scoped to the agent in the environment. An empty reason or a
    refusal (already engaged, a bad tool name) re-renders the panel with the errors (400)
    and engages nothing."""
    place = _place(request, agent_id, environment_id)
    form = StopHarmForm(request.POST, prefix="stop")
    if form.is_valid():
        harm = form.cleaned_data["harm"]
        targets = {
            "scope": KillSwitchScope.ENVIRONMENT,
            "tenant": place.agent.tenant,
            "agent": place.agent,
            "environment": place.environment,
            **harm,
        }
        switch = call_service(
            form,
            lambda: flag_services.kill_switch_engage(
                actor=request.user, reason=form.cleaned_data["reason"], **targets
            ),
        )
        if switch is not None:
            messages.success(request, f"Kill switch #{switch.pk} engaged: {switch.target_label}.")
            for warning in flag_services.kill_switch_warnings(**targets):
                messages.warning(request, warning)
            return _back(place, switch.engaged_revisions[str(place.environment.pk)])
    return _panel(request, place, status=400, stop_form=form)


def _seen_rollout(form: StabiliseForm, place: _Place) -> Rollout | None:
    """The rollout the panel showed running, checked to be this agent's here (a forged id
    of another agent's rollout is a field error, never acted on)."""
    rollout_id = form.cleaned_data.get("rollout")
    if rollout_id is None:
        return None
    rollout = Rollout.objects.filter(
        pk=rollout_id, agent=place.agent, environment=place.environment
    ).first()
    if rollout is None:
        form.add_error("rollout", "No such rollout of this agent here: reload the panel.")
    return rollout


@login_required
@require_POST
@requires(ROLLBACK_PERMISSION, "Your role does not allow rolling back.")
def incident_rollback(request: HttpRequest, agent_id: int, environment_id: int) -> HttpResponse:
    """The one rollback button: the running rollout the panel showed, or (none was shown)
    the stable version back to the last known-good one. What moved since the panel was read
    is refused as stale, naming who acted first."""
    place = _place(request, agent_id, environment_id)
    form = StabiliseForm(request.POST, prefix="stabilise")
    if form.is_valid():
        seen = _seen_rollout(form, place)
        if not form.errors:
            outcome = call_service(
                form,
                lambda: rollout_services.release_rollback(
                    actor=request.user,
                    agent=place.agent,
                    environment=place.environment,
                    reason=form.cleaned_data["reason"],
                    expected_version=form.cleaned_data["expected_version"],
                    expected_rollout=seen.pk if seen is not None else None,
                ),
            )
            if outcome is not None:
                messages.success(request, f"{outcome.summary} (revision {outcome.revision})")
                return _back(place, outcome.revision)
    return _panel(request, place, status=400, stabilise_form=form)


@login_required
@require_POST
@requires(PAUSE_PERMISSION, "Your role does not allow changing rollouts.")
def incident_pause(request: HttpRequest, agent_id: int, environment_id: int) -> HttpResponse:
    """Pause the running rollout the panel showed: the canary holds its share while the
    on-call investigates (resume or roll back from the rollout's page or here)."""
    return _canary_move(request, agent_id, environment_id, Rollout.Event.PAUSE)


@login_required
@require_POST
@requires(PAUSE_PERMISSION, "Your role does not allow changing rollouts.")
def incident_shrink(request: HttpRequest, agent_id: int, environment_id: int) -> HttpResponse:
    """Shrink the running rollout's canary the panel showed: back to the previous step's
    share, paused there (the service refuses it at the first step)."""
    return _canary_move(request, agent_id, environment_id, Rollout.Event.SHRINK)


def _canary_move(
    request: HttpRequest, agent_id: int, environment_id: int, event: str
) -> HttpResponse:
    """Pause or shrink the rollout the panel showed, with the panel's reason and the
    rollout's ``sequence`` it showed (a rollout moved meanwhile is refused as stale)."""
    place = _place(request, agent_id, environment_id)
    form = StabiliseForm(request.POST, prefix="stabilise")
    done = "paused" if event == Rollout.Event.PAUSE else "shrunk"
    if form.is_valid():
        seen = _seen_rollout(form, place)
        if seen is None and not form.errors:
            form.add_error("rollout", f"No rollout runs here to {event}.")
        if seen is not None and not form.errors:
            result = call_service(
                form,
                lambda: rollout_services.rollout_transition(
                    actor=request.user,
                    rollout_id=seen.pk,
                    event=event,
                    reason=form.cleaned_data["reason"],
                    expected_version=form.cleaned_data["expected_version"],
                ),
            )
            if result is not None:
                messages.success(
                    request,
                    f"Rollout #{seen.pk} {done} at {result.rollout.percentage:g}% "
                    f"(revision {result.transition.revision}).",
                )
                return _back(place, result.transition.revision)
    return _panel(request, place, status=400, stabilise_form=form)


@login_required
@require_GET
@requires(VIEW_PERMISSION, "Your role does not allow reading agents.")
def incident_propagation(request: HttpRequest, agent_id: int, environment_id: int) -> HttpResponse:
    """The live fragment: how many of the live runtimes serving the agent in the
    environment have acknowledged ``?revision=`` (default: the current one). It polls itself
    until every one has, then stops."""
    place = _place(request, agent_id, environment_id)
    return render(
        request,
        "dashboard/incident_propagation.html",
        {
            "agent": place.agent,
            "environment": place.environment,
            "p": propagation_of(
                environment=place.environment,
                revision=_revision_asked(request, place.environment),
                agent=place.agent,
            ),
        },
    )
