from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser, User
from django.db.models import QuerySet

from apps.core.authz import VIEW, AnyUser, restrict
from apps.core.roles import Role as Role  # re-exported: callers read roles here too
from apps.core.roles import user_is_admin as user_is_admin
from apps.core.roles import user_role as user_role

from .models import ApiToken, RuntimeToken, UserVersion


def user_list() -> QuerySet[User]:
    # edit_version and the forced password change joined: a page of users reads them without
    # a query each
    return (
        User.objects.select_related("edit_version", "password_change_required")
        .prefetch_related("groups")
        .order_by("username")
    )


def api_token_for_user(user: AbstractBaseUser | AnonymousUser) -> ApiToken | None:
    """The user's API token row (prefix and date only: the key is never stored), or None."""
    if not user.is_authenticated:
        return None
    return ApiToken.objects.filter(user_id=user.pk).first()


def runtime_token_list(*, tenant_ids: list[int] | None) -> QuerySet[RuntimeToken]:
    """Tokens of the given tenants (``None``: every tenant, for Admins)."""
    qs = RuntimeToken.objects.select_related("tenant", "environment", "agent", "created_by")
    if tenant_ids is not None:
        qs = qs.filter(tenant_id__in=tenant_ids)
    return qs.order_by("-created_at")


def runtime_token_list_for_user(*, user: AnyUser, action: str = VIEW) -> QuerySet[RuntimeToken]:
    """Tokens of the user's tenants that the user may ``action`` (``restrict``)."""
    return restrict(runtime_token_list(tenant_ids=None), user, action)


def user_version(user: User) -> int:
    """The ``version`` of a user's editable state (email, role, active, tenant grants): what
    the edit form and API carry as ``expected_version``. 1 until its first change."""
    if User.edit_version.is_cached(user):  # joined by user_list
        row = getattr(user, "edit_version", None)
        return 1 if row is None else row.version
    found = UserVersion.objects.filter(user_id=user.pk).values_list("version", flat=True).first()
    return 1 if found is None else found
