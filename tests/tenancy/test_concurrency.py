"""Optimistic concurrency on tenant, agent and environment changes (issue 9, item 2;
docs/decisions/0013): edits, archive/restore and moves carry the ``version`` they saw, the
second of two concurrent changes is refused naming who acted first.

Races run on PostgreSQL with real threads, each on its own connection."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client
from rest_framework.test import APIClient

from apps.audit.models import AuditEvent
from apps.core.concurrency import StaleVersion
from apps.core.roles import Role
from apps.tenancy import services
from apps.tenancy.models import Agent, Environment, Tenant

from ..conftest import api_as
from ..factories import AgentFactory, make_user
from ..races import postgresql_only, race


@pytest.fixture
def alice(tenant: Tenant) -> Any:
    return make_user(Role.OPERATOR, tenant, username="alice")


@pytest.fixture
def bob(tenant: Tenant) -> Any:
    return make_user(Role.OPERATOR, tenant, username="bob")


def _browser(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _state(model: type[Tenant | Agent | Environment], pk: int) -> tuple[Any, ...]:
    row = model.objects.get(pk=pk)
    return (row.snapshot(), row.version, AuditEvent.objects.count())


# --------------------------------------------------------------------------- real races


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_tenant_edits__postgresql__one_wins_the_other_is_told_who(
    tenant: Tenant, alice: Any, bob: Any
) -> None:
    postgresql_only()
    seen = tenant.version
    results, errors = race(
        lambda: services.tenant_update(
            actor=alice, tenant=tenant, name="Acme (alice)", expected_version=seen
        ),
        lambda: services.tenant_update(
            actor=bob, tenant=tenant, time_zone="Europe/Paris", expected_version=seen
        ),
    )
    assert len(results) == 1 and len(errors) == 1
    assert isinstance(errors[0], StaleVersion)
    winner = AuditEvent.objects.get(action="tenant.updated").actor_label
    assert errors[0].changed_by == winner and f"changed by {winner}" in errors[0].messages[0]
    assert Tenant.objects.get(pk=tenant.pk).version == seen + 1


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_tenant_edits_through_the_api__postgresql__200_and_409(
    tenant: Tenant, alice: Any, bob: Any
) -> None:
    postgresql_only()
    results, _ = race(
        *[
            (
                lambda who=who, name=name: api_as(who).patch(
                    f"/api/v1/tenants/{tenant.pk}/",
                    {"name": name},
                    format="json",
                    headers={"If-Match": f'"{tenant.version}"'},
                )
            )
            for who, name in ((alice, "A"), (bob, "B"))
        ]
    )
    assert sorted(r.status_code for r in results) == [200, 409]
    conflict = next(r for r in results if r.status_code == 409).json()
    assert conflict["current_version"] == 2 and conflict["changed_by"] in ("alice", "bob")
    assert AuditEvent.objects.filter(action="tenant.updated").count() == 1


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "second",
    ["edit", "move", "archive"],
)
def test_environment_edit_racing_another_change__postgresql__one_wins(
    tenant: Tenant, alice: Any, bob: Any, second: str
) -> None:
    postgresql_only()
    staging = tenant.environments.get(slug="staging")
    seen = staging.version
    other: dict[str, Callable[[], Any]] = {
        "edit": lambda: services.environment_update(
            actor=bob, environment=staging, is_production=True, expected_version=seen
        ),
        "move": lambda: services.environment_move(
            actor=bob, environment=staging, direction="up", expected_version=seen
        ),
        "archive": lambda: services.environment_archive(
            actor=bob, environment=staging, reason="merged", expected_version=seen
        ),
    }
    results, errors = race(
        lambda: services.environment_update(
            actor=alice, environment=staging, name="Pre-production", expected_version=seen
        ),
        other[second],
    )
    assert len(results) == 1 and len(errors) == 1
    assert isinstance(errors[0], StaleVersion)
    winner = (
        AuditEvent.objects.filter(target_type="tenancy.environment", target_id=str(staging.pk))
        .exclude(action="environment.created")
        .get()
        .actor_label
    )
    assert errors[0].changed_by == winner
    assert Environment.objects.get(pk=staging.pk).version == seen + 1


# --------------------------------------------------------------------------- API: 409


def _api_changes(tenant: Tenant) -> dict[str, tuple[str, str, dict[str, Any], Any, int]]:
    """name: (method, url, body, model, pk) of every versioned change of the API."""
    agent: Agent = AgentFactory(tenant=tenant, slug="support-bot", name="Support bot")
    staging = tenant.environments.get(slug="staging")
    return {
        "tenant-edit": ("patch", f"/api/v1/tenants/{tenant.pk}/", {"name": "N"}, Tenant, tenant.pk),
        "tenant-archive": (
            "post",
            f"/api/v1/tenants/{tenant.pk}/archive/",
            {"reason": "r"},
            Tenant,
            tenant.pk,
        ),
        "agent-edit": (
            "patch",
            f"/api/v1/agents/{agent.pk}/",
            {"description": "d"},
            Agent,
            agent.pk,
        ),
        "agent-archive": (
            "post",
            f"/api/v1/agents/{agent.pk}/archive/",
            {"reason": "r"},
            Agent,
            agent.pk,
        ),
        "environment-edit": (
            "patch",
            f"/api/v1/environments/{staging.pk}/",
            {"is_production": True},
            Environment,
            staging.pk,
        ),
        "environment-move": (
            "post",
            f"/api/v1/environments/{staging.pk}/move/",
            {"direction": "down"},
            Environment,
            staging.pk,
        ),
        "environment-archive": (
            "post",
            f"/api/v1/environments/{staging.pk}/archive/",
            {"reason": "r"},
            Environment,
            staging.pk,
        ),
    }


def _first_change(model: Any, pk: int, actor: Any) -> None:
    """What alice did meanwhile: a rename through the service (version 1 → 2)."""
    row = model.objects.get(pk=pk)
    update = {
        Tenant: lambda: services.tenant_update(actor=actor, tenant=row, name="Renamed"),
        Agent: lambda: services.agent_update(actor=actor, agent=row, name="Renamed"),
        Environment: lambda: services.environment_update(
            actor=actor, environment=row, name="Renamed"
        ),
    }[model]
    assert update().version == 2


CHANGES = [
    "tenant-edit",
    "tenant-archive",
    "agent-edit",
    "agent-archive",
    "environment-edit",
    "environment-move",
    "environment-archive",
]


@pytest.mark.django_db
@pytest.mark.parametrize("change", CHANGES)
@pytest.mark.parametrize(
    "stale",
    [{"expected_version": 1}, {"headers": {"If-Match": '"1"'}}, {"expected_version": 0}],
    ids=["body", "if-match", "never-existed"],
)
def test_api_change__stale_version__409_naming_who_and_nothing_changes(
    tenant: Tenant, alice: Any, bob: Any, change: str, stale: dict[str, Any]
) -> None:
    method, url, body, model, pk = _api_changes(tenant)[change]
    _first_change(model, pk, alice)
    detail_url = url.split("/archive/")[0].split("/move/")[0]
    if not detail_url.endswith("/"):
        detail_url += "/"
    assert api_as(bob).get(detail_url)["ETag"] == '"2"'
    before = _state(model, pk)
    extra = dict(stale)
    headers = extra.pop("headers", {})

    response = getattr(api_as(bob), method)(url, {**body, **extra}, format="json", headers=headers)

    assert response.status_code == 409, response.content
    answer = response.json()
    assert answer["changed_by"] == "alice" and answer["current_version"] == 2
    assert answer["changed_at"] and "was changed by alice" in answer["detail"]
    assert _state(model, pk) == before


@pytest.mark.django_db
@pytest.mark.parametrize("change", CHANGES)
def test_api_change__current_version_or_none__applies_and_answers_the_new_etag(
    tenant: Tenant, bob: Any, change: str
) -> None:
    method, url, body, model, pk = _api_changes(tenant)[change]
    client: APIClient = api_as(bob)
    response = getattr(client, method)(url, body, format="json", headers={"If-Match": '"1"'})
    assert response.status_code == 200, response.content
    assert response.json()["version"] == 2 and response["ETag"] == '"2"'
    assert model.objects.get(pk=pk).version == 2


@pytest.mark.django_db
def test_api_change__without_a_version__still_applies_for_existing_clients(
    tenant: Tenant, bob: Any
) -> None:
    # one tenant for all of them: its archive last, an archived tenant is frozen
    changes = sorted(_api_changes(tenant).items(), key=lambda item: item[0] == "tenant-archive")
    for change, (method, url, body, model, pk) in changes:
        before = model.objects.get(pk=pk).version
        response = getattr(api_as(bob), method)(url, body, format="json")
        assert response.status_code == 200, (change, response.content)
        assert model.objects.get(pk=pk).version == before + 1


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("headers", "body", "status"),
    [
        ({"If-Match": 'W/"1"'}, {}, 412),
        ({"If-Match": '"abc"'}, {}, 412),
        ({"If-Match": "1"}, {}, 400),
        ({"If-Match": '"1", "2"'}, {}, 400),
        ({"If-Match": '"1"'}, {"expected_version": 2}, 400),
        ({}, {"expected_version": -1}, 400),
        ({}, {"expected_version": "one"}, 400),
        ({}, {"expected_version": 2**40}, 400),
    ],
)
def test_api_tenant_edit__bad_version__4xx_and_nothing_changes(
    tenant: Tenant, bob: Any, headers: dict[str, str], body: dict[str, Any], status: int
) -> None:
    before = _state(Tenant, tenant.pk)
    response = api_as(bob).patch(
        f"/api/v1/tenants/{tenant.pk}/", {"name": "N", **body}, format="json", headers=headers
    )
    assert response.status_code == status, response.content
    assert response.json()["detail"]
    assert _state(Tenant, tenant.pk) == before


# --------------------------------------------------------------------------- forms


def _form_posts(tenant: Tenant) -> dict[str, tuple[str, dict[str, Any], Any, int]]:
    agent: Agent = AgentFactory(tenant=tenant, slug="support-bot", name="Support bot")
    staging = tenant.environments.get(slug="staging")
    return {
        "tenant-edit": (
            f"/tenants/{tenant.slug}/edit/",
            {"name": "N", "time_zone": "UTC"},
            Tenant,
            tenant.pk,
        ),
        "tenant-archive": (f"/tenants/{tenant.slug}/archive/", {"reason": "r"}, Tenant, tenant.pk),
        "agent-edit": (
            f"/agents/{agent.pk}/edit/",
            {"name": "N", "description": ""},
            Agent,
            agent.pk,
        ),
        "agent-archive": (f"/agents/{agent.pk}/archive/", {"reason": "r"}, Agent, agent.pk),
        "environment-edit": (
            f"/environments/{staging.pk}/edit/",
            {"name": "N", "is_production": "on"},
            Environment,
            staging.pk,
        ),
        "environment-archive": (
            f"/environments/{staging.pk}/archive/",
            {"reason": "r"},
            Environment,
            staging.pk,
        ),
    }


@pytest.mark.django_db
@pytest.mark.parametrize("change", [c for c in CHANGES if c != "environment-move"])
def test_form__stale_version__clear_message_naming_who_and_nothing_changes(
    tenant: Tenant, alice: Any, bob: Any, change: str
) -> None:
    url, data, model, pk = _form_posts(tenant)[change]
    page = _browser(bob).get(url)
    assert 'name="expected_version" value="1"' in page.content.decode()
    _first_change(model, pk, alice)
    before = _state(model, pk)

    response = _browser(bob).post(url, {**data, "expected_version": 1})

    assert response.status_code == 200
    html = response.content.decode()
    assert "was changed by alice" in html and "Nothing was changed" in html
    assert _state(model, pk) == before
    if "archive" in change:
        # the confirmation re-renders on the version it now states: a second click acts
        assert 'name="expected_version" value="2"' in html
        assert _browser(bob).post(url, {**data, "expected_version": 2}).status_code == 302


@pytest.mark.django_db
def test_tenant_restore_form__stale_version__refused(tenant: Tenant, alice: Any, bob: Any) -> None:
    services.tenant_archive(actor=alice, tenant=tenant, reason="r")  # version 2
    services.tenant_restore(actor=alice, tenant=tenant, reason="r")  # version 3
    services.tenant_archive(actor=alice, tenant=tenant, reason="r")  # version 4
    before = _state(Tenant, tenant.pk)
    response = _browser(bob).post(
        f"/tenants/{tenant.slug}/restore/", {"reason": "r", "expected_version": 3}
    )
    assert response.status_code == 200 and "was changed by alice" in response.content.decode()
    assert _state(Tenant, tenant.pk) == before


@pytest.mark.django_db
@pytest.mark.parametrize("seen", ["1", "", "x", "99999999999"])
def test_environment_move_form__stale_or_missing_version__message_and_nothing_moves(
    tenant: Tenant, alice: Any, bob: Any, seen: str
) -> None:
    staging = tenant.environments.get(slug="staging")
    _first_change(Environment, staging.pk, alice)
    before = _state(Environment, staging.pk)
    browser = _browser(bob)
    response = browser.post(
        f"/environments/{staging.pk}/move/", {"direction": "down", "expected_version": seen}
    )
    assert response.status_code == 302
    shown = browser.get(response["Location"]).content.decode()
    assert ("was changed by alice" if seen == "1" else "did not say which version") in shown
    assert _state(Environment, staging.pk) == before


@pytest.mark.django_db
def test_environment_move__bumps_both_swapped_environments(tenant: Tenant, bob: Any) -> None:
    staging = tenant.environments.get(slug="staging")
    production = tenant.environments.get(slug="production")
    page = _browser(bob).get(f"/tenants/{tenant.slug}/").content.decode()
    assert 'name="expected_version" value="1"' in page
    response = _browser(bob).post(
        f"/environments/{staging.pk}/move/", {"direction": "down", "expected_version": 1}
    )
    assert response.status_code == 302
    assert Environment.objects.get(pk=staging.pk).version == 2
    assert Environment.objects.get(pk=production.pk).version == 2
