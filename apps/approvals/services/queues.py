"""Approval queues: create, change, delete (operators), the tenant's default queue, routing a
new request to its queue, and who may decide a queue's requests."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from fnmatch import fnmatchcase
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser, Group
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Q
from guardian.shortcuts import assign_perm

from apps.audit.concurrency import version_check
from apps.audit.services import Actor, actor_identity, audit_record
from apps.core.authz import authorize, can_access_tenant, user_may
from apps.core.lookalike import hidden_character_message, lookalike_key, not_normalized_message
from apps.core.roles import user_is_admin
from apps.tenancy.models import Agent, Tenant

from ..models import RISKS, ApprovalQueue, ApprovalRequest, Status
from ._common import control_character_problem

DECIDE = "approvals.decide_approvalqueue"
NAME_TAKEN = "A queue of this tenant already has this name (names differing only in case count)."
DEFAULT_NAME = "Default"
MAX_TIMEOUT_S = 7 * 24 * 3600
_GLOB = re.compile(r"[A-Za-z0-9_*?\[\]!-]{1,64}")
_ESCALATION_HOPS = 10


def _seconds(value: Any, *, low: int, high: int, field: str, errors: dict[str, list[str]]) -> int:
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        errors[field] = [f"Whole seconds from {low:,} to {high:,}."]
        return low
    return value


def _list(value: Any, field: str, errors: dict[str, list[str]]) -> list[str]:
    if value is None or value == "":
        return []
    if isinstance(value, str):
        value = [part.strip() for part in value.split(",") if part.strip()]
    if not isinstance(value, list | tuple) or len(value) > 50:
        errors[field] = ["A list of at most 50 entries."]
        return []
    if not all(isinstance(item, str) for item in value):
        errors[field] = ["Entries are text."]
        return []
    return sorted({item.strip() for item in value if item.strip()})


def queue_validate(
    *, tenant: Tenant, data: Mapping[str, Any], queue: ApprovalQueue | None = None
) -> dict[str, Any]:
    """Check a queue definition; returns its model fields plus ``approvers`` (users).
    ``data``: ``name``, ``description``, ``position``, ``match_agents`` (slugs),
    ``match_tools`` (globs), ``match_risks``, ``timeout_s``, ``sla_s``, ``escalate_after_s``
    (None: never), ``escalate_to`` (an ``ApprovalQueue`` of ``tenant`` or None),
    ``max_open_per_session``, ``approvers`` (users; omitted: unchanged). Raises
    ``ValidationError`` keyed by field."""
    errors: dict[str, list[str]] = {}
    raw_name = data.get("name")
    name = " ".join(raw_name.split()) if isinstance(raw_name, str) else ""
    if not name:
        errors["name"] = ["Give the queue a name."]
    elif hidden_character_message(name) or not_normalized_message(name):
        errors["name"] = [str(hidden_character_message(name) or not_normalized_message(name))]
    elif twin := _lookalike_twin(tenant, name, queue):
        errors["name"] = [
            f"Looks like the queue {twin!r} (another script's letters): pick another."
        ]
    elif len(name) > 100:
        errors["name"] = ["At most 100 characters."]
    description = data.get("description") or ""
    if not isinstance(description, str) or len(description) > 2000:
        errors["description"] = ["Text of at most 2,000 characters."]
        description = ""
    elif control_character_problem(description):
        errors["description"] = [str(control_character_problem(description))]
    position = data.get("position", 100)
    if position in (None, ""):
        position = 100
    position = _seconds(position, low=0, high=10_000, field="position", errors=errors)
    if "position" in errors:
        errors["position"] = ["A whole number from 0 to 10,000 (lower is tried first)."]
    agents = _list(data.get("match_agents"), "match_agents", errors)
    known = set(Agent.objects.filter(tenant=tenant, slug__in=agents).values_list("slug", flat=True))
    unknown = [slug for slug in agents if slug not in known]
    if unknown:
        errors["match_agents"] = [f"No agent {', '.join(unknown)} in this tenant."]
    tools = _list(data.get("match_tools"), "match_tools", errors)
    bad = [glob for glob in tools if not _GLOB.fullmatch(glob)]
    if bad:
        errors["match_tools"] = [
            f"Not a tool name or glob: {', '.join(bad)} (letters, digits, _ - and * ? [ ])."
        ]
    risks = _list(data.get("match_risks"), "match_risks", errors)
    if any(risk not in RISKS for risk in risks):
        errors["match_risks"] = [f"Risks among {', '.join(RISKS)}."]
    timeout_s = _seconds(
        data.get("timeout_s", 3600), low=60, high=MAX_TIMEOUT_S, field="timeout_s", errors=errors
    )
    sla_s = _seconds(
        data.get("sla_s", 900), low=10, high=MAX_TIMEOUT_S, field="sla_s", errors=errors
    )
    escalate_to = data.get("escalate_to")
    escalate_after = data.get("escalate_after_s")
    if escalate_after in ("", None):
        escalate_after = None
    if escalate_to is not None and (
        not isinstance(escalate_to, ApprovalQueue) or escalate_to.tenant_id != tenant.pk
    ):
        errors["escalate_to"] = ["No such queue in this tenant."]
        escalate_to = None
    if escalate_to is not None and queue is not None and escalate_to.pk == queue.pk:
        errors["escalate_to"] = ["A queue cannot escalate to itself."]
    elif escalate_to is not None and queue is not None and _leads_back(escalate_to, queue):
        errors["escalate_to"] = [f"{escalate_to.name} escalates back here: pick another queue."]
    if escalate_after is not None:
        escalate_after = _seconds(
            escalate_after, low=60, high=MAX_TIMEOUT_S, field="escalate_after_s", errors=errors
        )
        if escalate_to is None and "escalate_to" not in errors:
            errors["escalate_to"] = ["Name the queue to escalate to."]
        elif (
            "escalate_after_s" not in errors
            and "timeout_s" not in errors
            and escalate_after >= timeout_s
        ):
            errors["escalate_after_s"] = ["Sooner than the timeout, or it never happens."]
    elif escalate_to is not None and "escalate_to" not in errors:
        errors["escalate_after_s"] = ["Say after how long to escalate."]
    max_open = _seconds(
        data.get("max_open_per_session", 5),
        low=1,
        high=1000,
        field="max_open_per_session",
        errors=errors,
    )
    if "max_open_per_session" in errors:
        errors["max_open_per_session"] = ["A whole number from 1 to 1,000."]
    approvers = data.get("approvers")
    if approvers is not None:
        approvers = list(approvers)
        refused = [user for user in approvers if not may_be_approver(user, tenant)]
        if refused:
            errors["approvers"] = [approvers_refused([user.get_username() for user in refused])]
    if errors:
        raise ValidationError(errors)
    return {
        "name": name,
        "description": description,
        "position": position,
        "match_agents": agents,
        "match_tools": tools,
        "match_risks": [risk for risk in RISKS if risk in risks],
        "timeout_s": timeout_s,
        "sla_s": sla_s,
        "escalate_after_s": escalate_after if escalate_to is not None else None,
        "escalate_to": escalate_to if escalate_after is not None else None,
        "max_open_per_session": max_open,
        "approvers": approvers,
    }


def _lookalike_twin(tenant: Tenant, name: str, queue: ApprovalQueue | None) -> str | None:
    """Another queue of ``tenant`` whose name reads like ``name`` but is other letters (a
    Cyrillic letter ie for a Latin e): an approver could not tell them apart in the inbox.
    Names equal but for case are ``NAME_TAKEN``'s, not this."""
    key = lookalike_key(name).casefold()
    others = ApprovalQueue.objects.filter(tenant=tenant).values_list("name", flat=True)
    if queue is not None:
        others = others.exclude(pk=queue.pk)
    return next(
        (
            other
            for other in others
            if other.casefold() != name.casefold() and lookalike_key(other).casefold() == key
        ),
        None,
    )


def _leads_back(start: ApprovalQueue, target: ApprovalQueue) -> bool:
    current: ApprovalQueue | None = start
    for _ in range(_ESCALATION_HOPS):
        if current is None or current.escalate_to_id is None:
            return False
        if current.escalate_to_id == target.pk:
            return True
        current = ApprovalQueue.objects.filter(pk=current.escalate_to_id).first()
    return True  # a chain this long is a loop or a mistake


def approvers_refused(names: Iterable[str]) -> str:
    """The field error for usernames that cannot approve in a tenant. One message whether a
    user does not exist or is another tenant's, so it tells nobody who exists elsewhere."""
    return (
        f"{', '.join(names)}: no user of this tenant who may decide (needs the Approver, "
        "Operator or Admin role and access to the tenant)."
    )


def may_be_approver(user: AbstractBaseUser, tenant: Tenant) -> bool:
    """Whether ``user``'s role may decide approvals and the tenant is one of theirs."""
    return bool(user.is_active and user_may(user, DECIDE) and can_access_tenant(user, tenant))


def may_decide(user: Any, queue: ApprovalQueue) -> bool:
    """Whether ``user`` may decide ``queue``'s requests: a role that decides, the tenant, and
    membership of the queue's approvers (Admins decide in every queue)."""
    if not may_be_approver(user, queue.tenant):
        return False
    return user_is_admin(user) or bool(user.has_perm(DECIDE, queue))


def queue_approvers(queue: ApprovalQueue) -> list[Any]:
    """The members of the queue's approver group, by username."""
    return list(queue.approvers.user_set.order_by("username"))


def _group_for(tenant: Tenant, name: str) -> Group:
    # Group names are unique site-wide; the queue's id is not known yet, so a counter.
    base = f"approvers:{tenant.slug}:{name}"[:140]
    candidate, index = base, 1
    while Group.objects.filter(name=candidate).exists():
        index += 1
        candidate = f"{base}#{index}"
    return Group.objects.create(name=candidate)


def _set_approvers(queue: ApprovalQueue, users: Iterable[Any] | None) -> None:
    if users is not None:
        queue.approvers.user_set.set(list(users))


@transaction.atomic
def queue_create(
    *, actor: Actor, tenant: Tenant, data: Mapping[str, Any], reason: str = ""
) -> ApprovalQueue:
    """Create a queue of ``tenant`` (see ``queue_validate``) with its approver group holding
    ``decide_approvalqueue`` on it. Raises ``ValidationError``, ``PermissionDenied``."""
    authorize(actor, "approvals.add_approvalqueue", tenant)
    fields = queue_validate(tenant=tenant, data=data)
    approvers = fields.pop("approvers")
    if ApprovalQueue.objects.filter(tenant=tenant, name__iexact=fields["name"]).exists():
        raise ValidationError({"name": [NAME_TAKEN]})
    label = actor_identity(actor)[1]
    try:
        with transaction.atomic():
            group = _group_for(tenant, fields["name"])
            queue = ApprovalQueue.objects.create(
                tenant=tenant, approvers=group, updated_by_label=label, **fields
            )
    except IntegrityError:
        raise ValidationError({"name": [NAME_TAKEN]}) from None
    assign_perm(DECIDE, group, queue)
    _set_approvers(queue, approvers)
    audit_record(
        actor=actor,
        action="approval_queue.created",
        target=queue,
        tenant=tenant,
        reason=reason.strip(),
        after={**queue.snapshot(), "approvers": [u.get_username() for u in approvers or []]},
    )
    return queue


@transaction.atomic
def queue_update(
    *,
    actor: Actor,
    queue: ApprovalQueue,
    data: Mapping[str, Any],
    expected_version: int | None = None,
    reason: str = "",
) -> ApprovalQueue:
    """Replace the definition of ``queue`` (and its approvers, when ``data`` names them).
    Requests already waiting keep their expiry; new ones use the new settings. Raises
    ``ValidationError``, ``StaleVersion``, ``PermissionDenied``."""
    authorize(actor, "approvals.change_approvalqueue", queue.tenant)
    locked = (
        ApprovalQueue.objects.select_for_update(of=("self",))
        .select_related("tenant", "escalate_to", "approvers")
        .get(pk=queue.pk)
    )
    version_check(
        what=f"The queue {locked.name}",
        expected=expected_version,
        current=locked.version,
        changed_by=locked.updated_by_label,
        changed_at=locked.updated_at,
    )
    fields = queue_validate(tenant=locked.tenant, data=data, queue=locked)
    approvers = fields.pop("approvers")
    if (
        ApprovalQueue.objects.filter(tenant=locked.tenant, name__iexact=fields["name"])
        .exclude(pk=locked.pk)
        .exists()
    ):
        raise ValidationError({"name": [NAME_TAKEN]})
    before = {**locked.snapshot(), "approvers": [u.get_username() for u in queue_approvers(locked)]}
    for name, value in fields.items():
        setattr(locked, name, value)
    locked.version += 1
    locked.updated_by_label = actor_identity(actor)[1]
    try:
        with transaction.atomic():
            locked.save()
    except IntegrityError:
        raise ValidationError({"name": [NAME_TAKEN]}) from None
    _set_approvers(locked, approvers)
    audit_record(
        actor=actor,
        action="approval_queue.changed",
        target=locked,
        tenant=locked.tenant,
        reason=reason.strip(),
        before=before,
        after={
            **locked.snapshot(),
            "approvers": [u.get_username() for u in queue_approvers(locked)],
        },
    )
    return locked


class QueueInUse(Exception):
    """The queue cannot be deleted (the default queue, or one that holds requests)."""


@transaction.atomic
def queue_delete(*, actor: Actor, queue: ApprovalQueue, reason: str = "") -> None:
    """Delete a queue that never held a request (requests keep their queue for the record).
    Raises ``QueueInUse``, ``PermissionDenied``."""
    authorize(actor, "approvals.delete_approvalqueue", queue.tenant)
    locked = ApprovalQueue.objects.select_for_update(of=("self",)).get(pk=queue.pk)
    if locked.is_default:
        raise QueueInUse("The default queue takes what no other queue matches: it stays.")
    # escalated_from too: a request escalated away was routed here all the same
    held = ApprovalRequest.objects.filter(Q(queue=locked) | Q(escalated_from=locked)).count()
    if held:
        raise QueueInUse(
            f"{held:,} requests were routed here and keep it for their record: clear its "
            "routing rules instead, so nothing new arrives."
        )
    before = locked.snapshot()
    ApprovalQueue.objects.filter(escalate_to=locked).update(escalate_to=None, escalate_after_s=None)
    group = locked.approvers
    audit_record(
        actor=actor,
        action="approval_queue.deleted",
        target=locked,
        tenant=locked.tenant,
        reason=reason.strip(),
        before=before,
    )
    locked.delete()
    group.delete()


def queue_default(tenant: Tenant) -> ApprovalQueue:
    """The tenant's default queue, created (empty of approvers: Admins decide) the first time
    it is needed. Runs in the caller's transaction."""
    queue = ApprovalQueue.objects.filter(tenant=tenant, is_default=True).first()
    if queue is not None:
        return queue
    try:
        with transaction.atomic():
            group = _group_for(tenant, DEFAULT_NAME)
            queue = ApprovalQueue.objects.create(
                tenant=tenant,
                name=_free_name(tenant, DEFAULT_NAME),
                is_default=True,
                position=10_000,
                approvers=group,
                description="Takes every request no other queue's rules match.",
                updated_by_label="system:approvals",
            )
            assign_perm(DECIDE, group, queue)
    except IntegrityError:  # created meanwhile by another request
        return ApprovalQueue.objects.get(tenant=tenant, is_default=True)
    return queue


def _free_name(tenant: Tenant, name: str) -> str:
    candidate, index = name, 1
    while ApprovalQueue.objects.filter(tenant=tenant, name__iexact=candidate).exists():
        index += 1
        candidate = f"{name} {index}"
    return candidate


def queue_route(*, tenant: Tenant, agent_slug: str, tool: str, risk: str) -> ApprovalQueue:
    """The queue a new request goes to: the first (by position, then name) whose rules all
    match — agents, tool globs, risks; an empty rule matches anything — else the default."""
    for queue in ApprovalQueue.objects.filter(tenant=tenant, is_default=False).order_by(
        "position", "name"
    ):
        if queue.match_agents and agent_slug not in queue.match_agents:
            continue
        if queue.match_tools and not any(fnmatchcase(tool, glob) for glob in queue.match_tools):
            continue
        if queue.match_risks and risk not in queue.match_risks:
            continue
        return queue
    return queue_default(tenant)


def users_who_may_approve(tenant: Tenant) -> list[Any]:
    """Active users who may be made approvers of a queue of ``tenant``, by username."""
    users = get_user_model().objects.filter(is_active=True).order_by("username")
    return [user for user in users if may_be_approver(user, tenant)]


__all__ = [
    "DECIDE",
    "QueueInUse",
    "Status",
    "approvers_refused",
    "may_be_approver",
    "may_decide",
    "queue_approvers",
    "queue_create",
    "queue_default",
    "queue_delete",
    "queue_route",
    "queue_update",
    "queue_validate",
    "users_who_may_approve",
]
