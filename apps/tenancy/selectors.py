"""Reads of tenants, agents and environments, always through ``restrict`` (apps.core.authz):
``action`` is what the caller means to do with the rows (``view`` unless said otherwise)."""

from __future__ import annotations

from django.db.models import QuerySet
from django.http import Http404

from apps.core.authz import VIEW, restrict, visible_tenant_ids
from apps.core.authz import AnyUser as AnyUser  # re-exported: selectors above type with it

from .models import Agent, Environment, Tenant


def tenant_list_for_user(
    *, user: AnyUser, action: str = VIEW, include_archived: bool = False
) -> QuerySet[Tenant]:
    """The only way to list tenants: Admins see all, others the ones granted to them, and
    nobody any whose role lacks ``tenancy.<action>_tenant``."""
    qs = restrict(Tenant.objects.all(), user, action)
    if not include_archived:
        qs = qs.filter(archived_at__isnull=True)
    return qs.order_by("name")


def tenant_ids_for_user(*, user: AnyUser) -> list[int] | None:
    """``None`` for Admins (every tenant); otherwise the granted tenant ids."""
    return visible_tenant_ids(user)


def tenant_get_for_user(
    *, user: AnyUser, slug: str | None = None, pk: int | None = None, action: str = VIEW
) -> Tenant:
    """One tenant the user may ``action``; ``Http404`` otherwise (never a 403)."""
    qs = tenant_list_for_user(user=user, action=action, include_archived=True)
    lookup = {"slug": slug} if slug is not None else {"pk": pk}
    try:
        return qs.get(**lookup)
    except (Tenant.DoesNotExist, ValueError, TypeError):
        raise Http404("No such tenant.") from None


def agent_list_for_user(
    *,
    user: AnyUser,
    action: str = VIEW,
    tenant: Tenant | None = None,
    include_archived: bool = False,
) -> QuerySet[Agent]:
    """Agents of the user's tenants that the user may ``action``."""
    qs = restrict(Agent.objects.select_related("tenant"), user, action)
    if tenant is not None:
        qs = qs.filter(tenant=tenant)
    if not include_archived:
        qs = qs.filter(archived_at__isnull=True)
    return qs.order_by("tenant__name", "name")


def agent_get_for_user(*, user: AnyUser, pk: int, action: str = VIEW) -> Agent:
    """One agent the user may ``action``; ``Http404`` otherwise (never a 403)."""
    try:
        return agent_list_for_user(user=user, action=action, include_archived=True).get(pk=pk)
    except (Agent.DoesNotExist, ValueError, TypeError):
        raise Http404("No such agent.") from None


def environment_list_for_user(
    *,
    user: AnyUser,
    action: str = VIEW,
    tenant: Tenant | None = None,
    include_archived: bool = False,
) -> QuerySet[Environment]:
    """Environments of the user's tenants that the user may ``action``."""
    qs = restrict(Environment.objects.select_related("tenant"), user, action)
    if tenant is not None:
        qs = qs.filter(tenant=tenant)
    if not include_archived:
        qs = qs.filter(archived_at__isnull=True)
    return qs.order_by("tenant__name", "position")


def environment_place_taken(*, environment: Environment) -> bool:
    """Does an active environment of the tenant hold ``environment``'s position (a restore
    then puts it last, ``services.environment_restore``)? False for an active one."""
    return (
        environment.is_archived
        and Environment.objects.filter(
            tenant_id=environment.tenant_id,
            archived_at__isnull=True,
            position=environment.position,
        ).exists()
    )


def environment_get_for_user(*, user: AnyUser, pk: int, action: str = VIEW) -> Environment:
    """One environment the user may ``action``; ``Http404`` otherwise (never a 403)."""
    try:
        return environment_list_for_user(user=user, action=action, include_archived=True).get(pk=pk)
    except (Environment.DoesNotExist, ValueError, TypeError):
        raise Http404("No such environment.") from None


def environment_chosen(
    *, user: AnyUser, tenant: Tenant, slug: str = ""
) -> tuple[Environment, list[Environment]]:
    """The environment a page of ``tenant`` shows: the one ``slug`` names among the user's
    environments of the tenant, else the production one (the last in promotion order), with
    the list to switch between. ``Http404`` for an unknown slug or a tenant without any."""
    environments = list(environment_list_for_user(user=user, tenant=tenant))
    if slug:
        for environment in environments:
            if environment.slug == slug:
                return environment, environments
        raise Http404("No such environment.")
    if not environments:
        raise Http404("This tenant has no environments.")
    production = [e for e in environments if e.is_production]
    return (production[-1] if production else environments[-1]), environments
