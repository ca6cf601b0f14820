"""One authorisation check for every service: the role must allow the action, and the tenant
must be granted to the user. A tenant the user cannot see is a 404, never a 403, so its
existence does not leak."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser, PermissionsMixin
from django.core.exceptions import PermissionDenied
from django.db.models import Model
from django.http import Http404

from apps.audit.services import Actor, SystemActor

from .roles import TENANT_ACCESS_PERMISSION
from .selectors import user_is_admin


def user_can_access_tenant(user: AbstractBaseUser | AnonymousUser, tenant: Model) -> bool:
    if not user.is_authenticated or not user.is_active:
        return False
    if user_is_admin(user):
        return True
    # guardian answers object checks; Django's ModelBackend ignores them, so a role's global
    # view permission never widens which tenants a user sees.
    return isinstance(user, PermissionsMixin) and user.has_perm(TENANT_ACCESS_PERMISSION, tenant)


def authorize(actor: Actor, permission: str, tenant: Model | None = None) -> None:
    if isinstance(actor, SystemActor):
        return  # management commands and tasks run as the operator who started them
    if actor is None or not actor.is_authenticated or not actor.is_active:
        raise PermissionDenied("Log in first.")
    if tenant is not None and not user_can_access_tenant(actor, tenant):
        raise Http404("No such tenant.")
    if not isinstance(actor, PermissionsMixin) or not actor.has_perm(permission):
        raise PermissionDenied(f"Your role does not allow this ({permission}).")
