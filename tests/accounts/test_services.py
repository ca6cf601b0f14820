"""The accounts services never audit a change that did not happen, and never make a change
they do not audit."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from guardian.models import UserObjectPermission

from apps.accounts.selectors import user_role
from apps.accounts.services import (
    admin_ensure,
    user_grant_tenant,
    user_revoke_tenant,
    user_update,
)
from apps.audit.models import AuditEvent
from apps.core.roles import Role
from apps.tenancy.models import Tenant

from ..conftest import api_as
from ..factories import TenantFactory, make_user

pytestmark = pytest.mark.django_db


def _state() -> tuple[Any, ...]:
    return (
        sorted(UserObjectPermission.objects.values_list("user_id", "object_pk")),
        sorted(User.groups.through.objects.values_list("user_id", "group_id")),
        sorted(User.objects.values_list("username", "is_superuser", "is_staff", "email")),
        AuditEvent.objects.count(),
    )


@pytest.mark.parametrize("role", [Role.VIEWER, Role.OPERATOR, Role.ADMIN])
def test_user_grant_tenant__already_granted__no_change_and_no_event(
    role: Role, admin: User, tenant: Tenant
) -> None:
    user = make_user(role, tenant)
    before = _state()

    changed = [user_grant_tenant(actor=admin, user=user, tenant=tenant) for _ in range(3)]

    assert changed == [False, False, False]
    assert _state() == before


def test_user_grant_tenant__new__one_event_then_repeats_are_silent(
    admin: User, viewer: User
) -> None:
    other = TenantFactory()

    results = [user_grant_tenant(actor=admin, user=viewer, tenant=other) for _ in range(3)]

    assert results == [True, False, False]
    event = AuditEvent.objects.get(action="user.tenant_granted")
    assert (event.before["access"], event.after["access"]) == (False, True)


@pytest.mark.parametrize("tenants", [0, 1, 2])
def test_user_revoke_tenant__not_granted__no_change_and_no_event(
    tenants: int, admin: User, viewer: User
) -> None:
    others = [TenantFactory() for _ in range(tenants + 1)]
    before = _state()

    assert [user_revoke_tenant(actor=admin, user=viewer, tenant=t) for t in others] == [
        False
    ] * len(others)
    assert _state() == before


def test_user_revoke_tenant__granted__one_event_then_silent(
    admin: User, viewer: User, tenant: Tenant
) -> None:
    results = [user_revoke_tenant(actor=admin, user=viewer, tenant=tenant) for _ in range(2)]

    assert results == [True, False]
    assert AuditEvent.objects.filter(action="user.tenant_revoked").count() == 1


def test_grant_tenant_api__already_granted__204_and_no_event(
    admin: User, viewer: User, tenant: Tenant
) -> None:
    before = _state()
    response = api_as(admin).post(
        f"/api/v1/users/{viewer.pk}/grant-tenant/", {"tenant": tenant.pk}, format="json"
    )

    assert response.status_code == 204
    assert _state() == before


@pytest.mark.parametrize("role", [Role.VIEWER, Role.APPROVER, Role.OPERATOR])
def test_user_update__superuser_to_lower_role__really_demoted_and_audited(
    role: Role, admin: User
) -> None:
    bootstrap, _ = admin_ensure(username=f"root-{role.value.lower()}")

    user_update(actor=admin, user=bootstrap, role=role, reason="least privilege")

    bootstrap.refresh_from_db()
    assert (user_role(bootstrap), bootstrap.is_superuser, bootstrap.is_staff) == (
        role,
        False,
        False,
    )
    assert not bootstrap.has_perm("auth.change_user")
    event = AuditEvent.objects.get(action="user.updated", target_id=str(bootstrap.pk))
    assert (event.before["role"], event.after["role"]) == ("Admin", role.value)


def test_user_update__superuser_to_admin__nothing_changes_no_event(admin: User) -> None:
    bootstrap, _ = admin_ensure(username="root")
    before = _state()

    user_update(actor=admin, user=bootstrap, role=Role.ADMIN)

    assert _state() == before


@pytest.mark.parametrize("email", ["not-an-email", "a@", "@b.example", "a b@c.example"])
def test_user_update__bad_email__field_error_and_nothing_changes(
    email: str, admin: User, viewer: User
) -> None:
    before = _state()
    with pytest.raises(ValidationError) as exc:
        user_update(actor=admin, user=viewer, email=email)

    assert list(exc.value.message_dict) == ["email"]
    assert _state() == before


@pytest.mark.parametrize("role", [Role.VIEWER, Role.OPERATOR, Role.ADMIN])
@pytest.mark.parametrize("also", [{}, {"email": "new@example.com"}, {"role": Role.VIEWER}])
def test_user_update__deactivation_revokes_api_token__revocation_in_the_audit_event(
    admin: User, role: Role, also: dict[str, Any]
) -> None:
    from apps.accounts.models import ApiToken
    from apps.accounts.services import api_token_rotate

    user = make_user(role)
    api_token_rotate(actor=user, user=user)
    user_update(actor=admin, user=user, is_active=False, reason="left", **also)
    assert not ApiToken.objects.filter(user=user).exists()
    event = AuditEvent.objects.filter(action="user.updated", target_id=str(user.pk)).get()
    assert (event.before["api_access"], event.after["api_access"]) == (True, False)
    assert (event.before["is_active"], event.after["is_active"]) == (True, False)


def test_user_update__deactivation_without_api_token__says_nothing_about_one(admin: User) -> None:
    user = make_user(Role.OPERATOR)
    user_update(actor=admin, user=user, is_active=False, reason="left")
    event = AuditEvent.objects.filter(action="user.updated", target_id=str(user.pk)).get()
    assert "api_access" not in event.before and "api_access" not in event.after
