"""Optimistic concurrency on flag edits, toggles and kill-switch releases (issue 9, item 2)
and one engaged kill switch per identity under concurrent engages (issue 9, item 10).

The races run on PostgreSQL with real threads, each on its own connection, released by a
barrier: exactly one click wins, the other is told who acted first."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from rest_framework.test import APIClient

from apps.audit.models import AuditEvent
from apps.core.concurrency import StaleVersion
from apps.core.roles import Role
from apps.flags.models import Flag, KillSwitch
from apps.flags.services import (
    flag_toggle,
    flag_update,
    kill_switch_engage,
    kill_switch_release,
)
from apps.tenancy.models import Agent, Environment, Tenant

from ..conftest import api_as
from ..factories import make_user
from ..races import postgresql_only, race
from .conftest import SYSTEM, make_flag


@pytest.fixture
def alice(tenant: Tenant) -> Any:
    return make_user(Role.OPERATOR, tenant, username="alice")


@pytest.fixture
def bob(tenant: Tenant) -> Any:
    return make_user(Role.OPERATOR, tenant, username="bob")


# --------------------------------------------------------------------------- API: 409


def _flag_call(client: APIClient, flag: Flag, what: str, **extra: Any) -> Any:
    headers = extra.pop("headers", {})
    if what == "toggle":
        body = {"enabled": not flag.enabled, "reason": "r", **extra}
        return client.post(f"/api/v1/flags/{flag.pk}/toggle/", body, format="json", headers=headers)
    body = {"description": "changed", "reason": "r", **extra}
    return client.patch(f"/api/v1/flags/{flag.pk}/", body, format="json", headers=headers)


@pytest.mark.django_db
@pytest.mark.parametrize("what", ["toggle", "edit"])
@pytest.mark.parametrize(
    "stale",
    [
        {"expected_version": 1},
        {"headers": {"If-Match": '"1"'}},
        {"headers": {"If-Match": '"1", W/"2"'}},
        {"expected_version": 0},
    ],
    ids=["body", "if-match", "if-match-list", "never-existed"],
)
def test_flag_api__stale_version__409_naming_who_changed_it_and_nothing_changes(
    production: Environment, alice: Any, bob: Any, what: str, stale: dict[str, Any]
) -> None:
    flag = make_flag(production, "checkout")
    assert flag.version == 1
    first = _flag_call(api_as(alice), flag, "edit", expected_version=1)
    assert first.status_code == 200 and first.json()["version"] == 2
    flag.refresh_from_db()
    assert api_as(bob).get(f"/api/v1/flags/{flag.pk}/")["ETag"] == '"2"'
    events = AuditEvent.objects.count()

    response = _flag_call(api_as(bob), flag, what, **stale)

    assert response.status_code == 409, response.content
    body = response.json()
    assert body["changed_by"] == "alice" and body["current_version"] == 2
    assert body["changed_at"] and "was changed by alice" in body["detail"]
    assert body["errors"]["expected_version"] == [body["detail"]]
    fresh = Flag.objects.get(pk=flag.pk)
    assert (fresh.version, fresh.enabled, fresh.description) == (2, flag.enabled, "changed")
    assert AuditEvent.objects.count() == events


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("body", "headers", "status"),
    [
        ({"expected_version": 1}, {}, 200),
        ({}, {"If-Match": '"1"'}, 200),
        ({}, {"If-Match": "*"}, 200),
        ({}, {}, 200),  # optional on the API: absent means "whatever is current"
        ({}, {"If-Match": "1"}, 400),
        ({}, {"If-Match": '"1", "2"'}, 400),
        # RFC 9110 13.1.1: If-Match compares strongly, a list matches when one tag does
        ({}, {"If-Match": '"1", W/"1"'}, 200),
        ({}, {"If-Match": ' "1" , "1" '}, 200),
        ({}, {"If-Match": 'W/"1"'}, 412),
        ({}, {"If-Match": 'W/"1", W/"2"'}, 412),
        ({}, {"If-Match": '"abc"'}, 412),
        ({}, {"If-Match": '"99999999999"'}, 412),
        ({"expected_version": 2}, {"If-Match": '"1"'}, 400),
        ({"expected_version": -1}, {}, 400),
        ({"expected_version": "one"}, {}, 400),
        ({"expected_version": 2**63}, {}, 400),
    ],
)
def test_flag_toggle_api__version_forms__accepted_or_field_error(
    production: Environment, alice: Any, body: dict[str, Any], headers: dict[str, str], status: int
) -> None:
    flag = make_flag(production, "checkout")
    response = api_as(alice).post(
        f"/api/v1/flags/{flag.pk}/toggle/",
        {"enabled": False, "reason": "r", **body},
        format="json",
        headers=headers,
    )
    assert response.status_code == status, response.content
    assert Flag.objects.get(pk=flag.pk).enabled is (status != 200)
    if status == 400:
        errors = response.json()["errors"]
        assert "expected_version" in errors or "If-Match" in errors
    if status == 412:
        assert "If-Match" in response.json()["detail"]


@pytest.mark.django_db
def test_kill_switch_release_api__released_meanwhile_or_stale__409_naming_who(
    tenant: Tenant, alice: Any, bob: Any
) -> None:
    switch = kill_switch_engage(
        actor=SYSTEM,
        kind="tool_disabled",
        scope="tenant",
        tenant=tenant,
        tool_pattern="refund_*",
        reason="refund storm",
    )
    url = f"/api/v1/kill-switches/{switch.pk}/release/"
    assert api_as(bob).get(f"/api/v1/kill-switches/{switch.pk}/")["ETag"] == '"1"'
    stale = api_as(bob).post(url, {"reason": "r", "expected_version": 7}, format="json")
    assert stale.status_code == 409 and stale.json()["current_version"] == 1
    first = api_as(alice).post(url, {"reason": "fixed", "expected_version": 1}, format="json")
    assert first.status_code == 200 and first.json()["version"] == 2
    for body, headers in (
        ({"reason": "me too", "expected_version": 1}, {}),
        ({"reason": "me too"}, {}),
        ({"reason": "me too"}, {"If-Match": '"1"'}),
    ):
        second = api_as(bob).post(url, body, format="json", headers=headers)
        assert second.status_code == 409, second.content
        assert second.json()["changed_by"] == "alice"
        assert "already released by alice" in second.json()["detail"]
    switch.refresh_from_db()
    assert (switch.released_by_label, switch.release_reason) == ("alice", "fixed")
    assert AuditEvent.objects.filter(action="kill_switch.released").count() == 1


# --------------------------------------------------------------------------- UI


@pytest.mark.django_db
def test_flag_pages__stale_version__clear_message_naming_who(
    client: Any, development: Environment, production: Environment, alice: Any, bob: Any
) -> None:
    dev_flag = make_flag(development, "checkout")
    prod_flag = make_flag(production, "checkout")
    for flag in (dev_flag, prod_flag):
        flag_update(actor=alice, flag=flag, description="alice was here", reason="r")
    client.force_login(bob)

    one_click = client.post(
        f"/flags/{dev_flag.pk}/toggle/", {"expected_version": 1}, follow=True
    ).content.decode()
    confirmed = client.post(
        f"/flags/{prod_flag.pk}/toggle/", {"expected_version": 1, "reason": "r"}
    ).content.decode()
    edited = client.post(
        f"/flags/{prod_flag.pk}/edit/",
        {
            "type": "release",
            "strategies": "[]",
            "variants": "",
            "dependencies": "",
            "description": "bob's",
            "reason": "r",
            "expected_version": 1,
        },
    ).content.decode()

    for page in (one_click, confirmed, edited):
        assert "was changed by alice" in page and "Nothing was changed" in page
    # The refused confirmation restates the current state and carries its version; the edit
    # form keeps bob's edits and the version they were based on (no blind overwrite).
    assert 'name="expected_version" value="2"' in confirmed
    assert 'name="expected_version" value="1"' in edited
    assert Flag.objects.filter(enabled=True).count() == 2
    assert set(Flag.objects.values_list("description", flat=True)) == {"alice was here"}


@pytest.mark.django_db
def test_kill_switch_release_page__released_meanwhile__names_who(
    client: Any, tenant: Tenant, alice: Any, bob: Any
) -> None:
    switch = kill_switch_engage(
        actor=SYSTEM,
        kind="tool_disabled",
        scope="tenant",
        tenant=tenant,
        tool_pattern="refund_*",
        reason="refund storm",
    )
    client.force_login(bob)
    page = client.get(f"/flags/kill-switches/{switch.pk}/release/").content.decode()
    assert 'name="expected_version" value="1"' in page
    kill_switch_release(actor=alice, switch=switch, reason="fixed", expected_version=1)
    response = client.post(
        f"/flags/kill-switches/{switch.pk}/release/", {"reason": "me too", "expected_version": 1}
    )
    assert response.status_code == 200
    assert "already released by alice" in response.content.decode()


# --------------------------------------------------------------------------- races


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("environment_slug", ["development", "production"])
def test_two_concurrent_toggles__postgresql__one_wins_the_other_is_told_who(
    tenant: Tenant, alice: Any, bob: Any, environment_slug: str
) -> None:
    postgresql_only()
    environment = tenant.environments.get(slug=environment_slug)
    flag = make_flag(environment, "checkout", enabled=False)
    seen = flag.version

    # Both saw "off" and click "Turn on" (the UI's direction is what the page showed):
    # without the version, the second click flipped the flag back off on the old code.
    results, errors = race(
        lambda: flag_toggle(
            actor=alice, flag=flag, enabled=True, reason="a", expected_version=seen
        ),
        lambda: flag_toggle(actor=bob, flag=flag, enabled=True, reason="b", expected_version=seen),
    )

    assert len(results) == 1 and len(errors) == 1
    assert isinstance(errors[0], StaleVersion)
    winner = AuditEvent.objects.get(action="flag.enabled").actor_label
    assert errors[0].changed_by == winner and f"changed by {winner}" in errors[0].messages[0]
    fresh = Flag.objects.get(pk=flag.pk)
    assert (fresh.version, fresh.enabled) == (seen + 1, True)


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_one_click_toggles_in_the_ui__postgresql__flag_ends_as_both_saw_it(
    tenant: Tenant, alice: Any, bob: Any
) -> None:
    postgresql_only()
    flag = make_flag(tenant.environments.get(slug="development"), "checkout", enabled=False)
    browsers = []
    for user in (alice, bob):
        browser = Client()
        browser.force_login(user)
        browsers.append(browser)
    results, _ = race(
        *[
            (lambda b=b: b.post(f"/flags/{flag.pk}/toggle/", {"expected_version": flag.version}))
            for b in browsers
        ]
    )
    assert [r.status_code for r in results] == [302, 302]
    fresh = Flag.objects.get(pk=flag.pk)
    assert (fresh.enabled, fresh.version) == (True, flag.version + 1)
    assert AuditEvent.objects.filter(action__in=["flag.enabled", "flag.disabled"]).count() == 1


@pytest.mark.django_db(transaction=True)
def test_edit_racing_toggle__postgresql__one_wins(tenant: Tenant, alice: Any, bob: Any) -> None:
    postgresql_only()
    flag = make_flag(tenant.environments.get(slug="staging"), "checkout")
    results, errors = race(
        lambda: flag_update(
            actor=alice, flag=flag, description="edited", expected_version=flag.version
        ),
        lambda: flag_toggle(actor=bob, flag=flag, enabled=False, expected_version=flag.version),
    )
    assert len(results) == 1 and len(errors) == 1 and isinstance(errors[0], StaleVersion)
    assert Flag.objects.get(pk=flag.pk).version == flag.version + 1


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("with_version", [True, False])
def test_two_concurrent_releases__postgresql__one_release_the_other_told_who(
    tenant: Tenant, alice: Any, bob: Any, with_version: bool
) -> None:
    postgresql_only()
    switch = kill_switch_engage(
        actor=SYSTEM,
        kind="tool_disabled",
        scope="tenant",
        tenant=tenant,
        tool_pattern="refund_*",
        reason="refund storm",
    )
    seen = switch.version if with_version else None
    results, errors = race(
        lambda: kill_switch_release(actor=alice, switch=switch, reason="a", expected_version=seen),
        lambda: kill_switch_release(actor=bob, switch=switch, reason="b", expected_version=seen),
    )
    assert len(results) == 1 and len(errors) == 1
    winner = results[0].released_by_label
    assert isinstance(errors[0], StaleVersion) and errors[0].changed_by == winner
    assert f"already released by {winner}" in errors[0].messages[0]
    assert AuditEvent.objects.filter(action="kill_switch.released").count() == 1


def _engage_body(
    scope: str, tenant: Tenant, agent: Agent, production: Environment
) -> dict[str, Any]:
    if scope == "global":
        return {"kind": "tool_disabled", "scope": "global", "tool_pattern": "wire_*"}
    if scope == "tenant":
        return {
            "kind": "tool_disabled",
            "scope": "tenant",
            "tenant": tenant.pk,
            "tool_pattern": "wire_*",
        }
    if scope == "agent":
        return {"kind": "agent_stopped", "scope": "agent", "agent": agent.pk}
    return {
        "kind": "agent_mode",
        "scope": "environment",
        "agent": agent.pk,
        "environment": production.pk,
        "mode": "read_only",
    }


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("scope", ["global", "tenant", "agent", "environment"])
def test_five_concurrent_identical_engages__postgresql__one_201_four_400_naming_it(
    tenant: Tenant, support_bot: Agent, production: Environment, scope: str
) -> None:
    postgresql_only()
    admins = [make_user(Role.ADMIN, username=f"admin-{n}") for n in range(5)]
    body = {**_engage_body(scope, tenant, support_bot, production), "reason": "incident"}
    barrier = threading.Barrier(5)
    responses: list[Any] = []

    def engage(user: Any) -> None:
        try:
            client = api_as(user)
            barrier.wait()
            responses.append(client.post("/api/v1/kill-switches/", body, format="json"))
        finally:
            connection.close()

    threads = [threading.Thread(target=engage, args=(u,)) for u in admins]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert sorted(r.status_code for r in responses) == [201, 400, 400, 400, 400]
    switch = KillSwitch.objects.get()
    assert switch.is_engaged
    for refused in (r for r in responses if r.status_code == 400):
        message = refused.json()["errors"]["non_field_errors"][0]
        assert f"already engaged: #{switch.pk}" in message
        assert switch.engaged_by_label in message
    assert AuditEvent.objects.filter(action="kill_switch.engaged").count() == 1
    # Once released, the same switch can be engaged again.
    kill_switch_release(actor=SYSTEM, switch=switch, reason="over")
    again = api_as(admins[0]).post("/api/v1/kill-switches/", body, format="json")
    assert again.status_code == 201, again.content


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_identical_global_engages__postgresql__database_constraint_one_wins(
    tenant: Tenant,
) -> None:
    """A global switch has no tenant row to lock, so nothing serialises the duplicate check:
    the partial unique index ``kill_switch_one_engaged_per_identity`` (NULL targets compared
    as 0) decides, and the loser gets the normal field error naming the winner."""
    postgresql_only()

    def engage() -> KillSwitch:
        return kill_switch_engage(
            actor=SYSTEM, kind="tool_disabled", scope="global", tool_pattern="shell", reason="cve"
        )

    results, errors = race(engage, engage)

    [winner] = results
    [refused] = errors
    assert refused.message_dict["non_field_errors"][0].startswith(
        f"The same kill switch is already engaged: #{winner.pk}"
    )
    assert KillSwitch.objects.filter(released_at__isnull=True).count() == 1
    assert AuditEvent.objects.filter(action="kill_switch.engaged").count() == 1
