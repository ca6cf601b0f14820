"""Kill switches: engaged and released explicitly, never by themselves.

Engaging or releasing bumps the revision of every environment the switch reaches (global:
all environments of all tenants; tenant and agent: every environment of the tenant;
environment: that one) in the same transaction, and records those revisions on the switch
so its propagation to runtimes can be measured."""

from __future__ import annotations

import difflib
import re
from fnmatch import fnmatchcase

import structlog
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from apps.accounts.selectors import user_is_admin
from apps.audit.concurrency import version_check
from apps.audit.services import Actor, SystemActor, actor_identity, audit_record
from apps.core.authz import authorize
from apps.core.concurrency import StaleVersion, who_and_when
from apps.core.deployed_tools import deployed_tools
from apps.core.locks import lock_row
from apps.tenancy.models import Agent, Environment, Tenant
from apps.tenancy.services import environment_revisions_bump, tenant_lock

from ..models import AgentMode, KillSwitch, KillSwitchKind, KillSwitchScope
from ..selectors import kill_switch_affected_environments
from ._common import require_reason

log = structlog.get_logger(__name__)

# Tool names and shell-style globs over them: letters, digits and _ - . : / plus * ? [ ].
TOOL_PATTERN = re.compile(r"^[A-Za-z0-9_\-.:/*?\[\]]{1,200}$")


def _authorize(actor: Actor, permission: str, scope: str, tenant: Tenant | None) -> None:
    if scope != KillSwitchScope.GLOBAL:
        authorize(actor, permission, tenant)  # a missing tenant is a validation error, later
    else:
        # A global switch reaches every tenant, so only someone who sees every tenant may
        # throw (or release) it.
        authorize(actor, permission)
        if not isinstance(actor, SystemActor) and not user_is_admin(actor):  # type: ignore[arg-type]
            raise PermissionDenied(
                "Only Admins engage or release global kill switches; choose a tenant scope."
            )


def kill_switch_validate(
    *,
    kind: str,
    scope: str,
    tenant: Tenant | None,
    agent: Agent | None,
    environment: Environment | None,
    tool_pattern: str,
    mode: str,
) -> dict[str, list[str]]:
    """What is wrong with a switch before engaging it, by field (empty: nothing). Used by the
    confirmation page, to state the effect only of a switch that can be engaged."""
    errors: dict[str, list[str]] = {}
    if kind not in KillSwitchKind.values:
        errors["kind"] = [f"Use one of: {', '.join(KillSwitchKind.values)}."]
    if scope not in KillSwitchScope.values:
        errors["scope"] = [f"Use one of: {', '.join(KillSwitchScope.values)}."]
    if errors:
        return errors
    if kind == KillSwitchKind.TOOL_DISABLED:
        if not tool_pattern:
            errors["tool_pattern"] = ["Name the tool, or a pattern such as issue_* ."]
        elif not TOOL_PATTERN.match(tool_pattern):
            errors["tool_pattern"] = [
                "A tool name or glob: letters, digits, _ - . : / and * ? [ ] only."
            ]
        if mode:
            errors["mode"] = ["Only for forcing an agent's mode."]
    else:
        if tool_pattern:
            errors["tool_pattern"] = ["Only for disabling a tool."]
        if agent is None:
            errors["agent"] = ["Choose the agent."]
    if kind == KillSwitchKind.AGENT_MODE and mode not in AgentMode.values:
        errors["mode"] = [
            "Choose read_only (no write or critical tools) or draft_only "
            "(nothing leaves without approval)."
        ]
    if kind == KillSwitchKind.AGENT_STOPPED and mode:
        errors["mode"] = ["Only for forcing an agent's mode."]

    if scope == KillSwitchScope.GLOBAL:
        if kind != KillSwitchKind.TOOL_DISABLED:
            errors["scope"] = [
                "Everywhere applies to tools; an agent's mode or stop is scoped to its agent."
            ]
        if tenant is not None or agent is not None or environment is not None:
            errors["scope"] = ["Everywhere means no tenant, agent or environment."]
    else:
        if tenant is None:
            errors["tenant"] = ["Choose the tenant."]
        elif tenant.is_archived:
            errors["tenant"] = ["This tenant is archived."]
    if scope == KillSwitchScope.TENANT:
        if kind != KillSwitchKind.TOOL_DISABLED:
            errors["scope"] = [
                "An agent's mode or stop is scoped to the agent (or one of its environments)."
            ]
        if agent is not None or environment is not None:
            errors["scope"] = ["A tenant-wide switch names no agent or environment."]
    if scope == KillSwitchScope.AGENT:
        if agent is None:
            errors["agent"] = ["Choose the agent."]
        if environment is not None:
            errors["environment"] = [
                "An agent-wide switch covers all its environments; "
                "choose scope environment for one."
            ]
    if scope == KillSwitchScope.ENVIRONMENT and environment is None:
        errors["environment"] = ["Choose the environment."]
    if (
        agent is not None
        and tenant is not None
        and (agent.tenant_id != tenant.pk or agent.is_archived)
    ):
        errors["agent"] = ["Choose an active agent of this tenant."]
    if (
        environment is not None
        and tenant is not None
        and (environment.tenant_id != tenant.pk or environment.is_archived)
    ):
        errors["environment"] = ["Choose an active environment of this tenant."]
    return errors


def kill_switch_warnings(
    *,
    kind: str,
    scope: str,
    tenant: Tenant | None,
    agent: Agent | None,
    environment: Environment | None,
    tool_pattern: str,
    mode: str = "",
) -> list[str]:
    """What looks wrong with a switch that may still be engaged (a pattern may aim at a tool
    of a version not deployed yet): a tool name or glob matching no tool of the deployed
    versions it reaches, an agent deployed nowhere. Sentences for the confirmation page, the
    API's ``warnings`` and the logs; empty when nothing looks wrong or nothing is known."""
    del mode  # the mode cannot aim at nothing; accepted so callers pass the targets as is
    if scope == KillSwitchScope.GLOBAL:
        tenant_id = None
    elif tenant is not None:
        tenant_id = tenant.pk
    else:
        return []
    agents = deployed_tools(
        tenant_id=tenant_id,
        agent_id=agent.pk if agent is not None else None,
        environment_id=environment.pk if environment is not None else None,
    )
    if agents is None:
        return []
    place = f" in {environment.name}" if environment is not None else ""
    if agent is not None:
        mine = next((a for a in agents if a.agent_id == agent.pk), None)
        if mine is None or not mine.environments:
            return [
                f"{agent.slug} has no deployed version{place}: it runs nowhere"
                f"{' there' if place else ''} yet, so this switch stops nothing today."
            ]
    if kind != KillSwitchKind.TOOL_DISABLED or not tool_pattern:
        return []
    tools = sorted({tool for a in agents for tool in a.tools})
    if any(fnmatchcase(tool, tool_pattern) for tool in tools):
        return []
    if agent is not None:
        whose = f"{agent.slug}'s deployed versions{place}"
    elif scope == KillSwitchScope.GLOBAL:
        whose = f"any agent's deployed versions{place}"
    else:
        whose = f"any deployed version of {tenant.name if tenant else '?'}'s agents{place}"
    kind_of = "glob" if any(c in tool_pattern for c in "*?[") else "name"
    message = f"The {kind_of} {tool_pattern} matches no tool of {whose}"
    close = difflib.get_close_matches(tool_pattern, tools, n=3, cutoff=0.6)
    if close:
        message += f" (did you mean {' or '.join(close)}?)"
    elif tools:
        shown = ", ".join(tools[:10]) + (", …" if len(tools) > 10 else "")
        message += f" (they have: {shown})"
    else:
        message += " (none is deployed)"
    return [message + ". It is still allowed: a pattern may aim at a tool of a future version."]


def _already_engaged(switch: KillSwitch) -> ValidationError:
    return ValidationError(
        {
            "non_field_errors": [
                f"The same kill switch is already engaged: #{switch.pk} ({switch.target_label}), "
                f"engaged {who_and_when(switch.engaged_by_label, switch.engaged_at)}. "
                "Nothing was changed."
            ]
        }
    )


def _bump_all(environments: list[Environment]) -> dict[str, int]:
    # in id order (environment_revisions_bump), not the list's promotion order: the one lock
    # order of every change that bumps several environments
    bumped = environment_revisions_bump(environment_ids=[e.pk for e in environments])
    return {str(environment_id): revision for environment_id, revision in bumped.items()}


@transaction.atomic
def kill_switch_engage(
    *,
    actor: Actor,
    kind: str,
    scope: str,
    reason: str,
    tenant: Tenant | None = None,
    agent: Agent | None = None,
    environment: Environment | None = None,
    tool_pattern: str = "",
    mode: str = "",
) -> KillSwitch:
    """Engage a kill switch. It stays engaged until ``kill_switch_release``."""
    _authorize(actor, "flags.add_killswitch", scope, tenant)
    tool_pattern = (tool_pattern or "").strip()
    mode = (mode or "").strip()
    errors = kill_switch_validate(
        kind=kind,
        scope=scope,
        tenant=tenant,
        agent=agent,
        environment=environment,
        tool_pattern=tool_pattern,
        mode=mode,
    )
    reason = require_reason(
        reason,
        message="Say why: the reason is kept in the audit log and shown to runtimes.",
        errors=errors,
    )
    if errors:
        raise ValidationError(errors)
    if tenant is not None:
        # Serialises the duplicate check per tenant; a global switch has no tenant to lock, so
        # the database constraint below decides between concurrent identical global engages.
        tenant_lock(tenant_id=tenant.pk)
    identity = {
        "kind": kind,
        "scope": scope,
        "tenant": tenant,
        "agent": agent,
        "environment": environment,
        "tool_pattern": tool_pattern,
        "mode": mode,
    }
    duplicate = KillSwitch.objects.filter(**identity, released_at__isnull=True).first()
    if duplicate is not None:
        raise _already_engaged(duplicate)
    engaged_by, engaged_by_label = actor_identity(actor)
    try:
        # A savepoint: the database constraint kill_switch_one_engaged_per_identity is what
        # decides between concurrent identical engages that no row lock serialises (a global
        # switch has no tenant row to lock); the losers get the winner named, not a 500.
        with transaction.atomic():
            switch = KillSwitch.objects.create(
                **identity,
                reason=reason,
                engaged_at=timezone.now(),
                engaged_by=engaged_by,
                engaged_by_label=engaged_by_label,
            )
    except IntegrityError:
        duplicate = KillSwitch.objects.filter(**identity, released_at__isnull=True).first()
        if duplicate is None:  # not the identity constraint: a real fault
            raise
        raise _already_engaged(duplicate) from None
    environments = kill_switch_affected_environments(
        scope=scope, tenant_id=switch.tenant_id, environment_id=switch.environment_id
    )
    switch.engaged_revisions = _bump_all(environments)
    switch.save(update_fields=["engaged_revisions"])
    audit_record(
        actor=actor,
        action="kill_switch.engaged",
        target=switch,
        tenant=tenant,
        reason=switch.reason,
        after=switch.snapshot(),
    )
    log.info(
        "kill_switch.engaged",
        kill_switch_id=switch.pk,
        kind=kind,
        scope=scope,
        environments=len(environments),
    )
    return switch


@transaction.atomic
def kill_switch_release(
    *, actor: Actor, switch: KillSwitch, reason: str, expected_version: int | None = None
) -> KillSwitch:
    """Release an engaged kill switch, explicitly and with a reason.

    ``expected_version``: the switch's ``version`` the user saw (1 while engaged; None: no
    check). A switch released meanwhile, by anyone, answers ``StaleVersion`` naming who
    released it and when: of two concurrent releases exactly one happens."""
    _authorize(actor, "flags.change_killswitch", switch.scope, switch.tenant)
    reason = require_reason(reason)
    switch = lock_row(KillSwitch, switch.pk, related=("tenant", "agent", "environment"))
    # Released even when its agent or environment is archived: a release takes something
    # away, and the switch would otherwise come back engaged with a restore nobody expects.
    if switch.released_at is not None:
        raise StaleVersion(
            f"Kill switch #{switch.pk} was already released "
            f"{who_and_when(switch.released_by_label, switch.released_at)}. Nothing was changed.",
            current_version=switch.version,
            changed_by=switch.released_by_label,
            changed_at=switch.released_at,
        )
    version_check(
        what=f"Kill switch #{switch.pk}",
        expected=expected_version,
        current=switch.version,
        changed_by=switch.engaged_by_label,
        changed_at=switch.engaged_at,
    )
    before = switch.snapshot()
    switch.released_at = timezone.now()
    switch.released_by, switch.released_by_label = actor_identity(actor)
    switch.release_reason = reason
    switch.version += 1  # under the row lock taken above
    environments = kill_switch_affected_environments(
        scope=switch.scope, tenant_id=switch.tenant_id, environment_id=switch.environment_id
    )
    switch.released_revisions = _bump_all(environments)
    switch.save(
        update_fields=[
            "released_at",
            "released_by",
            "released_by_label",
            "release_reason",
            "released_revisions",
            "version",
        ]
    )
    audit_record(
        actor=actor,
        action="kill_switch.released",
        target=switch,
        tenant=switch.tenant,
        reason=reason,
        before=before,
        after=switch.snapshot(),
    )
    log.info("kill_switch.released", kill_switch_id=switch.pk, environments=len(environments))
    return switch
