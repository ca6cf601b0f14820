"""Deploy and roll back: the plain, immediate path. Staged rollouts end in the same service."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import transaction

from apps.accounts.authz import authorize
from apps.audit.services import Actor, actor_identity, audit_record
from apps.bundles.models import BundleVersion
from apps.tenancy.models import Agent, Environment
from apps.tenancy.services import environment_revision_bump

from .models import Deployment


@transaction.atomic
def deployment_create(
    *,
    actor: Actor,
    agent: Agent,
    environment: Environment,
    version: BundleVersion,
    reason: str,
    kind: str = Deployment.Kind.DEPLOY,
) -> Deployment:
    """Make ``version`` the stable version of ``agent`` in ``environment`` now."""
    authorize(actor, "rollouts.add_deployment", agent.tenant)
    errors: dict[str, list[str]] = {}
    if not (reason or "").strip():
        errors["reason"] = ["Say why: the reason is kept in the audit log."]
    if environment.tenant_id != agent.tenant_id or environment.is_archived:
        errors["environment"] = ["Choose an active environment of the agent's tenant."]
    if agent.is_archived:
        errors["agent"] = ["This agent is archived."]
    if version.agent_id != agent.pk:
        errors["version"] = ["This version belongs to another agent."]
    if errors:
        raise ValidationError(errors)
    # Lock the environment row: concurrent deploys and rollbacks of it take turns, so each
    # sees the deployment it replaces.
    Environment.objects.select_for_update().get(pk=environment.pk)
    current = (
        Deployment.objects.filter(agent=agent, environment=environment).order_by("-id").first()
    )
    if current is not None and current.version_id == version.pk:
        raise ValidationError(
            {"version": [f"Version {version} is already the stable version here."]}
        )
    revision = environment_revision_bump(environment_id=environment.pk)
    user, label = actor_identity(actor)
    deployment = Deployment.objects.create(
        agent=agent,
        environment=environment,
        version=version,
        previous=current,
        kind=kind,
        deployed_by=user,
        deployed_by_label=label,
        reason=reason.strip(),
        revision=revision,
    )
    audit_record(
        actor=actor,
        action=f"deployment.{'rolled_back' if kind == Deployment.Kind.ROLLBACK else 'deployed'}",
        target=deployment,
        target_label=f"{agent.slug} in {environment.slug}",
        tenant=agent.tenant,
        reason=reason,
        before={"stable_version": str(current.version) if current else None},
        after={"stable_version": str(version), "revision": revision},
    )
    return deployment


@transaction.atomic
def deployment_rollback(
    *, actor: Actor, agent: Agent, environment: Environment, reason: str
) -> Deployment:
    """Back to the version that was stable before the current one."""
    authorize(actor, "rollouts.add_deployment", agent.tenant)
    Environment.objects.select_for_update().get(pk=environment.pk)
    current = (
        Deployment.objects.select_related("previous__version")
        .filter(agent=agent, environment=environment)
        .order_by("-id")
        .first()
    )
    if current is None or current.previous is None:
        raise ValidationError({"version": ["There is no earlier version to roll back to."]})
    return deployment_create(
        actor=actor,
        agent=agent,
        environment=environment,
        version=current.previous.version,
        reason=reason,
        kind=Deployment.Kind.ROLLBACK,
    )
