"""Passwords: a user changes their own; an Admin resets someone's to a one-time password.

A password someone else chose (a new user's initial password, an Admin's reset) must be
changed at the next login: ``PasswordChangeRequired`` holds that, and the session carries it
from the login on (``SESSION_KEY``), so the middleware that enforces it costs no query per
page. Both changes are audited; the audit never holds a password (not even redacted: the
events say only that one was set and by whom)."""

from __future__ import annotations

import secrets
from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser, User
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.http import HttpRequest

from apps.audit.services import Actor, audit_record
from apps.core.authz import authorize

from .models import PasswordChangeRequired

# The session key that says "this login used a password someone else chose".
SESSION_KEY = "accounts.password_change_required"


def one_time_password() -> str:
    """A fresh random password (16 URL-safe characters, ~96 bits), to be shown once."""
    return secrets.token_urlsafe(12)


def password_change_required(user: AbstractBaseUser | AnonymousUser) -> bool:
    """Whether ``user`` must change their password before using the UI (one query)."""
    if not user.is_authenticated:
        return False
    return PasswordChangeRequired.objects.filter(user_id=user.pk).exists()


def require_password_change(*, user: User, cause: str) -> None:
    """Mark ``user``'s password as chosen by someone else (``PasswordChangeRequired.INITIAL``
    or ``RESET``). Runs inside the caller's transaction, which audits it."""
    PasswordChangeRequired.objects.update_or_create(user=user, defaults={"cause": cause})


@transaction.atomic
def password_change(*, actor: Actor, user: User, old_password: str, new_password: str) -> User:
    """``user`` changes their own password. ``old_password`` must be the current one and
    ``new_password`` must pass ``AUTH_PASSWORD_VALIDATORS`` and differ from the old one.
    Raises ``ValidationError`` keyed by field (``old_password``, ``new_password``) and
    changes nothing; ``PermissionDenied`` when ``actor`` is not ``user`` (nobody changes
    another person's password: an Admin resets it, ``password_reset``). Ends the forced
    change, if there was one. The views check the old password through ``authenticate``
    first, so wrong guesses count towards the login lockout."""
    if getattr(actor, "pk", None) != user.pk:
        raise PermissionDenied("You can change only your own password.")
    user = User.objects.select_for_update(no_key=True).get(pk=user.pk)
    if not user.check_password(old_password):
        raise ValidationError({"old_password": ["This is not your current password."]})
    errors: dict[str, list[str]] = {}
    try:
        validate_password(new_password, user)
    except ValidationError as exc:
        errors["new_password"] = list(exc.messages)
    if not errors and new_password == old_password:
        errors["new_password"] = ["Choose a password other than the current one."]
    if errors:
        raise ValidationError(errors)
    was_required = PasswordChangeRequired.objects.filter(user=user).delete()[0] > 0
    user.set_password(new_password)
    user.save(update_fields=["password"])
    audit_record(
        actor=actor,
        action="user.password_changed",
        target=user,
        before={"change_required": was_required},
        after={"change_required": False},
    )
    return user


@transaction.atomic
def password_reset(*, actor: Actor, user: User, reason: str = "") -> str:
    """An Admin gives ``user`` a new one-time password and returns it (shown once, never
    stored but as Django's hash). The user's sessions end (Django's session hash changes)
    and their next login must change it. API tokens keep working: scripts are not people
    logging in. Raises ``PermissionDenied`` unless ``actor``'s role may change users."""
    authorize(actor, "auth.change_user")
    user = User.objects.select_for_update(no_key=True).get(pk=user.pk)
    password = one_time_password()
    user.set_password(password)
    user.save(update_fields=["password"])
    was_required = PasswordChangeRequired.objects.filter(user=user).exists()
    require_password_change(user=user, cause=PasswordChangeRequired.RESET)
    audit_record(
        actor=actor,
        action="user.password_reset",
        target=user,
        reason=reason,
        before={"change_required": was_required},
        after={"change_required": True, "cause": PasswordChangeRequired.RESET},
    )
    return password


def mark_session_on_login(
    sender: Any, request: HttpRequest | None, user: Any, **kwargs: Any
) -> None:
    """``user_logged_in`` receiver: remember in the session whether this user must change
    their password, so the middleware need not ask the database on every page."""
    if request is not None and hasattr(request, "session"):
        if password_change_required(user):
            request.session[SESSION_KEY] = True
        else:
            request.session.pop(SESSION_KEY, None)
