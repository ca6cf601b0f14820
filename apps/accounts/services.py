"""Users, roles, tenant grants and API tokens for scripts. Admin-only, audited."""

from __future__ import annotations

import secrets
from typing import Any

from django.contrib.auth.models import Group, Permission, User
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import DEFAULT_DB_ALIAS, models, transaction
from guardian.shortcuts import assign_perm, remove_perm
from rest_framework.authtoken.models import Token

from apps.audit.services import Actor, SystemActor, audit_record

from .authz import authorize
from .role_sync import RolePermissionsMissing
from .roles import ROLE_PERMISSIONS, TENANT_ACCESS_PERMISSION, Role
from .selectors import user_role


def roles_sync(*, using: str = DEFAULT_DB_ALIAS) -> None:
    """Make each role group hold exactly its permissions (idempotent). Runs after every
    migrate (see ``role_sync``). Raises ``RolePermissionsMissing`` naming every permission of
    ``ROLE_PERMISSIONS`` that is not in the database, and then changes nothing."""
    wanted = {n for names in ROLE_PERMISSIONS.values() for n in names}
    found = {
        f"{p.content_type.app_label}.{p.codename}": p
        for p in Permission.objects.using(using).select_related("content_type")
    }
    missing = sorted(wanted - set(found))
    if missing:
        raise RolePermissionsMissing(
            f"Role permissions missing from the database: {', '.join(missing)}. "
            "Run `manage.py migrate` to the end."
        )
    for role, names in ROLE_PERMISSIONS.items():
        group, _ = Group.objects.using(using).get_or_create(name=role.value)
        group.permissions.set([found[n] for n in names])


def user_snapshot(user: User) -> dict[str, Any]:
    role = user_role(user)
    return {
        "username": user.username,
        "email": user.email,
        "is_active": user.is_active,
        "role": role.value if role else None,
    }


def _set_role(user: User, role: Role) -> None:
    user.groups.remove(*Group.objects.filter(name__in=[r.value for r in Role]))
    group, _ = Group.objects.get_or_create(name=role.value)
    user.groups.add(group)


@transaction.atomic
def user_create(
    *,
    actor: Actor,
    username: str,
    email: str = "",
    role: Role,
    password: str | None = None,
    reason: str = "",
) -> tuple[User, str]:
    """Returns the user and its initial password (generated when none is given), shown once."""
    authorize(actor, "auth.add_user")
    errors: dict[str, list[str]] = {}
    if not username or User.objects.filter(username=username).exists():
        errors["username"] = ["This username is taken." if username else "Required."]
    if email:
        try:
            validate_email(email)
        except ValidationError as exc:
            errors["email"] = list(exc.messages)
    initial_password = password or secrets.token_urlsafe(12)
    try:
        validate_password(initial_password, User(username=username, email=email))
    except ValidationError as exc:
        errors["password"] = list(exc.messages)
    if errors:
        raise ValidationError(errors)
    user = User(username=username, email=email)
    user.set_password(initial_password)
    user.full_clean(exclude=["password"])
    user.save()
    _set_role(user, role)
    audit_record(
        actor=actor, action="user.created", target=user, reason=reason, after=user_snapshot(user)
    )
    return user, initial_password


@transaction.atomic
def user_update(
    *,
    actor: Actor,
    user: User,
    email: str | None = None,
    role: Role | None = None,
    is_active: bool | None = None,
    reason: str = "",
) -> User:
    authorize(actor, "auth.change_user")
    user = User.objects.select_for_update().get(pk=user.pk)
    if is_active is False and getattr(actor, "pk", None) == user.pk:
        raise ValidationError({"is_active": ["You cannot deactivate yourself."]})
    before = user_snapshot(user)
    if email is not None and email != user.email:
        if email:
            validate_email(email)
        user.email = email
        user.save(update_fields=["email"])
    if is_active is not None and is_active != user.is_active:
        user.is_active = is_active
        user.save(update_fields=["is_active"])
        if not is_active:
            Token.objects.filter(user=user).delete()  # a deactivated user's scripts stop too
    if role is not None and role != user_role(user):
        _set_role(user, role)
    after = user_snapshot(user)
    if after != before:
        audit_record(
            actor=actor,
            action="user.updated",
            target=user,
            reason=reason,
            before=before,
            after=after,
        )
    return user


@transaction.atomic
def user_grant_tenant(*, actor: Actor, user: User, tenant: models.Model, reason: str = "") -> None:
    authorize(actor, "auth.change_user")
    assign_perm(TENANT_ACCESS_PERMISSION, user, tenant)
    audit_record(
        actor=actor,
        action="user.tenant_granted",
        target=user,
        tenant=tenant,
        reason=reason,
        after={"tenant": str(tenant), "access": True},
    )


@transaction.atomic
def user_revoke_tenant(*, actor: Actor, user: User, tenant: models.Model, reason: str = "") -> None:
    authorize(actor, "auth.change_user")
    remove_perm(TENANT_ACCESS_PERMISSION, user, tenant)
    audit_record(
        actor=actor,
        action="user.tenant_revoked",
        target=user,
        tenant=tenant,
        reason=reason,
        before={"tenant": str(tenant), "access": True},
        after={"tenant": str(tenant), "access": False},
    )


@transaction.atomic
def api_token_rotate(*, actor: Actor, user: User) -> str:
    """A fresh API token for scripts, replacing any previous one. Users manage their own;
    Admins anyone's."""
    if getattr(actor, "pk", None) != user.pk:
        authorize(actor, "auth.change_user")
    Token.objects.filter(user=user).delete()
    token = Token.objects.create(user=user)
    audit_record(
        actor=actor, action="user.api_token_rotated", target=user, after={"api_token": "issued"}
    )
    return token.key


@transaction.atomic
def admin_ensure(*, username: str = "admin") -> tuple[User, str | None]:
    """The first Admin for a fresh install. Returns the password only when it was created now;
    never a fixed password."""
    existing = User.objects.filter(username=username).first()
    if existing is not None:
        return existing, None
    password = secrets.token_urlsafe(12)
    user = User(username=username, is_staff=True, is_superuser=True)
    user.set_password(password)
    user.save()
    _set_role(user, Role.ADMIN)
    audit_record(
        actor=SystemActor("system:setup"),
        action="user.created",
        target=user,
        reason="first Admin of a fresh install",
        after=user_snapshot(user),
    )
    return user, password
