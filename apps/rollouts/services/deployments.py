"""Deploy and roll back: the plain, immediate path. Staged rollouts end in the same service.

Both act on "the current stable version" of an agent in an environment, so both take the
version the user saw (``expected_version``: the live deployment's ``sequence``, 0 for none)
and refuse with ``StaleVersion`` when the history moved on in between. The release history
is the state machine of ``Deployment.TRANSITIONS``; ``_replace_live`` is its one mover."""

from __future__ import annotations

import structlog
from django.core.exceptions import ValidationError
from django.db import transaction

from apps.audit.concurrency import version_check
from apps.audit.services import Actor, actor_identity, audit_record
from apps.bundles.models import BundleVersion
from apps.core.authz import authorize
from apps.core.reasons import require_reason
from apps.tenancy.models import Agent, Environment
from apps.tenancy.services import (
    agent_lock,
    archived_errors,
    environment_lock,
    environment_revision_bump,
    refuse_archived,
)

from ..models import Deployment
from ..selectors import deployment_sequence, rollback_plan, rollback_targets, rollout_active
from .gating import gate_enforce

log = structlog.get_logger(__name__)


def _lock_history(*, agent: Agent, environment: Environment) -> Environment:
    # Lock the environment row: concurrent deploys and rollbacks of it take turns, so each
    # sees the deployment it replaces (the one-live-row constraint backs this up).
    return environment_lock(environment_id=environment.pk)


def _live(*, agent: Agent, environment: Environment) -> Deployment | None:
    return (
        Deployment.objects.select_related("version")
        .filter(agent=agent, environment=environment, state=Deployment.State.LIVE)
        .first()
    )


def _check_seen(
    *, agent: Agent, environment: Environment, current: Deployment | None, expected: int | None
) -> None:
    version_check(
        what=f"The stable version of {agent.name} in {environment.name}",
        expected=expected,
        current=deployment_sequence(current),
        changed_by=current.deployed_by_label if current else "",
        changed_at=current.created_at if current else None,
    )


def _replace_live(
    *,
    actor: Actor,
    agent: Agent,
    environment: Environment,
    current: Deployment | None,
    version: BundleVersion,
    kind: str,
    reason: str,
    restores: Deployment | None = None,
    gate_override: str = "",
    gate_failures: list[str] | None = None,
) -> Deployment:
    """The one transition of the release history: ``current`` leaves ``live`` for the
    state its replacement's kind dictates, and a new live row takes its place."""
    if current is not None:
        source, target_state = Deployment.TRANSITIONS[kind]
        if current.state != source:  # the lock makes this unreachable; say so if not
            raise ValidationError(
                {"version": [f"Deployment #{current.pk} is {current.state}, not {source}."]}
            )
        current.state = target_state
        current.save(update_fields=["state"])
    revision = environment_revision_bump(environment_id=environment.pk)
    user, label = actor_identity(actor)
    deployment = Deployment.objects.create(
        agent=agent,
        environment=environment,
        version=version,
        previous=current,
        restores=restores,
        kind=kind,
        state=Deployment.State.LIVE,
        sequence=deployment_sequence(current) + 1,
        deployed_by=user,
        deployed_by_label=label,
        reason=reason.strip(),
        revision=revision,
        gate_override=gate_override,
    )
    rollback = kind == Deployment.Kind.ROLLBACK
    audit_record(
        actor=actor,
        action="deployment.rolled_back" if rollback else "deployment.deployed",
        target=deployment,
        target_label=f"{agent.slug} in {environment.slug}",
        tenant=agent.tenant,
        reason=reason,
        before={
            "stable_version": str(current.version) if current else None,
            "sequence": deployment_sequence(current),
            "previous_state": current.state if current else None,
        },
        after={
            "stable_version": str(version),
            "sequence": deployment.sequence,
            "revision": revision,
            **({"restores_deployment": restores.pk} if restores else {}),
            **(
                {"gate_override": gate_override, "gate_failures": gate_failures or []}
                if gate_override
                else {}
            ),
        },
    )
    log.info(
        "deployment.rolled_back" if rollback else "deployment.deployed",
        deployment_id=deployment.pk,
        agent_id=agent.pk,
        environment_id=environment.pk,
        revision=revision,
    )
    return deployment


@transaction.atomic
def deployment_create(
    *,
    actor: Actor,
    agent: Agent,
    environment: Environment,
    version: BundleVersion,
    reason: str,
    expected_version: int | None = None,
    override_reason: str = "",
) -> Deployment:
    """Make ``version`` the stable version of ``agent`` in ``environment`` now; the live
    deployment it replaces becomes ``superseded`` (known-good).

    ``expected_version``: the live deployment's ``sequence`` the user saw (0: nothing was
    deployed); None skips the check (CLI, system actors). Raises ``ValidationError`` by
    field for bad input and ``StaleVersion`` when the stable version changed meanwhile.

    The environment's promotion gate must be met by ``version`` (``gating.gate_enforce``):
    else ``GateNotMet`` on ``version``, one line per missing or short evaluation, unless
    ``override_reason`` is given by an actor with ``rollouts.override_rollout_gate``
    (Admins; ``PermissionDenied`` for anyone else) — recorded in the audit event's
    ``after`` as ``gate_override`` and ``gate_failures``."""
    authorize(actor, "rollouts.add_deployment", agent.tenant)
    errors: dict[str, list[str]] = {}
    reason = require_reason(reason, errors=errors)
    errors.update(archived_errors(agent=agent, environment=environment))
    if environment.tenant_id != agent.tenant_id:
        errors["environment"] = ["Choose an environment of the agent's tenant."]
    if version.agent_id != agent.pk:
        errors["version"] = ["This version belongs to another agent."]
    if errors:
        raise ValidationError(errors)
    # again under the lock: an archive committing meanwhile is seen
    refuse_archived(environment=_lock_history(agent=agent, environment=environment))
    current = _live(agent=agent, environment=environment)
    _check_seen(agent=agent, environment=environment, current=current, expected=expected_version)
    running = rollout_active(agent=agent, environment=environment)
    if running is not None:
        # Deploying past a running rollout would judge the candidate against a baseline
        # that no longer serves: finish or roll back the rollout first.
        raise ValidationError(
            {
                "version": [
                    f"Rollout #{running.pk} of v{running.candidate.number} is running "
                    "here: complete, abort or roll it back first."
                ]
            }
        )
    if current is not None and current.version_id == version.pk:
        raise ValidationError(
            {"version": [f"Version {version} is already the stable version here."]}
        )
    override, failures = gate_enforce(
        actor=actor,
        version=version,
        environment=environment,
        override_reason=override_reason,
        field="version",
        what="deploy",
    )
    return _replace_live(
        actor=actor,
        agent=agent,
        environment=environment,
        current=current,
        version=version,
        kind=Deployment.Kind.DEPLOY,
        reason=reason,
        gate_override=override,
        gate_failures=failures,
    )


@transaction.atomic
def deployment_rollback(
    *,
    actor: Actor,
    agent: Agent,
    environment: Environment,
    reason: str,
    expected_version: int | None = None,
    target_version: BundleVersion | None = None,
) -> Deployment:
    """Back to the last known-good version before the current one (``rollback_plan``),
    never refused by a promotion gate (it served here before: on-call's one button);
    the current deployment becomes ``rolled_back`` and its version is never a rollback
    target again. Refused (``ValidationError`` on ``version``) when there is no such
    version; ``StaleVersion`` when the stable version changed since the user saw
    ``expected_version`` (None: no check). ``target_version``: go back further, to this
    earlier known-good version (superseded here, never rolled back from); anything else is
    refused on ``version`` naming the versions a rollback may go to."""
    authorize(actor, "rollouts.add_deployment", agent.tenant)
    reason = require_reason(reason)
    if environment.tenant_id != agent.tenant_id:
        raise ValidationError({"environment": ["Choose an environment of the agent's tenant."]})
    locked = _lock_history(agent=agent, environment=environment)
    refuse_archived(agent=agent_lock(agent_id=agent.pk), environment=locked)
    running = rollout_active(agent=agent, environment=environment)
    if running is not None:
        # Moving stable under a running rollout would leave it judged against a baseline no
        # runtime serves: roll the rollout back (release_rollback) or finish it first.
        raise ValidationError(
            {
                "version": [
                    f"Rollout #{running.pk} of v{running.candidate.number} is running "
                    "here: roll it back or finish it first."
                ]
            }
        )
    plan = rollback_plan(agent=agent, environment=environment)
    _check_seen(
        agent=agent, environment=environment, current=plan.current, expected=expected_version
    )
    if plan.target is None:
        raise ValidationError({"version": [plan.refusal]})
    target = plan.target
    if target_version is not None and target_version.pk != target.version_id:
        allowed = rollback_targets(agent=agent, environment=environment)
        chosen = next((d for d in allowed if d.version_id == target_version.pk), None)
        if chosen is None:
            raise ValidationError(
                {
                    "version": [
                        f"v{target_version.number} is not a known-good version of {agent.name} "
                        f"in {environment.name} to roll back to (it never served here before "
                        "the current one, or was rolled back from); a rollback may go to: "
                        + ", ".join(f"v{d.version.number}" for d in allowed)
                        + ". Deploy it explicitly instead."
                    ]
                }
            )
        target = chosen
    return _replace_live(
        actor=actor,
        agent=agent,
        environment=environment,
        current=plan.current,
        kind=Deployment.Kind.ROLLBACK,
        reason=reason,
        version=target.version,
        restores=target,
    )
