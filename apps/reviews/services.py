"""Every change of review sampling: authorised, in one transaction, audited."""

from __future__ import annotations

from decimal import Decimal

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from apps.audit.services import Actor, audit_record
from apps.core.authz import authorize
from apps.tenancy.models import Agent, Environment
from apps.tenancy.services import agent_lock, refuse_archived

from .models import Grade, ReviewGrade, ReviewPolicy


@transaction.atomic
def review_policy_set(
    *, actor: Actor, agent: Agent, share: Decimal, reason: str = ""
) -> ReviewPolicy:
    """Set the share (0 to 1) of ``agent``'s sessions that go to its review queue. Audited
    as ``review_policy.updated`` with before/after; a no-op changes nothing."""
    authorize(actor, "reviews.change_reviewpolicy", agent.tenant)
    if not Decimal(0) <= share <= Decimal(1):
        raise ValidationError({"share": ["Give a share from 0 to 1 (0.05 = 5 % of sessions)."]})
    # the agent's row lock serialises two operators setting the share at once
    locked = Agent.objects.select_for_update(no_key=True).filter(pk=agent.pk).first()
    if locked is None or locked.is_archived:
        raise ValidationError({"agent": [f"{agent.slug} is archived."]})
    policy, _ = ReviewPolicy.objects.get_or_create(agent=agent)
    if policy.share == share:
        return policy
    before = policy.snapshot()
    policy.share = share
    policy.full_clean()
    policy.version += 1
    policy.save(update_fields=["share", "version"])
    audit_record(
        actor=actor,
        action="review_policy.updated",
        target=agent,
        tenant=agent.tenant,
        reason=reason,
        before=before,
        after=policy.snapshot(),
    )
    return policy


@transaction.atomic
def review_grade(
    *,
    actor: Actor,
    agent: Agent,
    environment: Environment,
    session_id: str,
    grade: str,
    note: str = "",
) -> ReviewGrade:
    """Grade one session (``good``, ``bad``, ``policy_issue``) with an optional note; grading
    it again replaces the grade. Audited as ``review.graded`` (before/after)."""
    authorize(actor, "reviews.add_reviewgrade", agent.tenant)
    errors: dict[str, list[str]] = {}
    if environment.tenant_id != agent.tenant_id:
        errors["environment"] = ["Choose an environment of the agent's tenant."]
    if grade not in Grade.values:
        errors["grade"] = [f"Choose one of {', '.join(Grade.values)}."]
    session_id = session_id.strip()
    if not session_id or len(session_id) > 128:
        errors["session_id"] = ["Name the session (1 to 128 characters)."]
    if len(note) > 5000:
        errors["note"] = ["At most 5,000 characters."]
    if errors:
        raise ValidationError(errors)
    # the agent's row lock serialises grading a session (and an archive of the agent)
    refuse_archived(agent=agent_lock(agent_id=agent.pk), environment=environment)
    existing = ReviewGrade.objects.filter(
        agent=agent, environment=environment, session_id=session_id
    ).first()
    before = existing.snapshot() if existing is not None else None
    row = existing or ReviewGrade(
        tenant_id=agent.tenant_id, agent=agent, environment=environment, session_id=session_id
    )
    row.grade = grade
    row.note = note.strip()
    row.reviewer = actor if getattr(actor, "is_authenticated", False) else None  # type: ignore[assignment]
    row.graded_at = timezone.now()
    row.save()
    audit_record(
        actor=actor,
        action="review.graded",
        target=row,
        tenant=agent.tenant,
        before=before,
        after=row.snapshot(),
    )
    return row
