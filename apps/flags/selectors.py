"""Reads: scoped by what the user may see, or by a runtime token's environment."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Q, QuerySet, Sum
from django.http import Http404
from django.utils import timezone

from apps.accounts.models import RuntimeToken
from apps.accounts.selectors import runtime_token_list_for_user
from apps.core.authz import VIEW, restrict
from apps.tenancy.models import Agent, Environment
from apps.tenancy.selectors import (
    AnyUser,
)

from .models import Flag, FlagUsage, FlagVariantUsage, KillSwitch, SdkInstance, Segment
from .unleash import KILL_PREFIX, feature_document, inline_segments, kill_features

# --------------------------------------------------------------------------- flags and segments


def flag_list_for_user(
    *, user: AnyUser, action: str = VIEW, environment: Environment | None = None
) -> QuerySet[Flag]:
    """Flags of the user's tenants that the user may ``action`` (``restrict``)."""
    qs = restrict(Flag.objects.select_related("environment", "environment__tenant"), user, action)
    if environment is not None:
        qs = qs.filter(environment=environment)
    return qs.order_by("environment__tenant__name", "environment__position", "name")


def flag_get_for_user(*, user: AnyUser, pk: int, action: str = VIEW) -> Flag:
    """One flag the user may ``action``; ``Http404`` otherwise (never a 403)."""
    try:
        return flag_list_for_user(user=user, action=action).get(pk=pk)
    except (Flag.DoesNotExist, ValueError, TypeError):
        raise Http404("No such flag.") from None


def segment_list_for_user(
    *, user: AnyUser, action: str = VIEW, environment: Environment | None = None
) -> QuerySet[Segment]:
    """Segments of the user's tenants that the user may ``action`` (``restrict``)."""
    qs = restrict(
        Segment.objects.select_related("environment", "environment__tenant"), user, action
    )
    if environment is not None:
        qs = qs.filter(environment=environment)
    return qs.order_by("environment__tenant__name", "environment__position", "segment_id")


def segment_get_for_user(*, user: AnyUser, pk: int, action: str = VIEW) -> Segment:
    """One segment the user may ``action``; ``Http404`` otherwise (never a 403)."""
    try:
        return segment_list_for_user(user=user, action=action).get(pk=pk)
    except (Segment.DoesNotExist, ValueError, TypeError):
        raise Http404("No such segment.") from None


def flag_dependencies_by_name(
    *, environment_id: int, exclude_pk: int | None = None
) -> dict[str, list[dict[str, Any]]]:
    """Every flag of the environment by name, with its dependencies (for strict checks)."""
    qs = Flag.objects.filter(environment_id=environment_id)
    if exclude_pk is not None:
        qs = qs.exclude(pk=exclude_pk)
    return dict(qs.values_list("name", "dependencies"))


def flag_feature(flag: Flag) -> dict[str, Any]:
    return feature_document(
        {
            "name": flag.name,
            "type": flag.type,
            "description": flag.description,
            "enabled": flag.enabled,
            "stale": flag.stale,
            "impressionData": flag.impression_data,
            "project": flag.project,
            "strategies": flag.strategies,
            "variants": flag.variants,
            "dependencies": flag.dependencies,
        }
    )


def environment_features(
    *, environment_id: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The environment's flags as Unleash features and its segments, two queries."""
    features = [
        flag_feature(f) for f in Flag.objects.filter(environment_id=environment_id).order_by("name")
    ]
    segments = [
        {"id": s.segment_id, "name": s.name, "constraints": s.constraints}
        for s in Segment.objects.filter(environment_id=environment_id).order_by("segment_id")
    ]
    return features, segments


def flags_for_snapshot(*, environment_id: int) -> list[dict[str, Any]]:
    """The environment's flags as self-contained Unleash feature dicts (segments inlined into
    the strategies' constraints), for the runtime config snapshot. Kill switches are not
    among them: the snapshot carries them as ``kill_switches_for_snapshot``."""
    features, segments = environment_features(environment_id=environment_id)
    return inline_segments(features, {s["id"]: s["constraints"] for s in segments})


# --------------------------------------------------------------------------- kill switches


def kill_switches_engaged_for(
    *, environment: Environment, agent_id: int | None = None
) -> QuerySet[KillSwitch]:
    """Engaged switches that reach ``environment``: global ones, its tenant's, its tenant's
    agents' and its own. With ``agent_id``, switches aimed at other agents are left out."""
    reach = (
        Q(scope="global")
        | Q(scope="tenant", tenant_id=environment.tenant_id)
        | Q(scope="agent", tenant_id=environment.tenant_id)
        | Q(scope="environment", environment_id=environment.pk)
    )
    qs = KillSwitch.objects.filter(reach, released_at__isnull=True).select_related(
        "agent", "tenant", "environment"
    )
    if agent_id is not None:
        qs = qs.filter(Q(agent__isnull=True) | Q(agent_id=agent_id))
    return qs.order_by("engaged_at", "id")


def kill_switch_reaches(switch: KillSwitch, *, agent_id: int, environment: Environment) -> bool:
    """Whether the engaged ``switch`` stops or limits ``agent_id`` in ``environment``: the
    same reach as ``kill_switches_engaged_for`` (global, the tenant's, the environment's;
    one aimed at another agent does not), tested on a row already loaded (the overview
    checks every agent and environment against one list)."""
    if switch.agent_id is not None and switch.agent_id != agent_id:
        return False
    if switch.scope == "global":
        return True
    if switch.scope in ("tenant", "agent"):
        return switch.tenant_id == environment.tenant_id
    return switch.scope == "environment" and switch.environment_id == environment.pk


def kill_switch_dict(switch: KillSwitch) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": switch.pk,
        "kind": switch.kind,
        "agent": switch.agent.slug if switch.agent else None,
        "scope": switch.scope,
        "reason": switch.reason,
        "engaged_at": switch.engaged_at.isoformat(),
    }
    if switch.kind == "tool_disabled":
        data["tool_pattern"] = switch.tool_pattern
    if switch.kind == "agent_mode":
        data["mode"] = switch.mode
    return data


def kill_switches_for_snapshot(
    *, environment_id: int, agent_id: int | None
) -> list[dict[str, Any]]:
    """Engaged kill switches for a runtime of ``environment_id`` (and ``agent_id``, when the
    runtime serves one agent), oldest first. Each: ``{"id", "kind": "tool_disabled" |
    "agent_mode" | "agent_stopped", "tool_pattern"`` (tool_disabled) ``, "mode": "read_only" |
    "draft_only"`` (agent_mode) ``, "agent": slug | None, "scope": "global" | "tenant" |
    "agent" | "environment", "reason", "engaged_at": ISO 8601}``."""
    environment = Environment.objects.get(pk=environment_id)
    return [
        kill_switch_dict(s)
        for s in kill_switches_engaged_for(environment=environment, agent_id=agent_id)
    ]


def kill_switch_list_for_user(
    *,
    user: AnyUser,
    action: str = VIEW,
    tenant_id: int | None = None,
    engaged: bool | None = None,
) -> QuerySet[KillSwitch]:
    """Switches the user may ``action``: their tenants' and global ones (global switches
    concern everyone: ``KillSwitch.tenant_scope_null_is_global``)."""
    qs = restrict(KillSwitch.objects.select_related("tenant", "agent", "environment"), user, action)
    if tenant_id is not None:
        qs = qs.filter(Q(tenant__isnull=True) | Q(tenant_id=tenant_id))
    if engaged is True:
        qs = qs.filter(released_at__isnull=True)
    elif engaged is False:
        qs = qs.filter(released_at__isnull=False)
    return qs.order_by("-engaged_at", "-id")


def kill_switch_get_for_user(*, user: AnyUser, pk: int, action: str = VIEW) -> KillSwitch:
    """One switch the user may ``action``; ``Http404`` otherwise (never a 403)."""
    try:
        return kill_switch_list_for_user(user=user, action=action).get(pk=pk)
    except (KillSwitch.DoesNotExist, ValueError, TypeError):
        raise Http404("No such kill switch.") from None


def kill_switch_affected_environments(
    *, scope: str, tenant_id: int | None, environment_id: int | None
) -> list[Environment]:
    """Every environment whose runtimes must react to a switch of this scope."""
    qs = Environment.objects.select_related("tenant")
    if scope in ("tenant", "agent"):
        qs = qs.filter(tenant_id=tenant_id or 0)
    elif scope != "global":
        qs = qs.filter(pk=environment_id or 0)
    return list(qs.order_by("tenant_id", "position", "id"))


def runtime_tokens_for_kill_page(*, user: AnyUser, tenant_id: int) -> QuerySet[RuntimeToken]:
    """The tenant's live tokens, if the user may see the tenant's tokens."""
    return runtime_token_list_for_user(user=user).filter(
        tenant_id=tenant_id, revoked_at__isnull=True
    )


def agents_for_kill_page(*, user: AnyUser, tenant_id: int) -> QuerySet[Agent]:
    """The tenant's live agents, if the user may see them."""
    return (
        restrict(Agent.objects.all(), user, VIEW)
        .filter(tenant_id=tenant_id, archived_at__isnull=True)
        .order_by("name")
    )


# --------------------------------------------------------------------------- what SDKs report


def sdk_instances_for_environment(
    *, environment: Environment, limit: int = 100
) -> QuerySet[SdkInstance]:
    return SdkInstance.objects.filter(environment=environment).order_by("-last_seen_at")[:limit]


@dataclass(frozen=True)
class UsageRow:
    hour: datetime
    yes: int
    no: int


def flag_usage_hourly(
    *, flag: Flag, hours: int = 48, now: datetime | None = None
) -> list[UsageRow]:
    """Evaluation counts per hour over the last ``hours``, summed over apps."""
    now = now or timezone.now()
    since = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=hours - 1)
    rows = (
        FlagUsage.objects.filter(
            environment_id=flag.environment_id, flag_name=flag.name, hour__gte=since
        )
        .values("hour")
        .annotate(yes_total=Sum("yes"), no_total=Sum("no"))
        .order_by("hour")
    )
    return [UsageRow(r["hour"], r["yes_total"] or 0, r["no_total"] or 0) for r in rows]


def flag_variant_usage_hourly(
    *, flag: Flag, hours: int = 48, now: datetime | None = None
) -> list[tuple[datetime, str, int]]:
    now = now or timezone.now()
    since = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=hours - 1)
    rows = (
        FlagVariantUsage.objects.filter(
            environment_id=flag.environment_id, flag_name=flag.name, hour__gte=since
        )
        .values("hour", "variant")
        .annotate(total=Sum("count"))
        .order_by("hour", "variant")
    )
    return [(r["hour"], r["variant"], r["total"] or 0) for r in rows]


def flag_usage_apps(*, flag: Flag) -> list[dict[str, Any]]:
    """Per app: total yes and no, for the table under the chart."""
    rows = (
        FlagUsage.objects.filter(environment_id=flag.environment_id, flag_name=flag.name)
        .values("app_name")
        .annotate(yes_total=Sum("yes"), no_total=Sum("no"))
        .order_by("app_name")
    )
    return [{"app_name": r["app_name"], "yes": r["yes_total"], "no": r["no_total"]} for r in rows]


def flag_names_known(
    *, environment_id: int, agent_id: int | None, names: Iterable[str]
) -> set[str]:
    """Which of ``names`` are features an SDK with this scope is served: the environment's
    flags and the ``kill.*`` features of the kill switches engaged for it (what SDK metrics
    may count; anything else is a name the SDK made up)."""
    wanted = set(names)
    if not wanted:
        return set()
    known = set(
        Flag.objects.filter(environment_id=environment_id, name__in=wanted).values_list(
            "name", flat=True
        )
    )
    if any(name.startswith(KILL_PREFIX) for name in wanted - known):
        environment = Environment.objects.get(pk=environment_id)
        switches = [
            kill_switch_dict(s)
            for s in kill_switches_engaged_for(environment=environment, agent_id=agent_id)
        ]
        known |= wanted & {f["name"] for f in kill_features(switches)}
    return known
