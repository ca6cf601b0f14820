"""Staged rollouts: start one (gates first), move it through its state machine, roll back.

Every move goes through ``rollout_transition`` — a human's button, the API, the CLI and the
analysis tick alike — which checks the move against ``Rollout.TRANSITIONS``, bumps the
environment's revision (runtimes see the new traffic split within a second) and writes one
audit event, all in one transaction. Lock order, everywhere: the environment row, then the
rollout row; deploys and rollbacks of the stable version take the same environment lock, so
a promotion racing a rollback ends in one consistent state."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import structlog
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from apps.audit.concurrency import version_check
from apps.audit.services import Actor, SystemActor, actor_identity, audit_record
from apps.bundles.models import BundleVersion
from apps.bundles.selectors import promotion_gate_check
from apps.core import events
from apps.core.authz import authorize
from apps.core.concurrency import StaleVersion
from apps.core.locks import lock_row
from apps.core.reasons import require_reason
from apps.flags.validation.constraints import OPERATORS, normalize_constraints
from apps.flags.validation.report import Context, Problems
from apps.tenancy.models import Agent, Environment
from apps.tenancy.services import (
    archived_errors,
    environment_lock,
    environment_revision_bump,
    refuse_archived,
)

from ..models import Deployment, Rollout, RolloutTransition
from ..plans import STICKINESS, plan_normalised
from ..selectors import (
    deployment_current,
    predecessor_environment,
    rollout_active,
    rollout_plan_document,
)
from .deployments import _replace_live, deployment_rollback
from .gating import gate_enforce

log = structlog.get_logger(__name__)

State = Rollout.State
Event = Rollout.Event
CONSTRAINT_OPERATORS = ("IN", "NOT_IN")
# Unleash context fields an SDK fills in from its own setup, not from the request.
SDK_OWN_CONTEXT = frozenset({"environment", "appName", "currentTime", "remoteAddress"})


def rollout_gate_failures(*, candidate: BundleVersion, environment: Environment) -> list[str]:
    """Why ``candidate`` may not be rolled out to ``environment`` yet (empty: it may): the
    environment's promotion gate (evaluation evidence), and for an environment with a
    predecessor in promotion order where the agent is released, a completed rollout there or
    being the stable version there."""
    failures: list[str] = []
    gate = promotion_gate_check(version=candidate, environment=environment)
    if gate.configured and not gate.met:
        failures.append(f"Promotion gate of {environment.name}: {gate.summary}")
    before = predecessor_environment(environment=environment)
    stable = (
        deployment_current(agent=candidate.agent, environment=before)
        if before is not None
        else None
    )
    # An agent not released in the predecessor at all (never deployed there) is not promoted
    # through it: there is nothing there to have completed.
    if before is not None and stable is not None:
        completed = Rollout.objects.filter(
            candidate=candidate, environment=before, state=State.COMPLETED
        ).exists()
        if not completed and stable.version_id != candidate.pk:
            failures.append(
                f"v{candidate.number} has not completed a rollout in {before.name}, nor is it "
                f"stable there: roll it out there first."
            )
    return failures


def _constraints_clean(value: Any) -> list[dict[str, Any]]:
    """Unleash constraints narrowing the canary (e.g. ``tenantId IN [acme]``), checked as
    flag constraints are (``apps.flags.validation.constraints``), then narrowed to what the
    reference runtime evaluates exactly as the SDKs do: the set operators, plain (neither
    inverted nor case-insensitive), on a field known per request. Returns them as the
    snapshot carries them; raises ``ValidationError`` keyed ``constraints.<i>.<field>``."""
    if value in (None, ""):
        return []
    problems = Problems()
    constraints = normalize_constraints(value, "constraints", problems, Context())
    if len(constraints) > 10:
        problems.error("constraints", "Enter at most 10 constraints.")
    for i, constraint in enumerate(constraints):
        path = f"constraints.{i}"
        name = constraint.get("contextName", "").strip()
        operator = constraint.get("operator")
        if name in SDK_OWN_CONTEXT:
            # SDKs fill these from their own configuration, a runtime from nothing: the
            # snapshot's split and the rollout.<agent> feature would disagree.
            problems.error(
                f"{path}.contextName",
                f"{name} is not known per request; use tenantId, userId, sessionId or a "
                "custom property.",
            )
        if operator in OPERATORS and operator not in CONSTRAINT_OPERATORS:
            problems.error(f"{path}.operator", "Choose IN or NOT_IN.")
        if constraint.get("inverted") or constraint.get("caseInsensitive"):
            problems.error(
                path, "A rollout's constraints are neither inverted nor case-insensitive."
            )
        if len(constraint.get("values", [])) > 500:
            problems.error(f"{path}.values", "Enter at most 500 values.")
    if problems:
        raise ValidationError(problems.worded())
    return [
        {
            "contextName": constraint["contextName"].strip(),
            "operator": constraint["operator"],
            "values": sorted(set(constraint["values"])),
        }
        for constraint in constraints
    ]


def _group_id(*, agent: Agent, environment: Environment, candidate: BundleVersion) -> str | None:
    # A restarted rollout of the same candidate keeps its cohort: the same sessions hash to
    # the same buckets, so nobody flips back and forth between versions.
    return (
        Rollout.objects.filter(agent=agent, environment=environment, candidate=candidate)
        .order_by("id")
        .values_list("group_id", flat=True)
        .first()
    )


@transaction.atomic
def rollout_start(
    *,
    actor: Actor,
    agent: Agent,
    environment: Environment,
    candidate: BundleVersion,
    reason: str,
    override_reason: str = "",
    stickiness: str = "",
    constraints: Any = None,
) -> Rollout:
    """Start rolling ``candidate`` out to ``agent`` in ``environment``, against the stable
    version as baseline, following the environment's plan (shadow first when it has one,
    else the first canary step).

    Raises ``ValidationError`` by field: bad input, no stable version to compare with, the
    candidate already stable, a rollout already running there, or a failing gate
    (``rollout_gate_failures``) — which an actor with ``rollouts.override_rollout_gate``
    (Admins) may pass by giving ``override_reason`` (audited). ``PermissionDenied`` /
    ``Http404`` when the actor may not."""
    authorize(actor, "rollouts.add_rollout", agent.tenant)
    errors: dict[str, list[str]] = {}
    reason = require_reason(reason, errors=errors)
    errors.update(archived_errors(agent=agent, environment=environment))
    if environment.tenant_id != agent.tenant_id:
        errors["environment"] = ["Choose an environment of the agent's tenant."]
    if candidate.agent_id != agent.pk:
        errors["candidate"] = ["This version belongs to another agent."]
    if stickiness and stickiness not in STICKINESS:
        errors["stickiness"] = [f"Choose one of: {', '.join(STICKINESS)}."]
    if errors:
        raise ValidationError(errors)
    cleaned_constraints = _constraints_clean(constraints)
    # again under the lock: an archive committing meanwhile is seen
    refuse_archived(environment=environment_lock(environment_id=environment.pk))
    stable = deployment_current(agent=agent, environment=environment)
    if stable is None:
        raise ValidationError(
            {
                "candidate": [
                    f"{agent.name} has no stable version in {environment.name} to compare "
                    "a candidate with: deploy a first version."
                ]
            }
        )
    if stable.version_id == candidate.pk:
        raise ValidationError({"candidate": [f"v{candidate.number} is already stable here."]})
    running = rollout_active(agent=agent, environment=environment)
    if running is not None:
        raise ValidationError(
            {
                "candidate": [
                    f"Rollout #{running.pk} (v{running.candidate.number}) is already "
                    f"{running.get_state_display()} here: finish it or roll it back."
                ]
            }
        )
    override, failures = gate_enforce(
        actor=actor,
        version=candidate,
        environment=environment,
        override_reason=override_reason,
        field="candidate",
        what="start a rollout of",
        failures=rollout_gate_failures(candidate=candidate, environment=environment),
    )
    plan = plan_normalised(rollout_plan_document(environment=environment))
    user, label = actor_identity(actor)
    try:
        with transaction.atomic():
            rollout = Rollout.objects.create(
                agent=agent,
                environment=environment,
                candidate=candidate,
                baseline=stable.version,
                state=State.PENDING,
                plan=plan,
                stickiness=stickiness or plan["stickiness"],
                group_id=_group_id(agent=agent, environment=environment, candidate=candidate) or "",
                constraints=cleaned_constraints,
                started_by=user,
                started_by_label=label,
                reason=reason,
                gate_override=override if failures else "",
            )
    except IntegrityError as exc:  # a rollout started meanwhile (the lock makes this rare)
        raise ValidationError({"candidate": ["A rollout started here meanwhile."]}) from exc
    if not rollout.group_id:
        rollout.group_id = f"{agent.slug}:{environment.slug}:rollout-{rollout.pk}"
        rollout.save(update_fields=["group_id"])
    first, step = _target(rollout, Event.START)  # shadow first when the plan has one
    transition = _move(
        rollout,
        event=Event.START,
        target=first,
        actor=actor,
        reason=reason,
        automatic=False,
        step_index=step,  # into the canary: its first step (0), not -1
    )
    audit_record(
        actor=actor,
        action="rollout.started",
        target=rollout,
        target_label=f"{agent.slug} v{candidate.number} in {environment.slug}",
        tenant=agent.tenant,
        reason=reason,
        before={"stable_version": str(stable.version)},
        after={
            "candidate": str(candidate),
            "state": rollout.state,
            "percentage": rollout.percentage,
            "shadow_percentage": rollout.shadow_percentage,
            "group_id": rollout.group_id,
            "revision": transition.revision,
            **({"gate_override": override, "gate_failures": failures} if failures else {}),
        },
    )
    return rollout


def _target(rollout: Rollout, event: str) -> tuple[str, int]:
    """The state and step ``event`` leads ``rollout`` to (before checking the table)."""
    steps = len(rollout.plan["steps"])
    if event == Event.ADVANCE:
        if rollout.state == State.SHADOW:
            return State.CANARY, 0
        if rollout.state == State.CANARY and rollout.step_index + 1 >= steps:
            return State.COMPLETED, rollout.step_index  # past the last step: completion
        return State.CANARY, rollout.step_index + 1
    if event == Event.START:
        if rollout.plan["shadow"]["percentage"]:
            return State.SHADOW, -1
        return State.CANARY, 0
    if event == Event.PAUSE:
        return State.PAUSED, rollout.step_index
    if event == Event.SHRINK:
        return State.PAUSED, rollout.step_index - 1
    if event == Event.RESUME:
        return rollout.phase, rollout.step_index
    return {
        Event.COMPLETE: State.COMPLETED,
        Event.ABORT: State.ABORTED,
        Event.ROLLBACK: State.ROLLED_BACK,
    }[Rollout.Event(event)], rollout.step_index


def transition_allowed(state: str, event: str, target: str, *, paused_from: str = "") -> bool:
    """Is ``state --event--> target`` a move of the state machine? A paused rollout
    completes only when it paused in the canary (``paused_from``): one paused in shadow has
    served no live traffic; without ``paused_from`` the table alone answers."""
    if (
        state == Rollout.State.PAUSED
        and target == Rollout.State.COMPLETED
        and paused_from not in ("", Rollout.State.CANARY)
    ):
        return False
    return target in Rollout.TRANSITIONS.get((state, event), frozenset())


def _move_refusal(rollout: Rollout, event: str, target: str) -> str:
    """Why the state machine refuses ``rollout --event--> target`` ("" when it allows it)."""
    if transition_allowed(rollout.state, event, target, paused_from=rollout.paused_from):
        return ""
    if rollout.paused_from == State.SHADOW and target == State.COMPLETED:
        return (
            "A rollout paused in its shadow phase served no live traffic: resume it into "
            "the canary first."
        )
    return f"A {rollout.get_state_display()} rollout cannot {event} (to {target})."


def transition_refusal(rollout: Rollout, event: str) -> str:
    """Why ``rollout_transition`` would refuse ``event`` on ``rollout`` as it is read now
    ("" when it would move it; stale versions aside): what a confirmation page states instead
    of an effect that will not happen. ``event`` is one of ``Rollout.Event`` but start."""
    try:
        if event not in _BACK:  # rollout_transition's own check
            refuse_archived(agent=rollout.agent, environment=rollout.environment)
        if event == Event.SHRINK:
            _check_shrink(rollout)
    except ValidationError as exc:
        return " ".join(exc.messages)
    target, _ = _target(rollout, event)
    return _move_refusal(rollout, Event.COMPLETE if target == State.COMPLETED else event, target)


def _move(
    rollout: Rollout,
    *,
    event: str,
    target: str,
    actor: Actor,
    reason: str,
    automatic: bool,
    step_index: int | None = None,
) -> RolloutTransition:
    """Apply one checked move (the caller holds the locks and writes the audit event)."""
    refusal = _move_refusal(rollout, event, target)
    if refusal:
        raise ValidationError({"event": [refusal]})
    source, before_percentage = rollout.state, rollout.percentage
    now = timezone.now()
    if target == State.PAUSED:
        if source != State.PAUSED:  # a paused rollout shrunk stays paused from where it was
            rollout.paused_from = rollout.state
    elif source == State.PAUSED:
        rollout.paused_from = ""
        # A resume restarts the evidence (the operator judged what came before): the
        # failure count starts again too, so the plan's limit holds after it.
        rollout.consecutive_failures = 0
    if step_index is not None and step_index != rollout.step_index:
        rollout.step_index = step_index
        rollout.step_started_at = now
        rollout.consecutive_failures = 0
    if source in (State.PENDING,) or (target == State.SHADOW and source != State.PAUSED):
        rollout.step_started_at = now
    rollout.state = target
    rollout.sequence += 1
    if target in (State.COMPLETED, State.ABORTED, State.ROLLED_BACK):
        rollout.finished_at = now
        rollout.outcome = reason
    if target == State.COMPLETED:
        # The candidate becomes the stable version: the release history's one mover.
        deployment = _replace_live(
            actor=actor,
            agent=rollout.agent,
            environment=rollout.environment,
            current=deployment_current(agent=rollout.agent, environment=rollout.environment),
            version=rollout.candidate,
            kind=Deployment.Kind.DEPLOY,
            reason=f"Rollout #{rollout.pk} completed: {reason}",
        )
        revision = deployment.revision
    else:
        revision = environment_revision_bump(environment_id=rollout.environment_id)
    rollout.save()
    user, label = actor_identity(actor)
    log.info(
        "rollout.transition",
        rollout_id=rollout.pk,
        rollout_event=event,  # structlog's first argument is named ``event``
        from_state=source,
        to_state=target,
        percentage=rollout.percentage,
        before_percentage=before_percentage,
        automatic=automatic,
        revision=revision,
    )
    return RolloutTransition.objects.create(
        rollout=rollout,
        event=event,
        from_state=source,
        to_state=target,
        step_index=rollout.step_index,
        percentage=rollout.percentage or rollout.shadow_percentage,
        automatic=automatic,
        actor=user,
        actor_label=label,
        reason=reason,
        revision=revision,
    )


@dataclass(frozen=True)
class TransitionResult:
    rollout: Rollout
    transition: RolloutTransition


# the moves that take a candidate's traffic away (``rollout_transition``)
_BACK = frozenset({Event.PAUSE, Event.SHRINK, Event.ABORT, Event.ROLLBACK})


@transaction.atomic
def rollout_transition(
    *,
    actor: Actor,
    rollout_id: int,
    event: str,
    reason: str,
    expected_version: int | None = None,
    automatic: bool = False,
) -> TransitionResult:
    """Move a rollout: ``event`` is advance, pause, resume, complete, abort, rollback or
    shrink (back one canary step, to the previous step's share, and paused there; refused at
    the first step and for a rollout paused before its canary).

    Advance from the last canary step completes the rollout (the candidate becomes stable,
    as a deployment). ``expected_version``: the rollout's ``sequence`` the user saw (None:
    no check). ``automatic``: decided by the analysis (recorded on the timeline). Raises
    ``ValidationError`` for a move the state machine forbids, ``StaleVersion`` when the
    rollout moved meanwhile, ``Rollout.DoesNotExist`` for an unknown id."""
    rollout = Rollout.objects.select_related("agent__tenant", "environment").get(pk=rollout_id)
    # in an archived tenant, a candidate can still be taken back (never pushed further)
    authorize(actor, "rollouts.change_rollout", rollout.agent.tenant, while_archived=event in _BACK)
    if event not in Event.values or event == Event.START:
        raise ValidationError(
            {"event": ["Choose advance, pause, resume, complete, abort, rollback or shrink."]}
        )
    reason = require_reason(reason)
    environment = environment_lock(environment_id=rollout.environment_id)
    rollout = lock_row(
        Rollout, rollout_id, related=("agent__tenant", "environment", "candidate", "baseline")
    )
    if event not in _BACK:
        # as in an archived tenant: in an archived environment, or for an archived agent, a
        # candidate is only ever taken back
        refuse_archived(agent=rollout.agent, environment=environment)
    # who moved it first, named in the refusal (an operator, or the canary analysis): read
    # only when the check will refuse
    last = (
        RolloutTransition.objects.filter(rollout_id=rollout.pk).order_by("-id").first()
        if expected_version not in (None, rollout.sequence)
        else None
    )
    version_check(
        what=f"Rollout #{rollout.pk}",
        expected=expected_version,
        current=rollout.sequence,
        changed_by=last.actor_label if last is not None else "",
        changed_at=last.created_at if last is not None else rollout.updated_at,
    )
    before = {
        "state": rollout.state,
        "step": rollout.step_index,
        "percentage": rollout.percentage,
        "shadow_percentage": rollout.shadow_percentage,
    }
    if event == Event.SHRINK:
        _check_shrink(rollout)
    target, step = _target(rollout, event)
    effective_event = Event.COMPLETE if target == State.COMPLETED else event
    transition = _move(
        rollout,
        event=effective_event,
        target=target,
        actor=actor,
        reason=reason,
        automatic=automatic,
        step_index=step,
    )
    audit_record(
        actor=actor,
        action=f"rollout.{_ACTION[Rollout.Event(effective_event)]}",
        target=rollout,
        target_label=f"{rollout.agent.slug} v{rollout.candidate.number} in "
        f"{rollout.environment.slug}",
        tenant=rollout.agent.tenant,
        reason=reason,
        before=before,
        after={
            "state": rollout.state,
            "step": rollout.step_index,
            "percentage": rollout.percentage,
            "shadow_percentage": rollout.shadow_percentage,
            "automatic": automatic,
            "revision": transition.revision,
        },
    )
    return TransitionResult(rollout, transition)


def _check_shrink(rollout: Rollout) -> None:
    """Raise ``ValidationError`` unless ``rollout`` serves a canary step with a smaller one
    before it (``Rollout.shrink_to``: shrinking is only ever to a share the plan already
    took)."""
    if rollout.shrink_to is not None:
        return
    if rollout.step_index > 0 or not rollout.percentage or rollout.state == State.COMPLETED:
        refusal = f"A {rollout.get_state_display()} rollout serves no canary step to shrink."
        raise ValidationError({"event": [refusal]})
    raise ValidationError(
        {
            "event": [
                f"The canary is at its first step ({rollout.percentage:g}%): nothing "
                "smaller to go back to. Pause it or roll back."
            ]
        }
    )


_ACTION = {
    Event.SHRINK: "shrunk",
    Event.ADVANCE: "advanced",
    Event.PAUSE: "paused",
    Event.RESUME: "resumed",
    Event.COMPLETE: "completed",
    Event.ABORT: "aborted",
    Event.ROLLBACK: "rolled_back",
}


@dataclass(frozen=True)
class RollbackOutcome:
    """What the one rollback button did: ``rollout`` rolled back (a rollout was running),
    or ``deployment`` (the stable version reverted to the previous known-good one)."""

    revision: int
    rollout: Rollout | None = None
    deployment: Deployment | None = None

    @property
    def summary(self) -> str:
        if self.rollout is not None:
            return (
                f"Rollout #{self.rollout.pk} rolled back: every runtime returns to "
                f"v{self.rollout.baseline.number}."
            )
        assert self.deployment is not None
        return f"Rolled back to v{self.deployment.version.number}."


# "any": the caller did not say which rollout it saw running (the CLI, older API clients)
ANY_ROLLOUT = -1


@transaction.atomic
def release_rollback(
    *,
    actor: Actor,
    agent: Agent,
    environment: Environment,
    reason: str,
    expected_version: int | None = None,
    expected_rollout: int | None = ANY_ROLLOUT,
) -> RollbackOutcome:
    """The on-call's one button: roll back the running rollout of ``agent`` in
    ``environment`` (the candidate leaves every runtime; stable stays), or, when none runs,
    revert the stable version to the previous known-good one (``deployment_rollback``).
    ``expected_version`` is the rollout's ``sequence`` or the deployment's, by which one
    the user saw. ``expected_rollout``: the id of the rollout the user saw running (None:
    none was); when another state is current — typically the second of two clicks, after the
    first rolled the rollout back — ``StaleVersion``, so one click never also reverts the
    stable version. Decided under the environment lock. Raises what those services raise."""
    environment_lock(environment_id=environment.pk)
    running = rollout_active(agent=agent, environment=environment)
    seen_rollout = running.pk if running is not None else None
    if expected_rollout != ANY_ROLLOUT and expected_rollout != seen_rollout:
        last = (
            RolloutTransition.objects.filter(rollout_id=expected_rollout).order_by("-id").first()
            if expected_rollout is not None
            else None
        )
        current = deployment_current(agent=agent, environment=environment)
        what = (
            f"Rollout #{expected_rollout} is no longer running"
            if expected_rollout is not None
            else f"Rollout #{seen_rollout} started"
        )
        raise StaleVersion(
            f"{what} ({agent.name} in {environment.name}): nothing was changed. Check the "
            "new state and roll back again if it is still needed.",
            current_version=running.sequence
            if running is not None
            else (current.sequence if current is not None else 0),
            changed_by=last.actor_label if last is not None else "",
            changed_at=last.created_at if last is not None else None,
        )
    if running is not None:
        result = rollout_transition(
            actor=actor,
            rollout_id=running.pk,
            event=Event.ROLLBACK,
            reason=reason,
            expected_version=expected_version,
        )
        return RollbackOutcome(result.transition.revision, rollout=result.rollout)
    deployment = deployment_rollback(
        actor=actor,
        agent=agent,
        environment=environment,
        reason=reason,
        expected_version=expected_version,
    )
    return RollbackOutcome(deployment.revision, deployment=deployment)


def rollouts_pause_archived(event: events.Event) -> None:
    """``scope.archived`` subscriber (once, after the archive committed): pause every rollout
    of the archived tenant, agent or environment that is shadowing or in canary, so that a
    restore brings it back paused, waiting for an operator, instead of analysed at once on
    evidence from before the archive with its dwell long met (a resume restarts the
    evidence). A pause takes something away, so it goes through in the archived scope; a
    rollout that moved meanwhile (paused, ended) is left as it is.

    Also a ``scope.restored`` subscriber: no rollout of an archived scope can start or move
    forward, so one still shadowing or in canary at the restore is one whose pause was lost
    (a crash between the archive's commit and this handler); it is paused then."""
    field = {"tenant": "agent__tenant_id", "agent": "agent_id", "environment": "environment_id"}
    kind = str(event.payload.get("kind"))
    if kind not in field:
        return
    running = Rollout.objects.filter(
        **{field[kind]: int(event.payload["id"])}, state__in=(State.SHADOW, State.CANARY)
    ).values_list("pk", flat=True)
    verb = "archive" if event.topic == events.SCOPE_ARCHIVED else "restore"
    actor = SystemActor(f"{verb} by {event.payload.get('by') or 'unknown'}"[:150])
    reason = (
        f"{kind.capitalize()} {event.payload.get('name', '')} {verb}d: paused until an "
        "operator resumes it."
    )
    for rollout_id in running:
        try:
            rollout_transition(actor=actor, rollout_id=rollout_id, event=Event.PAUSE, reason=reason)
        except ValidationError:
            continue  # moved meanwhile: nothing left to pause
        except Exception:
            # one rollout's failure must not leave the others running; the restore retries
            log.exception("rollout.archive_pause_failed", rollout_id=rollout_id, scope=kind)
