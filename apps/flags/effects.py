"""What a kill switch does, in the operator's words, for its confirmation page."""

from __future__ import annotations

from apps.tenancy.models import Agent, Environment, Tenant


def where(
    *,
    scope: str,
    tenant: Tenant | None,
    agent: Agent | None,
    environment: Environment | None,
    environments: int,
) -> str:
    if scope == "global":
        return f"every environment of every tenant ({environments} environments)"
    if scope == "tenant" and tenant is not None:
        return f"every environment of {tenant.name} ({environments})"
    if scope == "agent" and agent is not None:
        return f"every environment of {agent.tenant.name} ({environments})"
    if environment is not None:
        return f"{environment.name} of {environment.tenant.name}"
    return "?"


def kill_switch_effect(
    *,
    kind: str,
    scope: str,
    tenant: Tenant | None,
    agent: Agent | None,
    environment: Environment | None,
    tool_pattern: str,
    mode: str,
    environments: int,
) -> str:
    place = where(
        scope=scope, tenant=tenant, agent=agent, environment=environment, environments=environments
    )
    if kind == "tool_disabled":
        who = f"by {agent.name}" if agent is not None else "by every agent"
        what = f"Every call to a tool matching {tool_pattern!r} {who} is denied in {place}."
    elif kind == "agent_mode" and mode == "read_only" and agent is not None:
        what = f"{agent.name} runs read-only in {place}: its write and critical tools are denied."
    elif kind == "agent_mode" and agent is not None:
        what = (
            f"{agent.name} runs draft-only in {place}: "
            "nothing it does leaves without a human approval."
        )
    elif kind == "agent_stopped" and agent is not None:
        what = f"{agent.name} stops entirely in {place}: it serves no requests and calls no tools."
    else:
        return ""
    return (
        f"{what} Runtimes obey as soon as they apply the new revision; Unleash SDKs see it as an "
        "enabled kill.* flag. It beats every other rule and stays engaged until someone "
        "releases it."
    )


def kill_switch_release_effect(*, label: str, environments: int) -> str:
    return (
        f"{label}: the stop is lifted in {environments} environment(s); runtimes go back to "
        "what the bundle, "
        "rollouts and approvals allow as soon as they apply the new revision."
    )
