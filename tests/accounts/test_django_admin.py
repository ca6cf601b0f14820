"""Django's admin cannot change anything past the audited services: it is not mounted by
default, and where an operator turns it on (DJANGO_ADMIN_ENABLED) every page is read-only."""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib import admin
from django.contrib.auth.models import Group, User
from django.test import Client
from django.urls import clear_url_caches
from guardian.models import UserObjectPermission

from apps.accounts.models import ApiToken
from apps.accounts.services import admin_ensure, api_token_rotate
from apps.audit.models import AuditEvent
from apps.core.roles import Role
from apps.tenancy.models import Tenant

from ..factories import make_user

pytestmark = pytest.mark.django_db
NEW_PASSWORD = "N3w-pass-phrase!"


def _reload_urls() -> None:
    import controlplane.urls

    importlib.reload(controlplane.urls)
    clear_url_caches()


@pytest.fixture
def admin_enabled(settings) -> Iterator[None]:  # type: ignore[no-untyped-def]
    settings.DJANGO_ADMIN_ENABLED = True
    _reload_urls()
    yield
    settings.DJANGO_ADMIN_ENABLED = False
    _reload_urls()


@pytest.fixture
def superuser() -> User:
    user, _ = admin_ensure(username="root")
    return user


def _state() -> tuple[Any, ...]:
    """Everything the admin could change about people, roles and tokens."""
    return (
        sorted(
            User.objects.values_list(
                "username", "is_superuser", "is_staff", "is_active", "password", "email"
            )
        ),
        sorted(User.groups.through.objects.values_list("user_id", "group_id")),
        sorted(User.user_permissions.through.objects.values_list("user_id", "permission_id")),
        sorted(Group.permissions.through.objects.values_list("group_id", "permission_id")),
        sorted(Group.objects.values_list("name", flat=True)),
        sorted(UserObjectPermission.objects.values_list("user_id", "object_pk")),
        sorted(ApiToken.objects.values_list("user_id", "key_hash")),
        AuditEvent.objects.count(),
    )


def test_django_admin__default__not_mounted(superuser: User) -> None:
    client = Client()
    client.force_login(superuser)

    assert client.get("/django-admin/").status_code == 404
    assert client.get("/django-admin/auth/user/").status_code == 404


def test_django_admin__enabled__every_registered_model_read_only(admin_enabled: None) -> None:
    request = type("R", (), {"user": None})()
    for model, model_admin in admin.site._registry.items():
        refused = (
            model_admin.has_add_permission(request),
            model_admin.has_change_permission(request),
            model_admin.has_delete_permission(request),
            model_admin.get_actions(request),
        )
        assert refused == (False, False, False, {}), model


def test_django_admin__enabled__pages_readable(
    admin_enabled: None, superuser: User, viewer: User
) -> None:
    client = Client()
    client.force_login(superuser)

    for url in [
        "/django-admin/",
        "/django-admin/auth/user/",
        f"/django-admin/auth/user/{viewer.pk}/change/",
        "/django-admin/auth/group/",
        "/django-admin/accounts/apitoken/",
        "/django-admin/accounts/runtimetoken/",
    ]:
        assert client.get(url).status_code == 200, url


def _writes(viewer: User, group: Group, token: ApiToken) -> list[tuple[str, dict[str, Any]]]:
    """One POST per kind of write the admin offers on people, roles and tokens."""
    user = f"/django-admin/auth/user/{viewer.pk}"
    return [
        (
            f"{user}/change/",
            {
                "username": viewer.username,
                "is_active": "on",
                "is_staff": "on",
                "is_superuser": "on",
                "groups": [group.pk],
            },
        ),
        (f"{user}/password/", {"password1": NEW_PASSWORD, "password2": NEW_PASSWORD}),
        (f"{user}/delete/", {"post": "yes"}),
        (
            "/django-admin/auth/user/add/",
            {"username": "mallory", "password1": NEW_PASSWORD, "password2": NEW_PASSWORD},
        ),
        (
            "/django-admin/auth/user/",
            {"action": "delete_selected", "_selected_action": [viewer.pk], "post": "yes"},
        ),
        (f"/django-admin/auth/group/{group.pk}/change/", {"name": "Owners", "permissions": []}),
        (f"/django-admin/auth/group/{group.pk}/delete/", {"post": "yes"}),
        ("/django-admin/auth/group/add/", {"name": "Backdoor"}),
        (
            "/django-admin/password_change/",
            {
                "old_password": "x",
                "new_password1": NEW_PASSWORD,
                "new_password2": NEW_PASSWORD,
            },
        ),
        (f"/django-admin/accounts/apitoken/{token.pk}/delete/", {"post": "yes"}),
        (f"/django-admin/accounts/apitoken/{token.pk}/change/", {"key_hash": "0" * 64}),
    ]


@pytest.mark.parametrize("index", range(11))
def test_django_admin__enabled__no_post_changes_anything(
    index: int, admin_enabled: None, superuser: User, tenant: Tenant
) -> None:
    viewer = make_user(Role.VIEWER, tenant, username="victor")
    api_token_rotate(actor=viewer, user=viewer)
    group = Group.objects.get(name=Role.ADMIN.value)
    url, data = _writes(viewer, group, ApiToken.objects.get(user=viewer))[index]
    client = Client()
    client.force_login(superuser)
    before = _state()

    response = client.post(url, data)

    # refused (403), or the page shown again without the write (the list ignores an action it
    # does not offer); never the redirect that follows a saved change
    assert response.status_code in (200, 403), (url, response.status_code)
    assert _state() == before
