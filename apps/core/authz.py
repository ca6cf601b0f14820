"""The one spelling of "may this user do this": a role permission and a tenant scope.

A role (``apps.core.roles``) says *what* a user may do: Django model permissions
``<app_label>.<action>_<model_name>`` on the role's group. A tenant grant says *where*: the
django-guardian object permission ``tenancy.view_tenant`` on a tenant. Admins see every
tenant. Everything that decides access goes through this module:

- ``restrict(queryset, user, action)`` (NetBox's ``RestrictedQuerySet.restrict``): the rows
  of the tenants the user may act on, and no row at all when the role lacks the model
  permission for ``action``. Selectors and the API base view (``apps.core.api``) use it.
- ``require_permission`` / ``@requires``: the role check alone, for a page or an API method
  before any object is looked up. Missing: ``PermissionDenied`` (403). An object outside the
  user's tenants is never found (404), so its existence does not leak.
- ``authorize(actor, permission, tenant)``: the same two checks for services, which also run
  for management commands and tasks (``SystemActor``).

Which tenant a row belongs to is its model's *tenant scope*: a lookup path to the tenant
(``"tenant"``, ``"environment__tenant"``), found by convention (a ``tenant``, ``environment``
or ``agent`` foreign key), declared as ``tenant_scope`` on the model, or registered with
``register_tenant_scope`` for a model the project does not own. A model with none of these is
a configuration error (``ImproperlyConfigured``): access fails closed, never open.

The kernel imports no app: the tenant model and permission are named by strings."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from functools import wraps
from typing import Any, TypeVar

from django.apps import apps as django_apps
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser, PermissionsMixin
from django.core.exceptions import (
    FieldDoesNotExist,
    ImproperlyConfigured,
    ObjectDoesNotExist,
    PermissionDenied,
    ValidationError,
)
from django.db.models import Model, Q, QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.urls import Resolver404, resolve
from guardian.shortcuts import get_objects_for_user

from apps.core.roles import TENANT_ACCESS_PERMISSION, user_is_admin

AnyUser = AbstractBaseUser | AnonymousUser

# The four model actions Django creates permissions for; a model's own ``Meta.permissions``
# add custom ones (``restrict(qs, user, "approve")`` reads ``<app>.approve_<model>``).
VIEW, ADD, CHANGE, DELETE = "view", "add", "change", "delete"
ACTIONS = (VIEW, ADD, CHANGE, DELETE)

TENANT_MODEL = "tenancy.tenant"  # label_lower of the model tenant grants are given on


@dataclass(frozen=True)
class SystemActor:
    """A non-human actor: a management command, a Celery task, a runtime token. It runs
    with the authority of whoever started it, so ``authorize`` lets it through."""

    label: str


Actor = AbstractBaseUser | AnonymousUser | SystemActor | None


# ------------------------------------------------------------------ permission names


def permission_name(model: type[Model] | Model, action: str) -> str:
    """``"<app_label>.<action>_<model_name>"``, e.g. ``permission_name(Flag, "change")`` is
    ``"flags.change_flag"``."""
    opts = model._meta
    return f"{opts.app_label}.{action}_{opts.model_name}"


def user_may(user: AnyUser | None, permission: str) -> bool:
    """Whether the user's role grants ``permission`` (a model permission, not a tenant). An
    inactive or anonymous user may nothing."""
    if user is None or not user.is_authenticated or not user.is_active:
        return False
    # ModelBackend answers for the role; guardian answers only object checks, so a tenant
    # grant never widens a role.
    return isinstance(user, PermissionsMixin) and user.has_perm(permission)


def require_permission(user: AnyUser | None, permission: str, message: str = "") -> None:
    """Raise ``PermissionDenied`` (403) unless the user's role grants ``permission``;
    ``message`` says what was refused in the operator's words."""
    if user is None or not user.is_authenticated or not user.is_active:
        raise PermissionDenied("Log in first.")
    if not user_may(user, permission):
        raise PermissionDenied(message or f"Your role does not allow this ({permission}).")


_View = TypeVar("_View", bound=Callable[..., HttpResponse])


def requires(permission: str, message: str = "") -> Callable[[_View], _View]:
    """Decorator for a UI view ``(request, ...)``: 403 unless the user's role grants
    ``permission``. The objects the view then loads come through scoped selectors (404
    outside the user's tenants). The view keeps the permission as ``required_permission``
    (``page_permission``), so a page linking to it can tell whether the reader may open it."""

    def decorate(view: _View) -> _View:
        @wraps(view)
        def checked(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            require_permission(request.user, permission, message)
            return view(request, *args, **kwargs)

        checked.required_permission = permission  # type: ignore[attr-defined]
        return checked  # type: ignore[return-value]

    return decorate


def page_permission(path: str) -> str | None:
    """The role permission the UI page at ``path`` requires (its view's ``@requires``), or
    None when it requires none beyond a login (or ``path`` is no page). Decorators that
    ``functools.wraps`` the view (``login_required``) carry the mark outwards."""
    try:
        match = resolve(path)
    except Resolver404:
        return None
    return getattr(match.func, "required_permission", None)


# ------------------------------------------------------------------ tenant scope

_UNSET = object()
_REGISTERED: dict[str, tuple[str | None, bool]] = {}


def register_tenant_scope(
    model: type[Model], path: str | None, *, null_is_global: bool = False
) -> None:
    """Declare the tenant scope of a model the project cannot annotate (``auth.User``).
    ``path`` None: not tenant-scoped (the role alone decides). ``null_is_global``: a row
    whose tenant is null concerns every tenant, so everyone with the role sees it."""
    _REGISTERED[model._meta.label_lower] = (path, null_is_global)


def tenant_scope(model: type[Model]) -> tuple[str | None, bool]:
    """``(path to the tenant, null_is_global)`` for ``model``: declared on the model as
    ``tenant_scope`` (and ``tenant_scope_null_is_global``), registered, or by convention a
    ``tenant`` / ``environment`` / ``agent`` foreign key. ``path`` ``"pk"`` for the tenant
    model itself, None for a model outside any tenant. Raises ``ImproperlyConfigured`` for a
    model with no known scope, so a new model cannot be readable by accident."""
    declared = getattr(model, "tenant_scope", _UNSET)
    if declared is not _UNSET:
        return declared, bool(getattr(model, "tenant_scope_null_is_global", False))  # type: ignore[return-value]
    label = model._meta.label_lower
    if label in _REGISTERED:
        return _REGISTERED[label]
    if label == TENANT_MODEL:
        return "pk", False
    for field, path in (
        ("tenant", "tenant"),
        ("environment", "environment__tenant"),
        ("agent", "agent__tenant"),
    ):
        try:
            model._meta.get_field(field)
        except FieldDoesNotExist:
            continue
        return path, False
    raise ImproperlyConfigured(
        f"{model._meta.label} has no tenant scope: give it a tenant, environment or agent "
        "foreign key, a tenant_scope attribute, or register_tenant_scope()."
    )


# Within ``visible_tenants_once()``: user pk -> that user's tenants (None: every tenant).
_VISIBLE_MEMO: ContextVar[dict[Any, QuerySet[Any] | None] | None] = ContextVar(
    "visible_tenants_memo", default=None
)


@contextmanager
def visible_tenants_once() -> Iterator[None]:
    """Within the block, ``visible_tenants`` works out each user's tenants once (guardian
    builds the same subquery in a few milliseconds of Python each time): for a page that
    composes many selectors for one user, the Overview. The queryset stays lazy, so the
    grants are still read by each SQL statement that uses it; only a change of the user's
    role inside the block would go unseen, as with Django's own permission cache."""
    token = _VISIBLE_MEMO.set({})
    try:
        yield
    finally:
        _VISIBLE_MEMO.reset(token)


def visible_tenants(user: AnyUser | None) -> QuerySet[Any] | None:
    """The tenants granted to the user, as a queryset of the tenant model (usable as a
    subquery); None for an Admin (every tenant). An anonymous or inactive user: none."""
    if user is None or not user.is_authenticated or not user.is_active:
        return _tenant_queryset().none()
    memo = _VISIBLE_MEMO.get()
    if memo is not None and user.pk in memo:
        known = memo[user.pk]
        return None if known is None else known.all()
    tenants = (
        None
        if user_is_admin(user)
        else get_objects_for_user(
            user, TENANT_ACCESS_PERMISSION, klass=_tenant_queryset(), accept_global_perms=False
        )
    )
    if memo is not None:
        memo[user.pk] = tenants
    return None if tenants is None else tenants.all()


def visible_tenant_ids(user: AnyUser | None) -> list[int] | None:
    """``visible_tenants`` as a list of ids (None: every tenant)."""
    tenants = visible_tenants(user)
    return None if tenants is None else list(tenants.values_list("pk", flat=True))


def tenant_model() -> type[Model]:
    """The tenant model, named by label (``TENANT_MODEL``): the kernel, and apps below
    tenancy (audit), reach it without importing its app."""
    return django_apps.get_model(TENANT_MODEL)


def _tenant_queryset() -> QuerySet[Any]:
    return tenant_model()._default_manager.all()


def can_access_tenant(user: AnyUser | None, tenant: Model) -> bool:
    """Whether the tenant is one of the user's (Admins: every tenant)."""
    if user is None or not user.is_authenticated or not user.is_active:
        return False
    if user_is_admin(user):
        return True
    return isinstance(user, PermissionsMixin) and user.has_perm(TENANT_ACCESS_PERMISSION, tenant)


_M = TypeVar("_M", bound=Model)


def restrict(
    queryset: QuerySet[_M], user: AnyUser | None, action: str = VIEW, *, permission: str = ""
) -> QuerySet[_M]:
    """``queryset`` limited to what ``user`` may ``action`` (``view``, ``add``, ``change``,
    ``delete`` or a custom action): nothing unless the role grants the model permission
    (``permission`` overrides its name, for a view that acts on one model by another's
    permission), and only the rows of the user's tenants (every tenant for Admins) by the
    model's ``tenant_scope``. Lazy: adds no query of its own beyond the role check (which
    Django caches on the user)."""
    if not user_may(user, permission or permission_name(queryset.model, action)):
        return queryset.none()
    path, null_is_global = tenant_scope(queryset.model)
    tenants = visible_tenants(user)
    if path is None or tenants is None:
        return queryset
    lookup = "pk__in" if path == "pk" else f"{path}__in"
    scope = Q(**{lookup: tenants.values("pk")})
    if null_is_global:
        scope |= Q(**{f"{path}__isnull": True})
    return queryset.filter(scope)


def get_restricted(
    queryset: QuerySet[_M], user: AnyUser | None, action: str = VIEW, **lookup: Any
) -> _M:
    """One row of ``restrict(queryset, user, action)``; ``Http404`` when there is none (not
    there, not the user's, or a bad lookup value), never a 403 that leaks existence."""
    try:
        return restrict(queryset, user, action).get(**lookup)
    except (ObjectDoesNotExist, ValueError, TypeError):
        raise Http404(f"No such {queryset.model._meta.verbose_name}.") from None


# ------------------------------------------------------------------ services

# why a change in an archived tenant is refused (``authorize``, and the tenancy services that
# refuse it to system actors too)
TENANT_ARCHIVED = "This tenant is archived; restore it first."


def authorize(
    actor: Actor, permission: str, tenant: Model | None = None, *, while_archived: bool = False
) -> None:
    """The check every service makes before a change: the role grants ``permission`` (403)
    and ``tenant``, when given, is one of the actor's (404, so it does not leak) and is not
    archived (``ValidationError`` on ``tenant``, 400: an archived tenant is frozen until it
    is restored). ``while_archived``: the change is one an archived tenant still takes, one
    that restores it or takes something away from it (a token revoked, an alert closed, an
    alert channel removed). A ``SystemActor`` (command, task) passes the role and tenant
    checks, as it acts for whoever started it, but not the archived one: a command is not a
    way around a frozen tenant."""
    if isinstance(actor, SystemActor):
        if tenant is not None and not while_archived and getattr(tenant, "is_archived", False):
            raise ValidationError({"tenant": [TENANT_ARCHIVED]})
        return
    if actor is None or not actor.is_authenticated or not actor.is_active:
        raise PermissionDenied("Log in first.")
    if tenant is not None and not can_access_tenant(actor, tenant):
        raise Http404("No such tenant.")
    require_permission(actor, permission)
    if tenant is not None and not while_archived and getattr(tenant, "is_archived", False):
        raise ValidationError({"tenant": [TENANT_ARCHIVED]})
