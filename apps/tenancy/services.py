"""Every change to tenants, agents and environments: authorised, validated, in one
transaction, with one audit event."""

from __future__ import annotations

import zoneinfo
from collections.abc import Iterable
from typing import Any, TypeVar

from django.core.exceptions import ValidationError
from django.db import models, transaction
from django.db.models import F, Max
from django.utils import timezone
from guardian.shortcuts import assign_perm

from apps.audit.concurrency import last_change, version_check
from apps.audit.services import Actor, SystemActor, actor_identity, audit_record
from apps.core import events
from apps.core.authz import TENANT_ARCHIVED, authorize
from apps.core.events import publish_after_commit
from apps.core.locks import lock_row
from apps.core.reasons import require_reason
from apps.core.roles import TENANT_ACCESS_PERMISSION, user_is_admin

from .models import Agent, Environment, Tenant
from .selectors import environment_place_taken

M = TypeVar("M", bound=models.Model)
A = TypeVar("A", Tenant, Agent, Environment)

DEFAULT_ENVIRONMENTS = [
    ("development", "Development", False),
    ("staging", "Staging", False),
    ("production", "Production", True),
]


# --------------------------------------------------------------------------- row locks
# The one lock per tenancy model, for this app's services and every other app's (see
# apps/core/locks.py: FOR NO KEY UPDATE of the row alone, so lockers never deadlock on the
# spelling). Call inside the transaction of the change the lock serialises.


def tenant_lock(*, tenant_id: int) -> Tenant:
    """Lock tenant ``tenant_id`` until the transaction ends and return it re-read. Serialises
    changes that span a tenant (environment positions, kill-switch duplicate checks)."""
    return lock_row(Tenant, tenant_id)


def agent_lock(*, agent_id: int) -> Agent:
    """Lock agent ``agent_id`` (its tenant joined, not locked) and return it re-read.
    Serialises changes of the agent and what is numbered per agent (bundle versions)."""
    return lock_row(Agent, agent_id, related=("tenant",))


def environment_lock(*, environment_id: int) -> Environment:
    """Lock environment ``environment_id`` (its tenant joined, not locked) and return it
    re-read. Serialises changes of the environment and of what lives in it (flags, the
    release history, its promotion gate). Archived environments are returned too: the
    caller decides what archiving forbids."""
    return lock_row(Environment, environment_id, related=("tenant",))


def refuse_archived(
    *,
    tenant: Tenant | None = None,
    agent: Agent | None = None,
    environment: Environment | None = None,
) -> None:
    """The one check of an archived agent or environment (and of a tenant, for a service
    that does not go through ``apps.core.authz.authorize``, which refuses an archived tenant
    itself): what is archived is frozen, so a change to it or in it is refused until it is
    restored. Raises ``ValidationError`` with one field error per archived scope given, e.g.
    ``{"agent": ["support-bot is archived."], "environment": ["Staging is archived."]}``;
    returns when none is archived. Pass rows re-read under the lock that serialises the
    change (``agent_lock``, ``environment_lock``) so an archive committing meanwhile is seen.
    A change that takes something away (a candidate taken back, a token revoked) does not
    call this."""
    errors = archived_errors(tenant=tenant, agent=agent, environment=environment)
    if errors:
        raise ValidationError(errors)


def archived_errors(
    *,
    tenant: Tenant | None = None,
    agent: Agent | None = None,
    environment: Environment | None = None,
) -> dict[str, list[str]]:
    """``refuse_archived``'s field errors, for a service that collects all of its errors
    before it refuses (empty when none is archived)."""
    errors: dict[str, list[str]] = {}
    if tenant is not None and tenant.is_archived:
        errors["tenant"] = [TENANT_ARCHIVED]
    if agent is not None and agent.is_archived:
        errors["agent"] = [f"{agent.slug} is archived."]
    if environment is not None and environment.is_archived:
        errors["environment"] = [f"{environment.name} is archived."]
    return errors


def _validate_time_zone(value: str) -> None:
    if value not in zoneinfo.available_timezones():
        raise ValidationError(
            {"time_zone": [f"Unknown time zone {value!r}; use an IANA name such as Europe/Paris."]}
        )


def _require_unique_slug(queryset: models.QuerySet[Any], slug: str, what: str) -> None:
    # Checked here for a message on the field; the database constraint still guards races.
    if queryset.filter(slug=slug).exists():
        raise ValidationError({"slug": [f"{what} with slug {slug!r} already exists."]})


def _check_seen(instance: Tenant | Agent | Environment, expected_version: int | None) -> None:
    """Refuse a change based on a ``version`` of ``instance`` (read under its lock or its
    tenant's) that moved on: :class:`StaleVersion` naming who made the newest audited change
    and when (docs/decisions/0007, 0013). ``expected_version`` None: no check (the CLI,
    system actors, API clients that do not send one)."""
    if expected_version is None or expected_version == instance.version:
        return
    changed_by, changed_at = last_change(
        target_type=instance._meta.label_lower, target_id=instance.pk
    )
    version_check(
        what=f"{type(instance).__name__} {instance.name}",
        expected=expected_version,
        current=instance.version,
        changed_by=changed_by,
        changed_at=changed_at,
    )


def _save_changes(instance: M, changes: dict[str, Any]) -> list[str]:
    """Apply the fields that differ and grow ``version`` by one when any did (the caller
    holds the row lock, so ``+= 1`` cannot lose a concurrent bump)."""
    changed = [field for field, value in changes.items() if getattr(instance, field) != value]
    for field in changed:
        setattr(instance, field, changes[field])
    if changed:
        instance.full_clean()
        instance.version += 1  # type: ignore[attr-defined]
        instance.save(update_fields=[*changed, "version"])
    return changed


def _lock_same(instance: A) -> A:
    """The tenant, agent or environment ``instance`` re-read under its one lock."""
    if isinstance(instance, Tenant):
        return tenant_lock(tenant_id=instance.pk)
    if isinstance(instance, Agent):
        return agent_lock(agent_id=instance.pk)
    return environment_lock(environment_id=instance.pk)


def _set_archived(
    *,
    actor: Actor,
    instance: A,
    archived: bool,
    reason: str,
    expected_version: int | None,
    changes: dict[str, Any] | None = None,
) -> A:
    """Archive or restore a tenant, agent or environment: the shared shape of those services
    (the caller has authorised). Locks the row, refuses a stale ``expected_version`` and a
    no-op, grows ``version``, audits before/after. ``changes``: further fields to change
    with it (a restored environment's free position)."""
    reason = require_reason(reason)
    model = type(instance)
    noun = str(model._meta.model_name)
    instance = _lock_same(instance)
    _check_seen(instance, expected_version)
    if instance.is_archived == archived:
        state = "already archived" if archived else "not archived"
        raise ValidationError({noun: [f"This {noun} is {state}."]})
    before = instance.snapshot()
    extra: dict[str, Any] = changes or {}
    for field, value in extra.items():
        setattr(instance, field, value)
    instance.archived_at = timezone.now() if archived else None
    instance.version += 1
    instance.save(update_fields=["archived_at", "version", *extra])
    audit_record(
        actor=actor,
        action=f"{noun}.{'archived' if archived else 'restored'}",
        target=instance,
        tenant=instance if isinstance(instance, Tenant) else instance.tenant,
        reason=reason,
        before=before,
        after=instance.snapshot(),
    )
    # After commit, caches in front of Django (the fast path's token caches) refuse the
    # scope's tokens at once, or stop refusing them (see apps.core.events for who listens).
    publish_after_commit(
        events.SCOPE_ARCHIVED if archived else events.SCOPE_RESTORED,
        f"{noun}:{instance.pk}",
        {"kind": noun, "id": instance.pk, "name": instance.name, "by": actor_identity(actor)[1]},
    )
    return instance


# --------------------------------------------------------------------------- tenants


@transaction.atomic
def tenant_create(
    *,
    actor: Actor,
    slug: str,
    name: str,
    time_zone: str = "UTC",
    reason: str = "",
    with_default_environments: bool = True,
) -> Tenant:
    authorize(actor, "tenancy.add_tenant")
    _validate_time_zone(time_zone)
    _require_unique_slug(Tenant.objects.all(), slug, "A tenant")
    tenant = Tenant(slug=slug, name=name, time_zone=time_zone)
    tenant.full_clean()
    tenant.save()
    if not isinstance(actor, SystemActor) and actor is not None and not user_is_admin(actor):
        # Whoever creates a tenant can see it; Admins see every tenant anyway.
        assign_perm(TENANT_ACCESS_PERMISSION, actor, tenant)
    audit_record(
        actor=actor,
        action="tenant.created",
        target=tenant,
        tenant=tenant,
        reason=reason,
        after=tenant.snapshot(),
    )
    if with_default_environments:
        for position, (env_slug, env_name, is_production) in enumerate(DEFAULT_ENVIRONMENTS):
            environment = Environment.objects.create(
                tenant=tenant,
                slug=env_slug,
                name=env_name,
                position=position,
                is_production=is_production,
            )
            audit_record(
                actor=actor,
                action="environment.created",
                target=environment,
                tenant=tenant,
                reason=reason,
                after=environment.snapshot(),
            )
    return tenant


@transaction.atomic
def tenant_update(
    *,
    actor: Actor,
    tenant: Tenant,
    name: str | None = None,
    time_zone: str | None = None,
    trace_link_template: str | None = None,
    reason: str = "",
    expected_version: int | None = None,
) -> Tenant:
    """Rename or re-zone a tenant, or set where its request records' traces open
    (``trace_link_template``: an http(s) URL with ``{trace_id}``, or "" for none; validated by
    ``full_clean``). ``expected_version``: the ``version`` the change was based on (None: no
    check); ``StaleVersion`` when it moved on. A real change adds one."""
    authorize(actor, "tenancy.change_tenant", tenant)
    tenant = tenant_lock(tenant_id=tenant.pk)
    _check_seen(tenant, expected_version)
    before = tenant.snapshot()
    changes: dict[str, Any] = {}
    if name is not None:
        changes["name"] = name
    if time_zone is not None:
        _validate_time_zone(time_zone)
        changes["time_zone"] = time_zone
    if trace_link_template is not None:
        changes["trace_link_template"] = trace_link_template.strip()
    if _save_changes(tenant, changes):
        audit_record(
            actor=actor,
            action="tenant.updated",
            target=tenant,
            tenant=tenant,
            reason=reason,
            before=before,
            after=tenant.snapshot(),
        )
    return tenant


@transaction.atomic
def tenant_archive(
    *, actor: Actor, tenant: Tenant, reason: str, expected_version: int | None = None
) -> Tenant:
    authorize(actor, "tenancy.change_tenant", tenant, while_archived=True)
    return _set_archived(
        actor=actor,
        instance=tenant,
        archived=True,
        reason=reason,
        expected_version=expected_version,
    )


@transaction.atomic
def tenant_restore(
    *, actor: Actor, tenant: Tenant, reason: str, expected_version: int | None = None
) -> Tenant:
    authorize(actor, "tenancy.change_tenant", tenant, while_archived=True)
    return _set_archived(
        actor=actor,
        instance=tenant,
        archived=False,
        reason=reason,
        expected_version=expected_version,
    )


# --------------------------------------------------------------------------- agents


@transaction.atomic
def agent_create(
    *, actor: Actor, tenant: Tenant, slug: str, name: str, description: str = "", reason: str = ""
) -> Agent:
    authorize(actor, "tenancy.add_agent", tenant)  # refuses an archived tenant, commands too
    _require_unique_slug(tenant.agents.all(), slug, f"An agent of {tenant.name}")
    agent = Agent(tenant=tenant, slug=slug, name=name, description=description)
    agent.full_clean()
    agent.save()
    audit_record(
        actor=actor,
        action="agent.created",
        target=agent,
        tenant=tenant,
        reason=reason,
        after=agent.snapshot(),
    )
    return agent


@transaction.atomic
def agent_update(
    *,
    actor: Actor,
    agent: Agent,
    name: str | None = None,
    description: str | None = None,
    reason: str = "",
    expected_version: int | None = None,
) -> Agent:
    """Rename or re-describe an agent; ``expected_version`` as for ``tenant_update``."""
    authorize(actor, "tenancy.change_agent", agent.tenant)
    agent = agent_lock(agent_id=agent.pk)
    _check_seen(agent, expected_version)
    refuse_archived(agent=agent)
    before = agent.snapshot()
    changes = {k: v for k, v in {"name": name, "description": description}.items() if v is not None}
    if _save_changes(agent, changes):
        audit_record(
            actor=actor,
            action="agent.updated",
            target=agent,
            tenant=agent.tenant,
            reason=reason,
            before=before,
            after=agent.snapshot(),
        )
    return agent


def _environments_locked(tenant_id: int) -> list[int]:
    """Lock the tenant's active environments, in ascending id order, and return their ids:
    the lock order of every change (tenant, then environments by ascending id, then agent;
    ``environment_revisions_bump``), taken before the agent's own lock."""
    ids = sorted(
        Environment.objects.filter(tenant_id=tenant_id, archived_at__isnull=True).values_list(
            "pk", flat=True
        )
    )
    for environment_id in ids:
        environment_lock(environment_id=environment_id)
    return ids


def _agent_set_archived(
    *, actor: Actor, agent: Agent, archived: bool, reason: str, expected_version: int | None
) -> Agent:
    """Archive or restore an agent, and bump the revision of every active environment of its
    tenant: a snapshot lists only active agents, and runtimes holding an environment-wide
    token must drop (or get back) the agent's release and rollout now, not at the next
    unrelated change."""
    authorize(actor, "tenancy.change_agent", agent.tenant)  # refuses an archived tenant
    # re-read under its lock: a tenant archived since the caller read it refuses too
    refuse_archived(tenant=tenant_lock(tenant_id=agent.tenant_id))
    # bumped before the audit inside _set_archived: the audit chain's lock comes last (a
    # refusal there rolls the bumps back with everything else)
    environment_revisions_bump(environment_ids=_environments_locked(agent.tenant_id))
    return _set_archived(
        actor=actor,
        instance=agent,
        archived=archived,
        reason=reason,
        expected_version=expected_version,
    )


@transaction.atomic
def agent_archive(
    *, actor: Actor, agent: Agent, reason: str, expected_version: int | None = None
) -> Agent:
    """Archive an agent: it leaves lists and every runtime's snapshot, and every change for it
    is refused (``refuse_archived``) until it is restored. ``ValidationError`` when already
    archived; ``StaleVersion`` (409) for a stale ``expected_version``."""
    return _agent_set_archived(
        actor=actor, agent=agent, archived=True, reason=reason, expected_version=expected_version
    )


@transaction.atomic
def agent_restore(
    *, actor: Actor, agent: Agent, reason: str, expected_version: int | None = None
) -> Agent:
    """Restore an archived agent: back in lists and, where it has a stable version, in its
    environments' snapshots. Errors as for ``agent_archive`` (not archived: ValidationError)."""
    return _agent_set_archived(
        actor=actor, agent=agent, archived=False, reason=reason, expected_version=expected_version
    )


# --------------------------------------------------------------------------- environments


@transaction.atomic
def environment_create(
    *,
    actor: Actor,
    tenant: Tenant,
    slug: str,
    name: str,
    is_production: bool = False,
    position: int | None = None,
    reason: str = "",
) -> Environment:
    """A new environment goes last in the promotion order unless a free position is given."""
    authorize(actor, "tenancy.add_environment", tenant)  # refuses an archived tenant too
    tenant_lock(tenant_id=tenant.pk)  # serialises positions
    active = Environment.objects.filter(tenant=tenant, archived_at__isnull=True)
    if position is None:
        # `Max(...) or -1` would turn a last position of 0 into -1 and collide with it
        last = active.aggregate(m=Max("position"))["m"]
        position = 0 if last is None else last + 1
    elif active.filter(position=position).exists():
        raise ValidationError({"position": [f"Position {position} is taken; omit it to go last."]})
    _require_unique_slug(tenant.environments.all(), slug, f"An environment of {tenant.name}")
    environment = Environment(
        tenant=tenant, slug=slug, name=name, position=position, is_production=is_production
    )
    environment.full_clean()
    environment.save()
    audit_record(
        actor=actor,
        action="environment.created",
        target=environment,
        tenant=tenant,
        reason=reason,
        after=environment.snapshot(),
    )
    return environment


@transaction.atomic
def environment_update(
    *,
    actor: Actor,
    environment: Environment,
    name: str | None = None,
    is_production: bool | None = None,
    reason: str = "",
    expected_version: int | None = None,
) -> Environment:
    """Rename an environment or change its production flag; ``expected_version`` as for
    ``tenant_update``."""
    authorize(actor, "tenancy.change_environment", environment.tenant)
    environment = environment_lock(environment_id=environment.pk)
    _check_seen(environment, expected_version)
    refuse_archived(environment=environment)
    before = environment.snapshot()
    changes = {
        k: v for k, v in {"name": name, "is_production": is_production}.items() if v is not None
    }
    if _save_changes(environment, changes):
        audit_record(
            actor=actor,
            action="environment.updated",
            target=environment,
            tenant=environment.tenant,
            reason=reason,
            before=before,
            after=environment.snapshot(),
        )
    return environment


@transaction.atomic
def environment_move(
    *,
    actor: Actor,
    environment: Environment,
    direction: str,
    reason: str = "",
    expected_version: int | None = None,
) -> Environment:
    """Swap with the neighbour before ("up") or after ("down") in the promotion order.
    ``expected_version``: the moved environment's ``version`` the click was based on (None:
    no check); both environments' versions grow, their positions changed."""
    authorize(actor, "tenancy.change_environment", environment.tenant)
    if direction not in ("up", "down"):
        raise ValidationError({"direction": ["Use 'up' or 'down'."]})
    # Both locks are FOR NO KEY UPDATE (apps/core/locks.py): with FOR UPDATE, a move holding
    # the tenant and waiting for an environment deadlocked against an edit holding the
    # environment and inserting its audit event (a foreign key to the tenant).
    tenant_lock(tenant_id=environment.tenant_id)
    # locked too: an edit of this environment (its row lock only) must not slip in between
    environment = environment_lock(environment_id=environment.pk)
    _check_seen(environment, expected_version)
    refuse_archived(environment=environment)
    siblings = Environment.objects.filter(tenant_id=environment.tenant_id, archived_at__isnull=True)
    if direction == "up":
        neighbour = siblings.filter(position__lt=environment.position).order_by("-position").first()
    else:
        neighbour = siblings.filter(position__gt=environment.position).order_by("position").first()
    if neighbour is None:
        raise ValidationError(
            {
                "direction": [
                    f"{environment.name} is already {'first' if direction == 'up' else 'last'}."
                ]
            }
        )
    before = environment.snapshot()
    mine, theirs = environment.position, neighbour.position
    last = siblings.aggregate(m=Max("position"))["m"]
    parking = (0 if last is None else last) + 1  # keeps positions unique mid-swap
    Environment.objects.filter(pk=environment.pk).update(position=parking)
    Environment.objects.filter(pk=neighbour.pk).update(position=mine)
    Environment.objects.filter(pk=environment.pk).update(position=theirs)
    Environment.objects.filter(pk__in=[environment.pk, neighbour.pk]).update(
        version=F("version") + 1
    )
    environment.refresh_from_db()
    audit_record(
        actor=actor,
        action="environment.moved",
        target=environment,
        tenant=environment.tenant,
        reason=reason,
        before=before,
        after=environment.snapshot(),
    )
    return environment


@transaction.atomic
def environment_archive(
    *, actor: Actor, environment: Environment, reason: str, expected_version: int | None = None
) -> Environment:
    authorize(actor, "tenancy.change_environment", environment.tenant)
    return _set_archived(
        actor=actor,
        instance=environment,
        archived=True,
        reason=reason,
        expected_version=expected_version,
    )


@transaction.atomic
def environment_restore(
    *, actor: Actor, environment: Environment, reason: str, expected_version: int | None = None
) -> Environment:
    """Restore an archived environment: back in the promotion order at its old place, or last
    when an environment took that place meanwhile; its tokens work again. Its revision grows,
    so runtimes reconnecting get a snapshot built now (an agent archived meanwhile is gone).
    ``ValidationError`` when not archived; ``StaleVersion`` (409) when stale."""
    authorize(actor, "tenancy.change_environment", environment.tenant)
    # serialises positions, as create does; a tenant archived meanwhile refuses
    refuse_archived(tenant=tenant_lock(tenant_id=environment.tenant_id))
    locked = environment_lock(environment_id=environment.pk)
    changes: dict[str, Any] = {}
    if environment_place_taken(environment=locked):  # False unless archived
        last = Environment.objects.filter(
            tenant_id=locked.tenant_id, archived_at__isnull=True
        ).aggregate(m=Max("position"))["m"]
        changes["position"] = 0 if last is None else last + 1
    # bumped before the audit inside _set_archived (the audit chain's lock comes last); the
    # row read under its lock there carries the new revision
    environment_revision_bump(environment_id=environment.pk)
    return _set_archived(
        actor=actor,
        instance=environment,
        archived=False,
        reason=reason,
        expected_version=expected_version,
        changes=changes,
    )


def environment_revisions_bump(*, environment_ids: Iterable[int]) -> dict[int, int]:
    """Bump several environments' revisions (``environment_revision_bump`` each), in
    ascending id order whatever order they are given in: each bump takes the row's lock, and
    one order for every change that bumps more than one environment (a kill switch, a
    budget, an agent archived) is what keeps two of them from deadlocking. The lock order in
    full: tenant, then environments by ascending id, then agent; the audit chain's lock
    (``audit_record``, held until commit) always last, so a change bumps before it audits.
    Returns ``{id: revision}``."""
    return {
        environment_id: environment_revision_bump(environment_id=environment_id)
        for environment_id in sorted(set(environment_ids))
    }


def environment_revision_bump(*, environment_id: int) -> int:
    """Grow the revision by one inside the caller's transaction (the change that needs it)
    and announce it after commit as ``environment.revision`` (subscribers: the fast path of
    every web process wakes its waiting runtimes; ``runtimes`` logs it and pushes webhooks —
    see apps.core.events). Returns the new revision."""
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("bump the revision inside the transaction of the change it announces")
    Environment.objects.filter(pk=environment_id).update(revision=F("revision") + 1)
    revision = Environment.objects.values_list("revision", flat=True).get(pk=environment_id)
    publish_after_commit(
        events.ENVIRONMENT_REVISION,
        str(environment_id),
        {"environment_id": environment_id, "revision": revision},
    )
    return revision
