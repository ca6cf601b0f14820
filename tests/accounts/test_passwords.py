"""Passwords: a new user's initial password must be changed at the first login, a user
changes their own on the profile, an Admin resets one to a one-time password; all audited,
bad input refused field by field with nothing changed (issue "The operator's and the
approver's day", item 3)."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from guardian.models import UserObjectPermission
from rest_framework.test import APIClient

from apps.accounts.models import ApiToken, PasswordChangeRequired
from apps.accounts.services import api_token_rotate
from apps.audit.models import AuditEvent
from apps.core.roles import Role
from apps.tenancy.models import Tenant

from ..conftest import api_as
from ..factories import make_user

pytestmark = pytest.mark.django_db

CHANGE = "/profile/password/"
NEW = "a-Much-better-passphrase-42"


def _login(username: str, password: str) -> Client:
    client = Client()
    response = client.post("/login/", {"username": username, "password": password})
    assert response.status_code == 302, response.content
    return client


def _create_user(admin: User, tenants: list[Tenant], username: str = "nina") -> str:
    """An Admin creates a Viewer on the page; returns the initial password it shows once."""
    client = Client()
    client.force_login(admin)
    response = client.post(
        "/users/new/",
        {
            "username": username,
            "role": "Viewer",
            "tenants": [str(t.pk) for t in tenants],
            "reason": "joins",
        },
    )
    assert response.status_code == 200, response.content
    return str(response.context["password"])


def _state(user: User) -> tuple[Any, ...]:
    user.refresh_from_db()
    return (
        user.password,
        PasswordChangeRequired.objects.filter(user=user).exists(),
        AuditEvent.objects.count(),
    )


def test_user_create__with_tenant_grants__granted_audited_and_change_required(
    admin: User, tenant: Tenant, other_tenant: Tenant
) -> None:
    _create_user(admin, [tenant, other_tenant])

    user = User.objects.get(username="nina")
    grants = UserObjectPermission.objects.filter(user=user)
    granted = set(grants.values_list("object_pk", flat=True))
    assert granted == {str(tenant.pk), str(other_tenant.pk)}
    events = AuditEvent.objects.filter(target_id=str(user.pk)).values_list("action", flat=True)
    assert sorted(events) == ["user.created", "user.tenant_granted", "user.tenant_granted"]
    assert PasswordChangeRequired.objects.get(user=user).cause == "initial"
    client = Client()
    client.force_login(admin)
    listed = client.get("/users/").content.decode()
    assert listed.count("must change password") == 1  # nina, not the Admin


def test_user_create_page__tenants_in_a_fieldset_with_a_label_per_checkbox(
    admin: User, tenant: Tenant, other_tenant: Tenant
) -> None:
    client = Client()
    client.force_login(admin)
    html = client.get("/users/new/").content.decode()

    assert "<legend>Tenants" in html
    for t in (tenant, other_tenant):
        # the checkbox sits inside its own label, named by the tenant
        assert f'value="{t.pk}"' in html
        assert f"> {t.name}</label>" in html


def test_user_create_api__tenants__granted_and_unknown_tenant_refused(
    admin: User, tenant: Tenant
) -> None:
    api = APIClient()
    api.force_authenticate(admin)
    refused = api.post(
        "/api/v1/users/", {"username": "x", "role": "Viewer", "tenants": [999999]}, format="json"
    )
    assert refused.status_code == 400 and "tenants" in refused.json()["errors"]
    assert not User.objects.filter(username="x").exists()

    created = api.post(
        "/api/v1/users/", {"username": "y", "role": "Viewer", "tenants": [tenant.pk]}, format="json"
    )
    assert created.status_code == 201, created.content
    user = User.objects.get(username="y")
    assert UserObjectPermission.objects.filter(user=user, object_pk=str(tenant.pk)).exists()


@pytest.mark.parametrize("path", ["/", "/flags/", "/audit/", "/profile/", "/runtimes/"])
def test_first_login__initial_password__every_page_leads_to_the_change_page(
    admin: User, tenant: Tenant, path: str
) -> None:
    password = _create_user(admin, [tenant])
    client = _login("nina", password)

    response = client.get(path)

    assert response.status_code == 302 and response["Location"] == CHANGE
    assert client.get(CHANGE).status_code == 200
    htmx = client.get(path, HTTP_HX_REQUEST="true", HTTP_HX_CURRENT_URL=f"http://testserver{path}")
    assert htmx["HX-Redirect"] == CHANGE
    # a live part of the change page itself does not reload it (and wipe the typing)
    on_change_page = client.get(
        "/alerts/badge/", HTTP_HX_REQUEST="true", HTTP_HX_CURRENT_URL=f"http://testserver{CHANGE}"
    )
    assert on_change_page.status_code == 204 and "HX-Redirect" not in on_change_page


def test_first_login__session_api__403_but_api_token_unaffected(
    admin: User, tenant: Tenant
) -> None:
    password = _create_user(admin, [tenant])
    client = _login("nina", password)
    assert client.get("/api/v1/flags/").status_code == 403
    # an API token issued by other means still works: scripts are not people logging in
    key = api_token_rotate(actor=admin, user=User.objects.get(username="nina"))
    scripted = Client(HTTP_AUTHORIZATION=f"Token {key}")
    assert scripted.get("/api/v1/flags/").status_code == 200
    # even beside the forced session's cookie (the API docs' "try it out" with a token)
    assert client.get("/api/v1/flags/", HTTP_AUTHORIZATION=f"Token {key}").status_code == 200
    assert client.get("/api/docs/").status_code == 200


@pytest.mark.parametrize(
    "authorization", ["Basic bmluYTp4", "Bearer x", "Foo", "", "Token", "token"]
)
def test_first_login__session_api__any_other_authorization_header_still_403(
    admin: User, tenant: Tenant, authorization: str
) -> None:
    """A header that is not a working API token leaves the call on the session (DRF falls
    through to it), so it is still the forced session's call: 403, never a way around."""
    password = _create_user(admin, [tenant])
    client = _login("nina", password)

    response = client.get("/api/v1/flags/", HTTP_AUTHORIZATION=authorization)

    assert response.status_code in (401, 403), response.content
    assert "results" not in response.json()


def test_token_endpoint__password_someone_else_chose__refused_until_changed(
    admin: User, tenant: Tenant
) -> None:
    """An initial or one-time password must not be exchanged for a lasting API token (it
    would outlive the forced change: a token survives a password change)."""
    password = _create_user(admin, [tenant])
    user = User.objects.get(username="nina")
    before = _state(user)

    refused = APIClient().post(
        "/api/v1/auth/token/", {"username": "nina", "password": password}, format="json"
    )

    assert refused.status_code == 403, refused.content
    assert "Change your password first" in refused.json()["detail"]
    assert _state(user) == before
    assert not ApiToken.objects.filter(user=user).exists()
    client = _login("nina", password)
    client.post(CHANGE, {"old_password": password, "new_password1": NEW, "new_password2": NEW})
    obtained = APIClient().post(
        "/api/v1/auth/token/", {"username": "nina", "password": NEW}, format="json"
    )
    assert obtained.status_code == 200
    # and after an Admin's reset, the one-time password is refused again
    reset = api_as(admin).post(
        f"/api/v1/users/{user.pk}/reset-password/", {"reason": "forgot"}, format="json"
    )
    one_time = reset.json()["one_time_password"]
    again = APIClient().post(
        "/api/v1/auth/token/", {"username": "nina", "password": one_time}, format="json"
    )
    assert again.status_code == 403


@pytest.mark.parametrize(
    "authorization", ["Basic bmluYTp4", "Bearer not-a-token", "Negotiate x", "Tokens x", "x"]
)
def test_first_login__session_api_with_a_header_no_token_class_reads__still_403(
    admin: User, tenant: Tenant, authorization: str
) -> None:
    """An ``Authorization`` header that no API authentication class takes leaves the call
    to the session: the forced session may not read or write through it."""
    password = _create_user(admin, [tenant])
    client = _login("nina", password)
    users = User.objects.count()

    read = client.get("/api/v1/users/", HTTP_AUTHORIZATION=authorization)
    write = client.post(
        "/api/v1/flags/",
        {"tenant": tenant.pk, "key": "sneaky"},
        content_type="application/json",
        HTTP_AUTHORIZATION=authorization,
    )

    assert read.status_code == 403, read.content
    assert write.status_code == 403, write.content
    assert "Change your password first" in read.json()["detail"]
    assert User.objects.count() == users


def test_change__initial_password__pages_open_audited_and_new_password_logs_in(
    admin: User, tenant: Tenant
) -> None:
    password = _create_user(admin, [tenant])
    client = _login("nina", password)

    response = client.post(
        CHANGE, {"old_password": password, "new_password1": NEW, "new_password2": NEW}
    )

    assert response.status_code == 302 and response["Location"] == "/"
    assert client.get("/flags/").status_code == 200  # same session, no longer forced
    user = User.objects.get(username="nina")
    assert not PasswordChangeRequired.objects.filter(user=user).exists()
    event = AuditEvent.objects.get(action="user.password_changed", target_id=str(user.pk))
    assert event.actor_label == "nina"
    assert event.before == {"change_required": True}
    assert NEW not in str(AuditEvent.objects.values().get(pk=event.pk))
    assert password not in str(AuditEvent.objects.values().get(pk=event.pk))
    assert _login("nina", NEW).get("/flags/").status_code == 200
    assert Client().post("/login/", {"username": "nina", "password": password}).status_code == 200


BAD = {
    "wrong old password": ({"old_password": "nope", "new_password1": NEW}, "old_password"),
    "weak": ({"new_password1": "password", "new_password2": "password"}, "new_password2"),
    "mismatch": ({"new_password1": NEW, "new_password2": NEW + "x"}, "new_password2"),
    "same as old": ({"new_password1": "OLD", "new_password2": "OLD"}, "new_password2"),
    "empty": ({"old_password": "", "new_password1": "", "new_password2": ""}, "old_password"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_change__bad_input__field_error_and_nothing_changes(
    admin: User, tenant: Tenant, case: str
) -> None:
    password = _create_user(admin, [tenant])
    client = _login("nina", password)
    user = User.objects.get(username="nina")
    before = _state(user)
    data = {"old_password": password, "new_password1": NEW, "new_password2": NEW}
    changes, field = BAD[case]
    data.update({k: password if v == "OLD" else v for k, v in changes.items()})

    response = client.post(CHANGE, data)

    assert response.status_code == 200
    assert response.context["form"].errors.get(field), response.context["form"].errors
    assert _state(user) == before
    assert client.get("/flags/")["Location"] == CHANGE  # still forced


def test_change__wrong_old_password_repeatedly__locked_out_like_a_login(
    admin: User, tenant: Tenant, settings: Any
) -> None:
    password = _create_user(admin, [tenant])
    client = _login("nina", password)
    wrong = {"old_password": "nope", "new_password1": NEW, "new_password2": NEW}
    for _ in range(settings.AXES_FAILURE_LIMIT):
        client.post(CHANGE, wrong)

    right = client.post(CHANGE, dict(wrong, old_password=password))

    assert right.status_code == 429
    assert "Too many failed logins" in right.content.decode()
    assert PasswordChangeRequired.objects.filter(user__username="nina").exists()


def test_change__ordinary_user__from_the_profile(tenant: Tenant) -> None:
    user = make_user(Role.OPERATOR, tenant, username="otto")
    client = _login("otto", "pw-for-tests-123")
    assert client.get("/flags/").status_code == 200  # not forced: chose their own
    assert CHANGE in client.get("/profile/").content.decode()

    response = client.post(
        CHANGE, {"old_password": "pw-for-tests-123", "new_password1": NEW, "new_password2": NEW}
    )

    assert response.status_code == 302
    user.refresh_from_db()
    assert user.check_password(NEW)
    assert AuditEvent.objects.filter(action="user.password_changed").count() == 1


def test_reset__admin__one_time_password_shown_once_audited_and_change_forced(
    admin: User, tenant: Tenant
) -> None:
    user = make_user(Role.OPERATOR, tenant, username="otto")
    old_session = _login("otto", "pw-for-tests-123")
    client = Client()
    client.force_login(admin)
    confirm = client.get(f"/users/{user.pk}/password-reset/")
    assert confirm.status_code == 200 and "one-time password" in confirm.content.decode()

    response = client.post(f"/users/{user.pk}/password-reset/", {"reason": "lost it"})

    assert response.status_code == 200
    one_time = response.context["password"]
    assert one_time in response.content.decode()
    event = AuditEvent.objects.get(action="user.password_reset", target_id=str(user.pk))
    assert (event.actor_label, event.reason) == ("admin-user", "lost it")
    assert event.after == {"change_required": True, "cause": "reset"}
    assert one_time not in str(AuditEvent.objects.values().get(pk=event.pk))
    # the old password and the old session are gone; the one-time password forces a change
    assert old_session.get("/flags/")["Location"].startswith("/login/")
    stale = Client().post("/login/", {"username": "otto", "password": "pw-for-tests-123"})
    assert stale.status_code == 200  # the login page again: wrong password
    fresh = _login("otto", one_time)
    assert fresh.get("/flags/")["Location"] == CHANGE
    fresh.post(CHANGE, {"old_password": one_time, "new_password1": NEW, "new_password2": NEW})
    assert fresh.get("/flags/").status_code == 200


@pytest.mark.parametrize("role", [Role.OPERATOR, Role.APPROVER, Role.VIEWER])
def test_reset__non_admin__403_and_nothing_changes(role: Role, tenant: Tenant) -> None:
    caller = make_user(role, tenant, username="caller")
    target = make_user(Role.VIEWER, tenant, username="target")
    client = Client()
    client.force_login(caller)
    before = _state(target)

    for response in (
        client.get(f"/users/{target.pk}/password-reset/"),
        client.post(f"/users/{target.pk}/password-reset/", {"reason": "mine now"}),
    ):
        assert response.status_code == 403

    assert _state(target) == before


def test_reset__no_reason__refused_and_nothing_changes(admin: User, tenant: Tenant) -> None:
    target = make_user(Role.VIEWER, tenant, username="target")
    client = Client()
    client.force_login(admin)
    before = _state(target)

    response = client.post(f"/users/{target.pk}/password-reset/", {"reason": " "})

    assert response.status_code == 200 and response.context["form"].errors.get("reason")
    assert _state(target) == before


def test_reset_api__admin__one_time_password_once_audited_and_forced(
    admin: User, tenant: Tenant
) -> None:
    user = make_user(Role.OPERATOR, tenant, username="otto")
    api = APIClient()
    api.force_authenticate(admin)

    response = api.post(
        f"/api/v1/users/{user.pk}/reset-password/", {"reason": "lost"}, format="json"
    )

    assert response.status_code == 200, response.content
    one_time = response.json()["one_time_password"]
    user.refresh_from_db()
    assert user.check_password(one_time)
    assert PasswordChangeRequired.objects.get(user=user).cause == "reset"
    event = AuditEvent.objects.get(action="user.password_reset")
    assert event.reason == "lost" and one_time not in str(
        AuditEvent.objects.values().get(pk=event.pk)
    )
    assert _login("otto", one_time).get("/")["Location"] == CHANGE


@pytest.mark.parametrize("role", [Role.OPERATOR, Role.APPROVER, Role.VIEWER])
def test_reset_api__non_admin__403_and_nothing_changes(role: Role, tenant: Tenant) -> None:
    target = make_user(Role.VIEWER, tenant, username="target")
    api = APIClient()
    api.force_authenticate(make_user(role, tenant, username="caller"))
    before = _state(target)

    response = api.post(
        f"/api/v1/users/{target.pk}/reset-password/", {"reason": "x"}, format="json"
    )

    assert response.status_code == 403
    assert _state(target) == before


def test_reset_api__no_reason__400_field_error_and_nothing_changes(
    admin: User, tenant: Tenant
) -> None:
    target = make_user(Role.VIEWER, tenant, username="target")
    api = APIClient()
    api.force_authenticate(admin)
    before = _state(target)

    response = api.post(f"/api/v1/users/{target.pk}/reset-password/", {}, format="json")

    assert response.status_code == 400 and "reason" in response.json()["errors"]
    assert _state(target) == before
