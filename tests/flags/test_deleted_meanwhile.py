"""Deleting "the current flag" carries the version its user saw, and a change of a flag or
segment that another operator deleted meanwhile is refused naming who, never a 500
(issue 9, item 2, applied to deletes)."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest
from django.db import connection

from apps.audit.models import AuditEvent
from apps.core.concurrency import DeletedMeanwhile, StaleVersion
from apps.core.roles import Role
from apps.flags import services
from apps.flags.models import Flag, Segment
from apps.tenancy.models import Environment, Tenant

from ..conftest import api_as
from ..factories import make_user
from .conftest import make_flag


@pytest.fixture
def alice(tenant: Tenant) -> Any:
    return make_user(Role.OPERATOR, tenant, username="alice")


@pytest.fixture
def bob(tenant: Tenant) -> Any:
    return make_user(Role.OPERATOR, tenant, username="bob")


def _changed_by_alice(flag: Flag, alice: Any) -> None:
    services.flag_update(actor=alice, flag=flag, description="alice was here", reason="r")


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("body", "headers"),
    [
        ({"expected_version": 1}, {}),
        ({}, {"If-Match": '"1"'}),
        ({}, {"If-Match": '"1", W/"2"'}),  # the strong tag names the stale version
        ({"expected_version": 0}, {}),
    ],
    ids=["body", "if-match", "if-match-list", "never-existed"],
)
def test_flag_delete_api__stale_version__409_naming_who_and_flag_stays(
    production: Environment, alice: Any, bob: Any, body: dict[str, Any], headers: dict[str, str]
) -> None:
    flag = make_flag(production, "checkout")
    _changed_by_alice(flag, alice)
    events = AuditEvent.objects.count()

    response = api_as(bob).delete(
        f"/api/v1/flags/{flag.pk}/", {"reason": "cleanup", **body}, format="json", headers=headers
    )

    assert response.status_code == 409, response.content
    assert response.json()["changed_by"] == "alice"
    assert response.json()["current_version"] == 2
    assert Flag.objects.filter(pk=flag.pk).exists()
    assert AuditEvent.objects.count() == events


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("body", "headers", "status"),
    [
        ({"expected_version": 2}, {}, 204),
        ({}, {"If-Match": '"2"'}, 204),
        ({}, {"If-Match": "*"}, 204),
        ({}, {}, 204),  # optional on the API, like the other flag changes
        ({"expected_version": "two"}, {}, 400),
        ({}, {"If-Match": "2"}, 400),
        ({"expected_version": 2**63}, {}, 400),
    ],
)
def test_flag_delete_api__version_forms__deleted_or_field_error(
    production: Environment,
    alice: Any,
    body: dict[str, Any],
    headers: dict[str, str],
    status: int,
) -> None:
    flag = make_flag(production, "checkout")
    _changed_by_alice(flag, alice)

    response = api_as(alice).delete(
        f"/api/v1/flags/{flag.pk}/", {"reason": "cleanup", **body}, format="json", headers=headers
    )

    assert response.status_code == status, response.content
    assert Flag.objects.filter(pk=flag.pk).exists() is (status != 204)


@pytest.mark.django_db
def test_flag_delete_page__changed_meanwhile__refused_naming_who_with_the_new_version(
    client: Any, production: Environment, alice: Any, bob: Any
) -> None:
    flag = make_flag(production, "checkout")
    client.force_login(bob)
    page = client.get(f"/flags/{flag.pk}/delete/").content.decode()
    assert 'name="expected_version" value="1"' in page
    _changed_by_alice(flag, alice)

    refused = client.post(
        f"/flags/{flag.pk}/delete/", {"reason": "cleanup", "expected_version": 1}
    ).content.decode()

    assert "was changed by alice" in refused and "Nothing was changed" in refused
    assert 'name="expected_version" value="2"' in refused
    assert Flag.objects.filter(pk=flag.pk).exists()
    again = client.post(f"/flags/{flag.pk}/delete/", {"reason": "cleanup", "expected_version": 2})
    assert again.status_code == 302
    assert not Flag.objects.filter(pk=flag.pk).exists()


def _flag_calls(bob: Any) -> dict[str, Any]:
    return {
        "edit": lambda f: services.flag_update(actor=bob, flag=f, description="x", reason="r"),
        "toggle": lambda f: services.flag_toggle(actor=bob, flag=f, enabled=False, reason="r"),
        "delete": lambda f: services.flag_delete(actor=bob, flag=f, reason="r"),
    }


@pytest.mark.django_db
@pytest.mark.parametrize("what", ["edit", "toggle", "delete"])
def test_flag_deleted_meanwhile__every_change__refused_naming_who(
    production: Environment, alice: Any, bob: Any, what: str
) -> None:
    flag = make_flag(production, "checkout")
    loaded_by_bob = Flag.objects.select_related("environment").get(pk=flag.pk)
    services.flag_delete(actor=alice, flag=flag, reason="gone")
    events = AuditEvent.objects.count()

    with pytest.raises(DeletedMeanwhile, match="Flag checkout was deleted by alice"):
        _flag_calls(bob)[what](loaded_by_bob)

    assert AuditEvent.objects.count() == events


@pytest.mark.django_db
@pytest.mark.parametrize("what", ["edit", "delete"])
def test_segment_deleted_meanwhile__every_change__refused_naming_who(
    production: Environment, alice: Any, bob: Any, what: str
) -> None:
    segment = services.segment_create(
        actor=alice,
        environment=production,
        name="beta",
        reason="r",
        constraints=[{"contextName": "plan", "operator": "IN", "values": ["pro"]}],
    )
    loaded_by_bob = Segment.objects.select_related("environment__tenant").get(pk=segment.pk)
    services.segment_delete(actor=alice, segment=segment, reason="gone")

    with pytest.raises(DeletedMeanwhile, match="Segment beta was deleted by alice"):
        if what == "edit":
            services.segment_update(actor=bob, segment=loaded_by_bob, name="b", reason="r")
        else:
            services.segment_delete(actor=bob, segment=loaded_by_bob, reason="r")


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("second", ["delete", "edit", "toggle"])
def test_delete_racing_another_change__postgresql__never_a_500(
    tenant: Tenant, alice: Any, bob: Any, second: str
) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("concurrent transactions are a PostgreSQL matter")
    production = tenant.environments.get(slug="production")
    flag = make_flag(production, "checkout")
    url = f"/api/v1/flags/{flag.pk}/"
    requests = {
        "delete": lambda c: c.delete(url, {"reason": "r"}, format="json"),
        "edit": lambda c: c.patch(url, {"description": "x", "reason": "r"}, format="json"),
        "toggle": lambda c: c.post(
            f"{url}toggle/", {"enabled": False, "reason": "r"}, format="json"
        ),
    }
    barrier = threading.Barrier(2)
    statuses: list[int] = []

    def run(user: Any, what: str) -> None:
        try:
            client = api_as(user)
            barrier.wait()
            statuses.append(requests[what](client).status_code)
        finally:
            connection.close()

    threads = [
        threading.Thread(target=run, args=(alice, "delete")),
        threading.Thread(target=run, args=(bob, second)),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert all(s < 500 for s in statuses), statuses
    assert set(statuses) <= {200, 204, 404, 409}, statuses
    assert not Flag.objects.filter(pk=flag.pk).exists()
    assert isinstance(StaleVersion("x", current_version=1), DeletedMeanwhile) is False


# --------------------------------------------------------------------------- segments: version

CONSTRAINTS = [{"contextName": "plan", "operator": "IN", "values": ["pro"]}]


def _segment(environment: Environment, alice: Any) -> Segment:
    segment = services.segment_create(
        actor=alice, environment=environment, name="beta", constraints=CONSTRAINTS, reason="r"
    )
    services.segment_update(actor=alice, segment=segment, description="by alice", reason="r")
    return Segment.objects.get(pk=segment.pk)


@pytest.mark.django_db
@pytest.mark.parametrize("what", ["edit", "delete"])
@pytest.mark.parametrize(
    ("body", "headers"),
    [
        ({"expected_version": 1}, {}),
        ({}, {"If-Match": '"1"'}),
        ({}, {"If-Match": '"1", W/"2"'}),  # the strong tag names the stale version
        ({"expected_version": 7}, {}),
    ],
    ids=["body", "if-match", "if-match-list", "never-existed"],
)
def test_segment_api__stale_version__409_naming_who_and_nothing_changes(
    production: Environment,
    alice: Any,
    bob: Any,
    what: str,
    body: dict[str, Any],
    headers: dict[str, str],
) -> None:
    segment = _segment(production, alice)
    assert segment.version == 2
    assert api_as(bob).get(f"/api/v1/segments/{segment.pk}/")["ETag"] == '"2"'
    events = AuditEvent.objects.count()
    url = f"/api/v1/segments/{segment.pk}/"
    payload = {"reason": "r", **body}

    if what == "edit":
        response = api_as(bob).patch(
            url, {**payload, "description": "by bob"}, format="json", headers=headers
        )
    else:
        response = api_as(bob).delete(url, payload, format="json", headers=headers)

    assert response.status_code == 409, response.content
    assert response.json()["changed_by"] == "alice"
    assert response.json()["current_version"] == 2
    fresh = Segment.objects.get(pk=segment.pk)
    assert (fresh.version, fresh.description) == (2, "by alice")
    assert AuditEvent.objects.count() == events


@pytest.mark.django_db
def test_segment_version__grows_per_real_change_only_and_current_version_is_accepted(
    production: Environment, alice: Any
) -> None:
    segment = _segment(production, alice)
    events = AuditEvent.objects.count()
    url = f"/api/v1/segments/{segment.pk}/"

    same = api_as(alice).patch(
        url, {"description": "by alice", "reason": "r", "expected_version": 2}, format="json"
    )
    assert same.status_code == 200 and same.json()["version"] == 2
    assert AuditEvent.objects.count() == events  # a no-op states no change
    changed = api_as(alice).patch(
        url, {"name": "beta-2", "reason": "r"}, format="json", headers={"If-Match": '"2"'}
    )
    assert changed.status_code == 200 and changed.json()["version"] == 3
    gone = api_as(alice).delete(url, {"reason": "r"}, format="json", headers={"If-Match": '"3"'})
    assert gone.status_code == 204


@pytest.mark.django_db
def test_segment_import__changed_segment__version_grows(
    production: Environment, alice: Any
) -> None:
    segment = _segment(production, alice)
    payload = {
        "version": 2,
        "features": [],
        "segments": [
            {
                "id": segment.segment_id,
                "name": "beta",
                "constraints": [{"contextName": "plan", "operator": "IN", "values": ["max"]}],
            }
        ],
    }
    services.flags_import(
        actor=alice, environment=production, payload=payload, mode="merge", reason="r"
    )
    assert Segment.objects.get(pk=segment.pk).version == 3


@pytest.mark.django_db
def test_segment_pages__stale_version__refused_naming_who(
    client: Any, production: Environment, alice: Any, bob: Any
) -> None:
    segment = _segment(production, alice)
    client.force_login(bob)
    edit_page = client.get(f"/flags/segments/{segment.pk}/edit/").content.decode()
    assert 'name="expected_version" value="2"' in edit_page
    services.segment_update(actor=alice, segment=segment, name="beta-2", reason="r")

    edited = client.post(
        f"/flags/segments/{segment.pk}/edit/",
        {
            "name": "bob's",
            "description": "",
            "constraints": json.dumps(CONSTRAINTS),
            "reason": "r",
            "expected_version": 2,
        },
    ).content.decode()
    deleted = client.post(
        f"/flags/segments/{segment.pk}/delete/", {"reason": "r", "expected_version": 2}
    ).content.decode()

    for page in (edited, deleted):
        assert "was changed by alice" in page and "Nothing was changed" in page
    assert 'name="expected_version" value="3"' in deleted
    assert Segment.objects.get(pk=segment.pk).name == "beta-2"
