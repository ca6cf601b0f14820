"""Users, roles, tenant grants and API tokens for scripts. Admin-only, audited."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from typing import Any

from django.contrib.auth.models import Group, Permission, User
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import DEFAULT_DB_ALIAS, models, transaction
from guardian.models import UserObjectPermission
from guardian.shortcuts import assign_perm, remove_perm

from apps.audit.concurrency import last_change, version_check
from apps.audit.services import Actor, SystemActor, audit_record
from apps.core.authz import authorize
from apps.core.roles import ROLE_PERMISSIONS, TENANT_ACCESS_PERMISSION, Role

from .models import API_TOKEN_PREFIX, ApiToken, PasswordChangeRequired, UserVersion, hash_token
from .passwords import one_time_password, require_password_change
from .role_sync import RolePermissionsMissing
from .selectors import user_role, user_version


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


def _check_user_seen(user: User, expected_version: int | None) -> None:
    """Refuse a change of ``user`` (locked) based on a ``version`` that moved on, naming who
    made the newest audited change of the user and when (docs/decisions/0007, 0013)."""
    current = user_version(user)
    if expected_version is None or expected_version == current:
        return
    changed_by, changed_at = last_change(target_type=user._meta.label_lower, target_id=user.pk)
    version_check(
        what=f"User {user.username}",
        expected=expected_version,
        current=current,
        changed_by=changed_by,
        changed_at=changed_at,
    )


def _bump_user_version(user: User) -> None:
    """Grow the user's ``version`` by one; the caller holds the user's row lock."""
    # a user without a row is at version 1 (``user_version``), the row's default
    UserVersion.objects.get_or_create(user=user)
    UserVersion.objects.filter(user=user).update(version=models.F("version") + 1)
    # ``user_list`` joins the version row: what this instance carries is now stale
    if User.edit_version.is_cached(user):
        User.edit_version.related.delete_cached_value(user)


def _set_role(user: User, role: Role) -> None:
    user.groups.remove(*Group.objects.filter(name__in=[r.value for r in Role]))
    group, _ = Group.objects.get_or_create(name=role.value)
    user.groups.add(group)
    if role is not Role.ADMIN and (user.is_superuser or user.is_staff):
        # A superuser is an Admin whatever its groups say: a role below Admin must end that
        # too, or the change would be recorded while the user stayed an Admin.
        user.is_superuser = user.is_staff = False
        user.save(update_fields=["is_superuser", "is_staff"])


@transaction.atomic
def user_create(
    *,
    actor: Actor,
    username: str,
    email: str = "",
    role: Role,
    password: str | None = None,
    reason: str = "",
    tenants: Sequence[models.Model] = (),
) -> tuple[User, str]:
    """Returns the user and its initial password (generated when none is given), shown once.
    The user must change it at the first login (``PasswordChangeRequired``). ``tenants``:
    granted at once (``user_grant_tenant``, each audited), so the new user sees their work
    on the first page. Raises ``ValidationError`` by field and creates nothing."""
    authorize(actor, "auth.add_user")
    errors: dict[str, list[str]] = {}
    if not username or User.objects.filter(username=username).exists():
        errors["username"] = ["This username is taken." if username else "Required."]
    if email:
        try:
            validate_email(email)
        except ValidationError as exc:
            errors["email"] = list(exc.messages)
    initial_password = password or one_time_password()
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
    require_password_change(user=user, cause=PasswordChangeRequired.INITIAL)
    audit_record(
        actor=actor, action="user.created", target=user, reason=reason, after=user_snapshot(user)
    )
    for tenant in tenants:
        user_grant_tenant(actor=actor, user=user, tenant=tenant, reason=reason)
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
    expected_version: int | None = None,
) -> User:
    """Change a user's email, role or active flag. ``expected_version``: the user's
    ``version`` (``user_version``) the change was based on (None: no check);
    ``StaleVersion`` when it moved on. A real change adds one to it."""
    authorize(actor, "auth.change_user")
    # FOR NO KEY UPDATE (here and on every user lock of this module): serialises changes of
    # the user, yet lets another transaction insert an audit event naming this user as its
    # actor (a foreign key's FOR KEY SHARE); FOR UPDATE deadlocked two Admins editing each
    # other at the same moment.
    user = User.objects.select_for_update(no_key=True).get(pk=user.pk)
    _check_user_seen(user, expected_version)
    if is_active is False and getattr(actor, "pk", None) == user.pk:
        raise ValidationError({"is_active": ["You cannot deactivate yourself."]})
    before = user_snapshot(user)
    revoked_api_access = False
    if email is not None and email != user.email:
        if email:
            try:
                validate_email(email)
            except ValidationError as exc:
                raise ValidationError({"email": list(exc.messages)}) from None
        user.email = email
        user.save(update_fields=["email"])
    if is_active is not None and is_active != user.is_active:
        user.is_active = is_active
        user.save(update_fields=["is_active"])
        if not is_active:
            # a deactivated user's scripts stop too
            revoked_api_access = ApiToken.objects.filter(user=user).delete()[0] > 0
    if role is not None and role != user_role(user):
        _set_role(user, role)
    after = user_snapshot(user)
    if revoked_api_access:
        # part of the change, so part of its before/after (issue 8, kind 8); the key name
        # matches user.api_token_rotated and has no "token" in it (the log redacts those)
        before["api_access"], after["api_access"] = True, False
    if after != before:
        _bump_user_version(user)
        audit_record(
            actor=actor,
            action="user.updated",
            target=user,
            reason=reason,
            before=before,
            after=after,
        )
    return user


def _has_tenant_grant(user: User, tenant: models.Model) -> bool:
    # The grant itself (guardian's user object permission), not what a role would imply:
    # Admins see every tenant without one.
    return UserObjectPermission.objects.filter(
        user=user,
        permission__codename=TENANT_ACCESS_PERMISSION.split(".", 1)[1],
        permission__content_type__app_label=TENANT_ACCESS_PERMISSION.split(".", 1)[0],
        object_pk=str(tenant.pk),
    ).exists()


@transaction.atomic
def user_grant_tenant(*, actor: Actor, user: User, tenant: models.Model, reason: str = "") -> bool:
    """Let ``user`` see ``tenant``. Returns False, writing nothing and no audit event, when
    the grant was already there (so the log never states a change that did not happen)."""
    authorize(actor, "auth.change_user")
    User.objects.select_for_update(no_key=True).get(
        pk=user.pk
    )  # concurrent grants of one user take turns
    if _has_tenant_grant(user, tenant):
        return False
    assign_perm(TENANT_ACCESS_PERMISSION, user, tenant)
    _bump_user_version(user)  # the grants are part of what the user's edit form shows
    audit_record(
        actor=actor,
        action="user.tenant_granted",
        target=user,
        tenant=tenant,
        reason=reason,
        before={"tenant": str(tenant), "access": False},
        after={"tenant": str(tenant), "access": True},
    )
    return True


@transaction.atomic
def user_revoke_tenant(*, actor: Actor, user: User, tenant: models.Model, reason: str = "") -> bool:
    """Stop ``user`` seeing ``tenant``. Returns False, writing nothing and no audit event,
    when there was no grant to revoke."""
    authorize(actor, "auth.change_user")
    User.objects.select_for_update(no_key=True).get(pk=user.pk)
    if not _has_tenant_grant(user, tenant):
        return False
    remove_perm(TENANT_ACCESS_PERMISSION, user, tenant)
    _bump_user_version(user)
    audit_record(
        actor=actor,
        action="user.tenant_revoked",
        target=user,
        tenant=tenant,
        reason=reason,
        before={"tenant": str(tenant), "access": True},
        after={"tenant": str(tenant), "access": False},
    )
    return True


@transaction.atomic
def api_token_rotate(*, actor: Actor, user: User) -> str:
    """A fresh API token for scripts, replacing any previous one; returns the key, which is
    shown once and stored only as its sha256. Users manage their own; Admins anyone's."""
    if getattr(actor, "pk", None) != user.pk:
        authorize(actor, "auth.change_user")
    User.objects.select_for_update(no_key=True).get(pk=user.pk)  # concurrent rotations take turns
    replaced = ApiToken.objects.filter(user=user).delete()[0] > 0
    key = API_TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken.objects.create(
        user=user, key_hash=hash_token(key), display_prefix=key[: len(API_TOKEN_PREFIX) + 6]
    )
    audit_record(
        actor=actor,
        action="user.api_token_rotated",
        target=user,
        # keys without "token" in them: the audit log redacts those whole
        before={"api_access": replaced},
        after={"api_access": True, "key_prefix": token.display_prefix},
    )
    return key


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
