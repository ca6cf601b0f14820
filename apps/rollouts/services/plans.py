"""Editing an environment's rollout plan (the document ``apps.rollouts.plans`` describes)."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction

from apps.audit.concurrency import version_check
from apps.audit.services import Actor, actor_identity, audit_record
from apps.core.authz import authorize
from apps.core.reasons import require_reason
from apps.tenancy.models import Environment
from apps.tenancy.services import environment_lock

from ..models import RolloutPlan
from ..plans import default_plan, plan_normalised, plan_validate


@transaction.atomic
def rollout_plan_set(
    *,
    actor: Actor,
    environment: Environment,
    document: Any,
    reason: str,
    expected_version: int | None = None,
) -> RolloutPlan:
    """Replace the rollout plan of ``environment`` with ``document`` (validated, defaults
    filled in). Rollouts already running keep the plan they started with.

    ``expected_version``: the plan's ``version`` the user saw (0 or 1 for the default, never
    saved; None: no check). Raises ``ValidationError`` keyed by the document's dotted paths
    (``steps.1.percentage``) and ``StaleVersion``."""
    authorize(actor, "rollouts.change_rolloutplan", environment.tenant)
    errors = plan_validate(document)
    reason = require_reason(reason, errors=errors)
    if errors:
        raise ValidationError(errors)
    if environment_lock(environment_id=environment.pk).is_archived:
        raise ValidationError({"environment": [f"{environment.name} is archived."]})
    plan = RolloutPlan.objects.select_for_update().filter(environment=environment).first()
    current_version = plan.version if plan is not None else 1
    version_check(
        what=f"The rollout plan of {environment.name}",
        expected=None if expected_version in (None, 0) and plan is None else expected_version,
        current=current_version,
        changed_by=plan.updated_by_label if plan else "",
        changed_at=plan.updated_at if plan else None,
    )
    before = plan.document if plan is not None else default_plan()
    normalised = plan_normalised(document)
    _, label = actor_identity(actor)
    if plan is None:
        plan = RolloutPlan.objects.create(
            environment=environment, document=normalised, version=2, updated_by_label=label
        )
    else:
        plan.document = normalised
        plan.version += 1
        plan.updated_by_label = label
        plan.save()
    audit_record(
        actor=actor,
        action="rollout_plan.changed",
        target=plan,
        target_label=f"rollout plan of {environment.slug}",
        tenant=environment.tenant,
        reason=reason,
        before=before,
        after=normalised,
    )
    return plan
