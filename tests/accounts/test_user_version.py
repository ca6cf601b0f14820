"""Optimistic concurrency on user edits and role changes (issue 9, item 2; decision 0013):
the edit form and ``PATCH /api/v1/users/<id>/`` carry the user's ``version``; the second of
two concurrent changes is refused naming who acted first. Grants are part of the version
(the edit form shows and sets them)."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client

from apps.accounts import services
from apps.accounts.selectors import user_role, user_version
from apps.audit.models import AuditEvent
from apps.core.concurrency import StaleVersion
from apps.core.roles import Role
from apps.tenancy.models import Tenant

from ..conftest import api_as
from ..factories import make_user
from ..races import postgresql_only, race


@pytest.fixture
def alice(db: None) -> Any:
    return make_user(Role.ADMIN, username="alice")


@pytest.fixture
def bob(db: None) -> Any:
    return make_user(Role.ADMIN, username="bob")


@pytest.fixture
def vera(db: None) -> Any:
    return make_user(Role.VIEWER, username="vera")


def _state(user: User) -> tuple[Any, ...]:
    fresh = User.objects.get(pk=user.pk)
    return (
        fresh.email,
        fresh.is_active,
        user_role(fresh),
        sorted(fresh.groups.values_list("name", flat=True)),
        user_version(fresh),
        AuditEvent.objects.count(),
    )


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("first", "second"),
    [(Role.OPERATOR, Role.ADMIN), (Role.APPROVER, Role.APPROVER), (Role.ADMIN, Role.OPERATOR)],
)
def test_two_concurrent_role_changes__postgresql__one_wins_the_other_is_told_who(
    alice: Any, bob: Any, vera: Any, first: Role, second: Role
) -> None:
    postgresql_only()
    # both are real changes of vera (a Viewer): a no-op bumps nothing and so cannot conflict
    seen = user_version(vera)
    results, errors = race(
        lambda: services.user_update(actor=alice, user=vera, role=first, expected_version=seen),
        lambda: services.user_update(actor=bob, user=vera, role=second, expected_version=seen),
    )
    assert len(results) == 1 and len(errors) == 1
    assert isinstance(errors[0], StaleVersion)
    event = AuditEvent.objects.get(action="user.updated", target_id=str(vera.pk))
    assert errors[0].changed_by == event.actor_label
    assert f"changed by {event.actor_label}" in errors[0].messages[0]
    assert user_role(User.objects.get(pk=vera.pk)) is (
        first if event.actor_label == "alice" else second
    )
    assert user_version(vera) == seen + 1


@pytest.mark.django_db
def test_every_change_of_the_edited_state_grows_the_version(
    alice: Any, vera: Any, tenant: Tenant
) -> None:
    assert user_version(vera) == 1
    services.user_update(actor=alice, user=vera, role=Role.OPERATOR)
    assert user_version(vera) == 2
    services.user_update(actor=alice, user=vera, role=Role.OPERATOR)  # no change: no bump
    assert user_version(vera) == 2
    services.user_grant_tenant(actor=alice, user=vera, tenant=tenant)
    assert user_version(vera) == 3
    services.user_revoke_tenant(actor=alice, user=vera, tenant=tenant)
    assert user_version(vera) == 4
    services.user_update(actor=alice, user=vera, email="v@example.com", is_active=False)
    assert user_version(vera) == 5


@pytest.mark.django_db
@pytest.mark.parametrize(
    "stale",
    [{"expected_version": 1}, {"headers": {"If-Match": '"1"'}}, {"expected_version": 7}],
    ids=["body", "if-match", "never-existed"],
)
@pytest.mark.parametrize(
    "change", [{"role": "Admin"}, {"email": "x@example.com"}, {"is_active": False}]
)
def test_api_user_edit__stale_version__409_naming_who_and_nothing_changes(
    alice: Any, bob: Any, vera: Any, stale: dict[str, Any], change: dict[str, Any]
) -> None:
    services.user_update(actor=alice, user=vera, role=Role.OPERATOR)
    got = api_as(bob).get(f"/api/v1/users/{vera.pk}/")
    assert got["ETag"] == '"2"' and got.json()["version"] == 2
    before = _state(vera)
    extra = dict(stale)
    headers = extra.pop("headers", {})

    response = api_as(bob).patch(
        f"/api/v1/users/{vera.pk}/", {**change, **extra}, format="json", headers=headers
    )

    assert response.status_code == 409, response.content
    body = response.json()
    assert body["changed_by"] == "alice" and body["current_version"] == 2
    assert "was changed by alice" in body["detail"]
    assert _state(vera) == before


@pytest.mark.django_db
def test_api_user_edit__current_or_no_version__applies(bob: Any, vera: Any) -> None:
    client = api_as(bob)
    first = client.patch(
        f"/api/v1/users/{vera.pk}/",
        {"role": "Operator"},
        format="json",
        headers={"If-Match": '"1"'},
    )
    assert first.status_code == 200 and first.json()["version"] == 2 and first["ETag"] == '"2"'
    second = client.patch(f"/api/v1/users/{vera.pk}/", {"role": "Approver"}, format="json")
    assert second.status_code == 200 and second.json()["version"] == 3


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("headers", "body", "status"),
    [
        ({"If-Match": 'W/"1"'}, {}, 412),
        ({"If-Match": "1"}, {}, 400),
        ({}, {"expected_version": -5}, 400),
        ({}, {"expected_version": "x"}, 400),
    ],
)
def test_api_user_edit__bad_version__4xx_and_nothing_changes(
    bob: Any, vera: Any, headers: dict[str, str], body: dict[str, Any], status: int
) -> None:
    before = _state(vera)
    response = api_as(bob).patch(
        f"/api/v1/users/{vera.pk}/", {"role": "Admin", **body}, format="json", headers=headers
    )
    assert response.status_code == status, response.content
    assert _state(vera) == before


@pytest.mark.django_db
@pytest.mark.parametrize("meanwhile", ["role", "grant"])
def test_user_edit_form__stale_version__clear_message_and_nothing_changes(
    alice: Any, bob: Any, vera: Any, tenant: Tenant, meanwhile: str
) -> None:
    browser = Client()
    browser.force_login(bob)
    page = browser.get(f"/users/{vera.pk}/").content.decode()
    assert 'name="expected_version" value="1"' in page
    if meanwhile == "role":
        services.user_update(actor=alice, user=vera, role=Role.OPERATOR)
    else:
        # bob's form would have revoked the grant alice just made (its tenants list is stale)
        services.user_grant_tenant(actor=alice, user=vera, tenant=tenant)
    before = _state(vera)

    response = browser.post(
        f"/users/{vera.pk}/",
        {"role": "Approver", "is_active": "on", "tenants": [], "expected_version": 1},
    )

    assert response.status_code == 200
    html = response.content.decode()
    assert "was changed by alice" in html and "Nothing was changed" in html
    assert _state(vera) == before
    if meanwhile == "grant":
        assert User.objects.get(pk=vera.pk).has_perm("tenancy.view_tenant", tenant)


@pytest.mark.django_db
def test_user_edit_form__without_version__refused(bob: Any, vera: Any) -> None:
    browser = Client()
    browser.force_login(bob)
    before = _state(vera)
    response = browser.post(f"/users/{vera.pk}/", {"role": "Admin", "is_active": "on"})
    assert response.status_code == 200 and "reload it and retry" in response.content.decode()
    assert _state(vera) == before


@pytest.mark.django_db(transaction=True)
def test_two_admins_editing_each_other_at_once__postgresql__both_apply_no_deadlock(
    alice: Any, bob: Any
) -> None:
    postgresql_only()
    for _ in range(5):  # the lock orders cross on each round; FOR UPDATE deadlocked here
        a, b = user_version(alice), user_version(bob)
        results, errors = race(
            lambda a=a, b=b: services.user_update(
                actor=alice, user=bob, email=f"b{a}@example.com", expected_version=b
            ),
            lambda a=a, b=b: services.user_update(
                actor=bob, user=alice, email=f"a{b}@example.com", expected_version=a
            ),
        )
        assert len(results) == 2 and errors == []


def test_user_list__versions_read_with_the_page__no_query_per_user(
    alice: Any, bob: Any, django_assert_max_num_queries: Any
) -> None:
    # Versions of changed users (a row) and untouched ones (no row: version 1) alike.
    users = [make_user(Role.VIEWER, username=f"user-{i}") for i in range(12)]
    for user in users[:6]:
        services.user_update(actor=alice, user=user, email=f"{user.username}@example.com")
    expected = {u.username: user_version(u) for u in User.objects.all()}

    client = api_as(alice)
    with django_assert_max_num_queries(12):  # fewer than one per user listed
        listed = client.get("/api/v1/users/", {"page_size": 50}).json()

    rows = listed["results"] if isinstance(listed, dict) else listed
    assert len(rows) == len(expected)
    assert {row["username"]: row["version"] for row in rows} == expected
    assert {row["version"] for row in rows} == {1, 2}
