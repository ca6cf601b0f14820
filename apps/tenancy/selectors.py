from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import QuerySet
from django.http import Http404
from guardian.shortcuts import get_objects_for_user

from apps.accounts.roles import TENANT_ACCESS_PERMISSION
from apps.accounts.selectors import user_is_admin

from .models import Agent, Environment, Tenant

AnyUser = AbstractBaseUser | AnonymousUser


def tenant_list_for_user(*, user: AnyUser, include_archived: bool = False) -> QuerySet[Tenant]:
    """The only way to list tenants: Admins see all, others the ones granted to them."""
    if not user.is_authenticated or not user.is_active:
        qs = Tenant.objects.none()
    elif user_is_admin(user):
        qs = Tenant.objects.all()
    else:
        qs = get_objects_for_user(
            user, TENANT_ACCESS_PERMISSION, klass=Tenant, accept_global_perms=False
        )
    if not include_archived:
        qs = qs.filter(archived_at__isnull=True)
    return qs.order_by("name")


def tenant_ids_for_user(*, user: AnyUser) -> list[int] | None:
    """``None`` for Admins (every tenant); otherwise the granted tenant ids."""
    if user_is_admin(user):
        return None
    return list(tenant_list_for_user(user=user, include_archived=True).values_list("id", flat=True))


def tenant_get_for_user(*, user: AnyUser, slug: str | None = None, pk: int | None = None) -> Tenant:
    qs = tenant_list_for_user(user=user, include_archived=True)
    lookup = {"slug": slug} if slug is not None else {"pk": pk}
    try:
        return qs.get(**lookup)
    except (Tenant.DoesNotExist, ValueError, TypeError):
        raise Http404("No such tenant.") from None


def agent_list_for_user(
    *, user: AnyUser, tenant: Tenant | None = None, include_archived: bool = False
) -> QuerySet[Agent]:
    tenants = tenant_list_for_user(user=user, include_archived=True)
    qs = Agent.objects.filter(tenant__in=tenants).select_related("tenant")
    if tenant is not None:
        qs = qs.filter(tenant=tenant)
    if not include_archived:
        qs = qs.filter(archived_at__isnull=True)
    return qs.order_by("tenant__name", "name")


def agent_get_for_user(*, user: AnyUser, pk: int) -> Agent:
    try:
        return agent_list_for_user(user=user, include_archived=True).get(pk=pk)
    except (Agent.DoesNotExist, ValueError, TypeError):
        raise Http404("No such agent.") from None


def environment_list_for_user(
    *, user: AnyUser, tenant: Tenant | None = None, include_archived: bool = False
) -> QuerySet[Environment]:
    tenants = tenant_list_for_user(user=user, include_archived=True)
    qs = Environment.objects.filter(tenant__in=tenants).select_related("tenant")
    if tenant is not None:
        qs = qs.filter(tenant=tenant)
    if not include_archived:
        qs = qs.filter(archived_at__isnull=True)
    return qs.order_by("tenant__name", "position")


def environment_get_for_user(*, user: AnyUser, pk: int) -> Environment:
    try:
        return environment_list_for_user(user=user, include_archived=True).get(pk=pk)
    except (Environment.DoesNotExist, ValueError, TypeError):
        raise Http404("No such environment.") from None
