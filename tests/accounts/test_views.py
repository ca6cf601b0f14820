"""Users & roles pages in the browser UI (Admins only) and the profile's API token."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from guardian.models import UserObjectPermission

from apps.accounts.selectors import user_role, user_version
from apps.audit.models import AuditEvent
from apps.core.roles import Role
from apps.tenancy.models import Tenant

from ..factories import make_user

pytestmark = pytest.mark.django_db


def _state() -> tuple[Any, ...]:
    return (
        sorted(User.objects.values_list("username", "email", "is_active")),
        sorted(User.groups.through.objects.values_list("user_id", "group_id")),
        sorted(UserObjectPermission.objects.values_list("user_id", "object_pk")),
        AuditEvent.objects.count(),
    )


def _client(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


PAGES = {
    "list": lambda c, u: c.get("/users/"),
    "create_page": lambda c, u: c.get("/users/new/"),
    "create_post": lambda c, u: c.post("/users/new/", {"username": "newbie", "role": "Viewer"}),
    "edit_page": lambda c, u: c.get(f"/users/{u.pk}/"),
    "edit_post": lambda c, u: c.post(f"/users/{u.pk}/", {"role": "Admin", "is_active": "on"}),
}


@pytest.mark.parametrize("role", [Role.OPERATOR, Role.APPROVER, Role.VIEWER])
@pytest.mark.parametrize("page", list(PAGES))
def test_user_pages__non_admin__403_and_nothing_changes(
    role: Role, page: str, tenant: Tenant
) -> None:
    caller = make_user(role, tenant, username="caller")
    target = make_user(Role.VIEWER, tenant, username="target")
    before = _state()

    response = PAGES[page](_client(caller), target)

    assert response.status_code == 403
    assert _state() == before


def test_sidebar__users_link__only_for_admins(admin, operator) -> None:  # type: ignore[no-untyped-def]
    assert 'href="/users/"' in _client(admin).get("/").content.decode()
    assert 'href="/users/"' not in _client(operator).get("/").content.decode()


def test_user_create_form__admin__shows_password_once_and_audits(admin) -> None:  # type: ignore[no-untyped-def]
    response = _client(admin).post(
        "/users/new/",
        {"username": "nora", "email": "nora@example.com", "role": "Operator", "reason": "new hire"},
    )

    assert response.status_code == 200
    user = User.objects.get(username="nora")
    password = response.context["password"]
    assert password in response.content.decode()
    assert user.check_password(password)
    assert user_role(user) is Role.OPERATOR
    assert (
        AuditEvent.objects.get(action="user.created", target_id=str(user.pk)).reason == "new hire"
    )
    assert password not in _client(admin).get(f"/users/{user.pk}/").content.decode()


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"username": "bad name!", "role": "Viewer"}, "username"),
        ({"username": "admin-user", "role": "Viewer"}, "username"),
        ({"username": "nora", "role": "God"}, "role"),
        ({"username": "nora", "role": "Viewer", "email": "nope"}, "email"),
    ],
)
def test_user_create_form__bad_input__field_error_and_nothing_stored(
    admin, data: dict[str, str], field: str
) -> None:  # type: ignore[no-untyped-def]
    before = _state()

    response = _client(admin).post("/users/new/", data)

    assert response.status_code == 200
    assert response.context["form"].errors[field]
    assert f'id="id_{field}_error"' in response.content.decode()
    assert _state() == before


def test_user_edit_form__role_and_tenant_grant__saved_together_and_audited(
    admin, tenant: Tenant, other_tenant: Tenant
) -> None:  # type: ignore[no-untyped-def]
    user = make_user(Role.VIEWER, username="vera")

    response = _client(admin).post(
        f"/users/{user.pk}/",
        {
            "email": "vera@example.com",
            "role": "Operator",
            "is_active": "on",
            "tenants": [str(tenant.pk)],
            "reason": "joins acme on-call",
            "expected_version": user_version(user),
        },
    )

    assert response.status_code == 302
    user.refresh_from_db()
    assert user_role(user) is Role.OPERATOR
    assert user.email == "vera@example.com"
    assert user.has_perm("tenancy.view_tenant", tenant)
    assert not user.has_perm("tenancy.view_tenant", other_tenant)
    actions = list(
        AuditEvent.objects.filter(target_id=str(user.pk))
        .order_by("id")
        .values_list("action", "reason")
    )
    assert actions == [
        ("user.updated", "joins acme on-call"),
        ("user.tenant_granted", "joins acme on-call"),
    ]


def test_user_edit_form__unchecking_a_tenant__revokes_it(admin, viewer, tenant: Tenant) -> None:  # type: ignore[no-untyped-def]
    response = _client(admin).post(
        f"/users/{viewer.pk}/",
        {
            "role": "Viewer",
            "is_active": "on",
            "tenants": [],
            "expected_version": user_version(viewer),
        },
    )

    assert response.status_code == 302
    assert not User.objects.get(pk=viewer.pk).has_perm("tenancy.view_tenant", tenant)
    assert (
        AuditEvent.objects.filter(action="user.tenant_revoked", target_id=str(viewer.pk)).count()
        == 1
    )


def test_user_edit_form__deactivate_yourself__field_error_and_nothing_changes(admin) -> None:  # type: ignore[no-untyped-def]
    before = _state()
    response = _client(admin).post(
        f"/users/{admin.pk}/", {"role": "Admin", "expected_version": user_version(admin)}
    )
    assert response.status_code == 200
    assert response.context["form"].errors["is_active"]
    assert _state() == before


def test_user_edit__unknown_user__404(admin) -> None:  # type: ignore[no-untyped-def]
    assert _client(admin).get("/users/999999/").status_code == 404


def test_profile_api_token__rotate__shown_once_and_works(operator) -> None:  # type: ignore[no-untyped-def]
    client = _client(operator)
    response = client.post("/profile/api-token/")
    key = response.context["new_token"]
    assert key in response.content.decode()
    profile = client.get("/profile/").content.decode()
    assert key not in profile and f"{key[:11]}…" in profile
    assert (
        Client().get("/api/v1/me/", HTTP_AUTHORIZATION=f"Token {key}").json()["username"]
        == "olivia-operator"
    )


def test_user_list__many_users__bounded_queries(
    admin, tenant: Tenant, django_assert_max_num_queries
) -> None:  # type: ignore[no-untyped-def]
    for i in range(20):
        make_user(Role.OPERATOR, tenant, username=f"user-{i}")
    client = _client(admin)
    client.get("/users/")
    with django_assert_max_num_queries(15):
        response = client.get("/users/")
    assert len(response.context["page"].object_list) == 21
