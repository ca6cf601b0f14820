"""The release pages of an agent: its releases per environment, deploy, and the one rollback
button (a running rollout, else the stable version)."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse

from apps.bundles.selectors import bundle_version_list, gate_statuses
from apps.core.authz import requires, user_may
from apps.core.ui import (
    Confirmation,
    call_service,
    confirm_with_reason,
    query_choice,
)
from apps.runtimes.selectors import convergence_for
from apps.tenancy.selectors import (
    agent_get_for_user,
    environment_get_for_user,
    environment_list_for_user,
)

from .. import selectors, services
from ..forms import (
    DeployForm,
)
from ..models import Rollout
from ..selectors import RollbackPlan
from ..services.gating import OVERRIDE_PERMISSION
from .rollouts import effect_of


@login_required
def agent_releases(request: HttpRequest, pk: int) -> HttpResponse:
    """Per environment: the stable version, who deployed it, and runtime convergence (htmx)."""
    agent = agent_get_for_user(user=request.user, pk=pk)
    environments = list(environment_list_for_user(user=request.user, tenant=agent.tenant))
    convergence = {
        c.environment.pk: c for c in convergence_for(environments=environments, agent=agent)
    }
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
    """Deploy a version now. Before the click the page shows, for the version chosen, each
    environment's promotion gate (met, or which evaluation is missing or short); a deploy
    past an unmet gate is refused, except for an Admin who ticks the override and says why."""
    agent = agent_get_for_user(user=request.user, pk=pk)
    environments = list(environment_list_for_user(user=request.user, tenant=agent.tenant))
    versions = list(bundle_version_list(agent=agent))
    # ?version=<id>&environment=<id> (links from the agent page): one that is not this
    # agent's is a 404, never another version silently.
    version = query_choice(
        request, "version", {str(v.pk): v for v in versions}, versions[0] if versions else None
    )
    if request.method == "POST":
        chosen = _int_or_none(request.POST.get("version"))
        version = next((v for v in versions if v.pk == chosen), version)
    by_id = {str(e.pk): e for e in environments}
    environment_shown = query_choice(request, "environment", by_id, None)
    initial = {
        "version": version.pk if version else None,
        "environment": environment_shown.pk if environment_shown else None,
    }
    current = {e.pk: selectors.deployment_current(agent=agent, environment=e) for e in environments}
    may_override = user_may(request.user, OVERRIDE_PERMISSION)
    form = DeployForm(
        request.POST or None,
        initial=initial,
        environments=environments,
        versions=versions,
        current=current,
        may_override=may_override,
    )
    statuses = (
        gate_statuses(versions=[version], environments=environments)[version.pk]
        if version is not None
        else []
    )
    gates = [
        {
            "environment": e,
            "current": current[e.pk],
            "gate": status,
            "unmet": [c.reason for c in status.checks if not c.met],
        }
        for e, status in zip(environments, statuses, strict=True)
    ]
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
                override_reason=form.override_reason(),
            ),
        )
        if deployment is not None:
            messages.success(
                request,
                f"v{version.number} is now stable for {agent.name} in {environment.name} "
                f"(revision {deployment.revision}); runtimes are picking it up."
                + (
                    " The promotion gate was overridden; your reason is in the audit log."
                    if deployment.gate_override
                    else ""
                ),
            )
            return redirect("tenancy:agent_detail", pk=agent.pk)
    return render(
        request,
        "rollouts/deploy.html",
        {
            "form": form,
            "agent": agent,
            "has_versions": bool(versions),
            "versions": versions,
            "version": version,
            "gates": gates,
            "may_override": may_override,
        },
    )


def _int_or_none(value: str | None) -> int | None:
    return int(value) if value and value.isascii() and value.isdigit() and len(value) < 19 else None


def _state_now(pk: int) -> str:
    return Rollout.objects.get(pk=pk).get_state_display()


def _rollback_running(request: HttpRequest, rollout: Rollout) -> HttpResponse:
    """The one rollback button while a rollout runs: the candidate leaves every runtime,
    stable stays; then the rollout page shows the convergence until every runtime has
    acknowledged."""
    agent, environment = rollout.agent, rollout.environment

    def shown(rollout: Rollout | None) -> Confirmation:
        live = convergence_for(environments=[environment], agent=agent)[0].live
        if rollout is None:
            return Confirmation(
                title=f"Roll back {agent.name} in {environment.name}?",
                effect="The rollout running here has ended meanwhile: reload the agent's "
                "page to see what runs now.",
                action_label="Roll back now",
                version=0,
            )
        title, effect = effect_of(rollout, "rollback", live)
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
            expected_rollout=rollout.pk,  # checked again under the environment lock
        )

    return confirm_with_reason(
        request,
        shown=shown(rollout if rollout.is_active else None),
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
    # What the page that linked here showed: ``?rollout=<id>`` (that rollout's rollback) or
    # ``?rollout=none`` (a revert of the stable version). The confirmation posts back to the
    # same URL, so the click does what was shown even if a rollout started or ended since —
    # or is refused as stale; the rollout and deployment versions are separate counters.
    seen = request.GET.get("rollout", "")
    if seen.isdigit():
        shown_rollout = (
            Rollout.objects.select_related("agent", "environment", "candidate", "baseline")
            .filter(pk=int(seen), agent=agent, environment=environment)
            .first()
        )
        if shown_rollout is None:
            raise Http404("No such rollout here.")
        return _rollback_running(request, shown_rollout)
    running = selectors.rollout_active(agent=agent, environment=environment)
    if running is not None and seen != "none":
        return _rollback_running(request, running)
    plan = selectors.rollback_plan(agent=agent, environment=environment)
    if request.method != "POST" and plan.target is None:
        messages.error(request, f"Nothing to roll back to. {plan.refusal}")
        return redirect("tenancy:agent_detail", pk=agent.pk)

    def shown(plan: RollbackPlan) -> Confirmation:
        live = convergence_for(environments=[environment], agent=agent)[0].live
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
            expected_rollout=None,  # no rollout was shown: one started since is stale
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
