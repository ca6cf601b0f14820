"""Users, roles and tenant grants over the API (Admins only), and API tokens for scripts."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db.models import Model
from guardian.models import UserObjectPermission
from rest_framework.test import APIClient

from apps.accounts.models import ApiToken, RuntimeToken
from apps.accounts.runtime_tokens import runtime_token_create
from apps.accounts.selectors import user_role
from apps.audit.models import AuditEvent
from apps.audit.services import SystemActor
from apps.core.roles import Role, roles_with
from apps.tenancy.models import Tenant

from ..api_permissions import APIViewTestCases
from ..conftest import api_as
from ..factories import make_user

pytestmark = pytest.mark.django_db

PASSWORD = "pw-for-tests-123"  # what tests/factories.make_user sets


def _state() -> tuple[Any, ...]:
    """Everything a users API call could change."""
    return (
        sorted(User.objects.values_list("username", "email", "is_active")),
        sorted(User.groups.through.objects.values_list("user_id", "group_id")),
        sorted(UserObjectPermission.objects.values_list("user_id", "object_pk")),
        AuditEvent.objects.count(),
    )


def _token_client(key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client


def _obtain(username: str, password: str) -> Any:
    return APIClient().post(
        "/api/v1/auth/token/", {"username": username, "password": password}, format="json"
    )


# --------------------------------------------------------------------------- role matrix

ACTIONS = {
    "list": lambda c, target, t: c.get("/api/v1/users/"),
    "retrieve": lambda c, target, t: c.get(f"/api/v1/users/{target.pk}/"),
    "create": lambda c, target, t: c.post(
        "/api/v1/users/", {"username": "newbie", "role": "Viewer"}, format="json"
    ),
    "change_role": lambda c, target, t: c.patch(
        f"/api/v1/users/{target.pk}/", {"role": "Admin"}, format="json"
    ),
    "deactivate": lambda c, target, t: c.patch(
        f"/api/v1/users/{target.pk}/", {"is_active": False}, format="json"
    ),
    "grant_tenant": lambda c, target, t: c.post(
        f"/api/v1/users/{target.pk}/grant-tenant/", {"tenant": t.pk}, format="json"
    ),
    "revoke_tenant": lambda c, target, t: c.post(
        f"/api/v1/users/{target.pk}/revoke-tenant/", {"tenant": t.pk}, format="json"
    ),
}


@pytest.mark.parametrize("role", [r for r in Role if r not in roles_with("auth.view_user")])
@pytest.mark.parametrize("action", list(ACTIONS))
def test_users_api__non_admin__403_and_nothing_changes(
    role: Role, action: str, tenant: Tenant
) -> None:
    caller = make_user(role, tenant, username="caller")
    target = make_user(Role.VIEWER, tenant, username="target")
    before = _state()

    response = ACTIONS[action](api_as(caller), target, tenant)

    assert response.status_code == 403, response.content
    assert response.json()["detail"] == "Only Admins manage users and roles."
    assert _state() == before


@pytest.mark.parametrize("action", list(ACTIONS))
def test_users_api__anonymous__refused_and_nothing_changes(action: str, tenant: Tenant) -> None:
    target = make_user(Role.VIEWER, tenant, username="target")
    before = _state()

    response = ACTIONS[action](APIClient(), target, tenant)

    assert response.status_code in (401, 403)
    assert _state() == before


@pytest.mark.parametrize("action", list(ACTIONS))
def test_users_api__admin__allowed(action: str, admin, tenant: Tenant) -> None:  # type: ignore[no-untyped-def]
    target = make_user(Role.VIEWER, username="target")
    response = ACTIONS[action](api_as(admin), target, tenant)
    assert response.status_code in (200, 201, 204), response.content


# --------------------------------------------------------------------------- Admin manages users


def test_user_create__with_role__generated_password_returned_once_and_audited(admin) -> None:  # type: ignore[no-untyped-def]
    response = api_as(admin).post(
        "/api/v1/users/",
        {
            "username": "nora",
            "email": "nora@example.com",
            "role": "Operator",
            "reason": "joins on-call",
        },
        format="json",
    )

    assert response.status_code == 201, response.content
    body = response.json()
    password = body["initial_password"]
    assert len(password) >= 12
    assert (body["username"], body["email"], body["role"], body["is_active"]) == (
        "nora",
        "nora@example.com",
        "Operator",
        True,
    )
    user = User.objects.get(username="nora")
    assert user_role(user) is Role.OPERATOR
    assert user.check_password(password)
    event = AuditEvent.objects.get(action="user.created", target_id=str(user.pk))
    assert event.actor_label == "admin-user" and event.reason == "joins on-call"
    assert event.after == {
        "username": "nora",
        "email": "nora@example.com",
        "is_active": True,
        "role": "Operator",
    }
    assert password not in str(AuditEvent.objects.values().get(pk=event.pk))
    assert "initial_password" not in api_as(admin).get(f"/api/v1/users/{user.pk}/").json()


def test_user_create__given_password__used_and_not_echoed(admin) -> None:  # type: ignore[no-untyped-def]
    response = api_as(admin).post(
        "/api/v1/users/",
        {"username": "nora", "role": "Viewer", "password": "Correct-Horse-42"},
        format="json",
    )
    assert response.status_code == 201
    assert User.objects.get(username="nora").check_password("Correct-Horse-42")
    # the password is taken (403 "change it first", not 401): an initial password the Admin
    # chose is never exchanged for a lasting token
    assert _obtain("nora", "Correct-Horse-42").status_code == 403


def test_user_update__change_role__role_changes_and_audited(admin, tenant: Tenant) -> None:  # type: ignore[no-untyped-def]
    user = make_user(Role.VIEWER, tenant, username="vera")

    response = api_as(admin).patch(
        f"/api/v1/users/{user.pk}/", {"role": "Operator", "reason": "promoted"}, format="json"
    )

    assert response.status_code == 200
    assert response.json()["role"] == "Operator"
    assert user_role(User.objects.get(pk=user.pk)) is Role.OPERATOR
    assert list(User.objects.get(pk=user.pk).groups.values_list("name", flat=True)) == ["Operator"]
    event = AuditEvent.objects.get(action="user.updated")
    assert (event.before["role"], event.after["role"], event.reason) == (
        "Viewer",
        "Operator",
        "promoted",
    )


def test_user_update__role_change__new_permissions_apply(admin, tenant: Tenant) -> None:  # type: ignore[no-untyped-def]
    user = make_user(Role.VIEWER, tenant, username="vera")
    create = {"tenant": tenant.pk, "slug": "bot", "name": "Bot"}
    assert api_as(user).post("/api/v1/agents/", create, format="json").status_code == 403

    api_as(admin).patch(f"/api/v1/users/{user.pk}/", {"role": "Operator"}, format="json")

    assert (
        api_as(User.objects.get(pk=user.pk))
        .post("/api/v1/agents/", create, format="json")
        .status_code
        == 201
    )


def test_user_update__deactivate__api_token_stops_working_and_audited(
    admin, tenant: Tenant
) -> None:  # type: ignore[no-untyped-def]
    user = make_user(Role.OPERATOR, tenant, username="otto")
    key = _obtain("otto", PASSWORD).json()["token"]
    assert _token_client(key).get("/api/v1/me/").status_code == 200

    response = api_as(admin).patch(
        f"/api/v1/users/{user.pk}/", {"is_active": False, "reason": "left"}, format="json"
    )

    assert response.status_code == 200
    assert response.json()["is_active"] is False
    assert _token_client(key).get("/api/v1/me/").status_code == 401
    assert not ApiToken.objects.filter(user=user).exists()
    assert _obtain("otto", PASSWORD).status_code == 401
    event = AuditEvent.objects.get(action="user.updated")
    assert (event.before["is_active"], event.after["is_active"], event.reason) == (
        True,
        False,
        "left",
    )


def test_user_update__deactivate_yourself__400_and_nothing_changes(admin) -> None:  # type: ignore[no-untyped-def]
    before = _state()
    response = api_as(admin).patch(
        f"/api/v1/users/{admin.pk}/", {"is_active": False}, format="json"
    )
    assert response.status_code == 400
    assert "is_active" in response.json()["errors"]
    assert _state() == before


def test_user_update__nothing_changes__no_audit_event(admin, viewer) -> None:  # type: ignore[no-untyped-def]
    before = _state()
    response = api_as(admin).patch(f"/api/v1/users/{viewer.pk}/", {"role": "Viewer"}, format="json")
    assert response.status_code == 200
    assert _state() == before


def test_user_grant_then_revoke_tenant__user_sees_then_no_longer_sees_it(
    admin, tenant: Tenant
) -> None:  # type: ignore[no-untyped-def]
    user = make_user(Role.OPERATOR, username="gina")
    client = api_as(user)
    assert client.get("/api/v1/tenants/").json()["count"] == 0
    assert client.get(f"/api/v1/tenants/{tenant.pk}/").status_code == 404

    granted = api_as(admin).post(
        f"/api/v1/users/{user.pk}/grant-tenant/",
        {"tenant": tenant.pk, "reason": "on-call"},
        format="json",
    )

    assert granted.status_code == 204
    assert [t["slug"] for t in client.get("/api/v1/tenants/").json()["results"]] == ["acme"]
    assert client.get(f"/api/v1/tenants/{tenant.pk}/").status_code == 200
    assert client.get("/api/v1/environments/").json()["count"] == 3

    revoked = api_as(admin).post(
        f"/api/v1/users/{user.pk}/revoke-tenant/",
        {"tenant": tenant.pk, "reason": "done"},
        format="json",
    )

    assert revoked.status_code == 204
    assert client.get("/api/v1/tenants/").json()["count"] == 0
    assert client.get(f"/api/v1/tenants/{tenant.pk}/").status_code == 404
    assert client.get("/api/v1/environments/").json()["count"] == 0
    events = list(AuditEvent.objects.filter(target_id=str(user.pk)).order_by("id"))
    assert [(e.action, e.tenant_id, e.reason) for e in events] == [
        ("user.tenant_granted", tenant.pk, "on-call"),
        ("user.tenant_revoked", tenant.pk, "done"),
    ]


def test_user_grant_tenant__unknown_tenant__404_and_nothing_changes(admin, viewer) -> None:  # type: ignore[no-untyped-def]
    before = _state()
    response = api_as(admin).post(
        f"/api/v1/users/{viewer.pk}/grant-tenant/", {"tenant": 999999}, format="json"
    )
    assert response.status_code == 404
    assert _state() == before


def test_users_api__unknown_user__404(admin) -> None:  # type: ignore[no-untyped-def]
    assert api_as(admin).get("/api/v1/users/999999/").status_code == 404
    assert (
        api_as(admin).patch("/api/v1/users/999999/", {"role": "Admin"}, format="json").status_code
        == 404
    )


def test_users_api_list__admin__sees_roles(admin, operator, viewer) -> None:  # type: ignore[no-untyped-def]
    users = api_as(admin).get("/api/v1/users/").json()["results"]
    assert {u["username"]: u["role"] for u in users} == {
        "admin-user": "Admin",
        "olivia-operator": "Operator",
        "victor-viewer": "Viewer",
    }


# --------------------------------------------------------------------------- bad input

BAD_CREATE = [
    ({"role": "Viewer"}, "username"),
    ({"username": "nora"}, "role"),
    ({"username": "nora", "role": "Superhero"}, "role"),
    ({"username": "has space", "role": "Viewer"}, "username"),
    ({"username": "olivia-operator", "role": "Viewer"}, "username"),
    ({"username": "nora", "role": "Viewer", "email": "not-an-email"}, "email"),
    ({"username": "nora", "role": "Viewer", "password": "short"}, "password"),
    ({"username": "nora", "role": "Viewer", "password": "password123"}, "password"),
    ({"username": "nora", "role": "Viewer", "password": "12345678901"}, "password"),
]


@pytest.mark.parametrize(("payload", "field"), BAD_CREATE)
def test_user_create__bad_input__400_with_field_errors_and_nothing_stored(
    admin,
    operator,
    payload: dict[str, Any],
    field: str,  # type: ignore[no-untyped-def]
) -> None:
    before = _state()

    response = api_as(admin).post("/api/v1/users/", payload, format="json")

    assert response.status_code == 400, response.content
    assert response.json()["detail"]
    assert field in response.json()["errors"], response.json()
    assert _state() == before


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"role": "Root"}, "role"),
        ({"email": "nope"}, "email"),
        ({"is_active": "maybe"}, "is_active"),
    ],
)
def test_user_update__bad_input__400_with_field_errors_and_nothing_stored(
    admin,
    viewer,
    payload: dict[str, Any],
    field: str,  # type: ignore[no-untyped-def]
) -> None:
    before = _state()
    response = api_as(admin).patch(f"/api/v1/users/{viewer.pk}/", payload, format="json")
    assert response.status_code == 400
    assert field in response.json()["errors"]
    assert _state() == before


@pytest.mark.parametrize("payload", [{}, {"tenant": "acme"}, {"tenant": None}])
def test_user_grant_tenant__bad_input__400_and_nothing_stored(
    admin, viewer, tenant: Tenant, payload
) -> None:  # type: ignore[no-untyped-def]
    before = _state()
    response = api_as(admin).post(
        f"/api/v1/users/{viewer.pk}/grant-tenant/", payload, format="json"
    )
    assert response.status_code == 400
    assert "tenant" in response.json()["errors"]
    assert _state() == before


# --------------------------------------------------------------------------- token for scripts


def test_token_obtain__right_password__token_authenticates_requests(operator) -> None:  # type: ignore[no-untyped-def]
    response = _obtain("olivia-operator", PASSWORD)

    assert response.status_code == 200
    key = response.json()["token"]
    me = _token_client(key).get("/api/v1/me/")
    assert me.status_code == 200
    assert me.json()["username"] == "olivia-operator"
    assert _token_client(key).get("/api/v1/tenants/").json()["count"] == 1


def test_token_obtain__audited_without_the_token(operator) -> None:  # type: ignore[no-untyped-def]
    key = _obtain("olivia-operator", PASSWORD).json()["token"]
    event = AuditEvent.objects.get(action="user.api_token_rotated")
    assert (event.actor_id, event.target_id) == (operator.pk, str(operator.pk))
    assert key not in str(AuditEvent.objects.values().get(pk=event.pk))


def test_token_obtain__again__replaces_the_previous_token(operator) -> None:  # type: ignore[no-untyped-def]
    first = _obtain("olivia-operator", PASSWORD).json()["token"]
    second = _obtain("olivia-operator", PASSWORD).json()["token"]
    assert first != second
    assert _token_client(first).get("/api/v1/me/").status_code == 401
    assert _token_client(second).get("/api/v1/me/").status_code == 200


@pytest.mark.parametrize(
    ("username", "password"),
    [("olivia-operator", "wrong-password"), ("nobody", PASSWORD), ("olivia-operator", "")],
)
def test_token_obtain__wrong_credentials__refused_and_nothing_stored(
    operator, username: str, password: str
) -> None:  # type: ignore[no-untyped-def]
    before = (_state(), ApiToken.objects.count())
    response = _obtain(username, password)
    assert response.status_code in (400, 401)
    assert response.json()["detail"]
    assert (_state(), ApiToken.objects.count()) == before


def test_token_obtain__wrong_password__401(operator) -> None:  # type: ignore[no-untyped-def]
    response = _obtain("olivia-operator", "wrong-password")
    assert response.status_code == 401
    assert response.json() == {"detail": "Wrong username or password.", "errors": {}}


def test_token_obtain__missing_fields__400_with_field_errors(operator) -> None:  # type: ignore[no-untyped-def]
    response = APIClient().post("/api/v1/auth/token/", {}, format="json")
    assert response.status_code == 400
    assert set(response.json()["errors"]) == {"username", "password"}


def test_token_auth__garbage_token__401() -> None:
    assert _token_client("not-a-real-token").get("/api/v1/me/").status_code == 401


def test_api__no_credentials__401_with_token_challenge() -> None:
    response = APIClient().get("/api/v1/tenants/")
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Token"


# ----------------------------------------------------------------- shared permission suite
# tests/api_permissions.py: every role, expectations from apps.core.roles.


class TestUserAPIPermissions(
    APIViewTestCases.GetObject,
    APIViewTestCases.ListObjects,
    APIViewTestCases.CreateObject,
    APIViewTestCases.UpdateObject,
):
    model = User
    list_url = "/api/v1/users/"
    tenant_scoped = False  # users are no tenant's: the role alone decides
    update_data = {"role": "Approver"}

    def make_object(self, tenant: Tenant) -> User:
        return make_user(Role.VIEWER, tenant, username="target")

    def create(self, client: APIClient, tenant: Tenant) -> Any:
        return client.post(self.list_url, {"username": "newbie", "role": "Viewer"}, format="json")


class TestRuntimeTokenAPIPermissions(
    APIViewTestCases.GetObject,
    APIViewTestCases.ListObjects,
    APIViewTestCases.CreateObject,
    APIViewTestCases.UpdateObject,
):
    model = RuntimeToken
    list_url = "/api/v1/runtime-tokens/"

    def make_object(self, tenant: Tenant) -> RuntimeToken:
        environment = tenant.environments.order_by("position")[0]
        token, _ = runtime_token_create(
            actor=SystemActor("test"), tenant=tenant, environment=environment, name="edge"
        )
        return token

    def create(self, client: APIClient, tenant: Tenant) -> Any:
        environment = tenant.environments.order_by("position")[0]
        data = {"environment": environment.pk, "name": "edge", "reason": "r"}
        return client.post(self.list_url, data, format="json")

    def update(self, client: APIClient, obj: Model) -> Any:
        """Revoke: the one change a runtime token takes."""
        return client.post(f"{self.detail_url(obj)}revoke/", {"reason": "r"}, format="json")
