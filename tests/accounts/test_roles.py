"""Role groups are complete after the first ``migrate`` of an empty database, stay complete
after a flush (what transactional tests do), and a role naming a missing permission fails
loudly instead of leaving the role short. No test here calls the sync itself to prepare."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from django.contrib.auth.models import Group, Permission
from django.contrib.contenttypes.models import ContentType
from django.core.checks import run_checks
from django.core.management import call_command
from django.db import connection, connections
from guardian.shortcuts import clear_ct_cache
from rest_framework.test import APIClient

from apps.accounts.role_sync import RolePermissionsMissing
from apps.accounts.services import roles_sync, user_create, user_grant_tenant
from apps.audit.models import AuditEvent
from apps.audit.services import SystemActor
from apps.bundles.models import BundleVersion, SigningKey
from apps.core import roles
from apps.core.roles import ROLE_PERMISSIONS, Role
from apps.tenancy.services import agent_create, tenant_create

ROOT = Path(__file__).resolve().parents[2]
DEMO_BUNDLE = ROOT / "apps" / "bundles" / "demo" / "refund-agent-v1.yaml"
SYSTEM = SystemActor("system:test")

on_postgresql = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="creates a PostgreSQL database of its own"
)


def _role_permissions() -> dict[str, set[str]]:
    return {
        group.name: {f"{p.content_type.app_label}.{p.codename}" for p in group.permissions.all()}
        for group in Group.objects.prefetch_related("permissions__content_type")
    }


def _expected() -> dict[str, set[str]]:
    return {role.value: set(names) for role, names in ROLE_PERMISSIONS.items()}


def _dsn(name: str) -> str:
    db = connections["default"].settings_dict
    return psycopg.conninfo.make_conninfo(
        host=db["HOST"] or "127.0.0.1",
        port=str(db["PORT"] or 5432),
        user=db["USER"],
        password=db["PASSWORD"] or None,
        dbname=name,
    )


@pytest.fixture
def empty_database(django_db_blocker) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """A new, empty PostgreSQL database (dropped afterwards); yields its name."""
    name = f"fresh_{uuid.uuid4().hex[:12]}"
    with django_db_blocker.unblock(), psycopg.connect(_dsn("postgres"), autocommit=True) as pg:
        pg.execute(f'CREATE DATABASE "{name}"')
    yield name
    with django_db_blocker.unblock(), psycopg.connect(_dsn("postgres"), autocommit=True) as pg:
        pg.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def on_database(transactional_db, django_db_blocker):  # type: ignore[no-untyped-def]
    """Point this process's default connection at another database for the test's body
    (transactional: no test transaction is open on the connection being switched; the test
    database's flush comes after the switch back). The process's content type caches — Django's
    and django-guardian's (``get_objects_for_user`` keeps each permission's content type) — hold
    the ids of the database they were filled from, so both are emptied at each switch."""
    conn = connections["default"]
    original = conn.settings_dict["NAME"]

    def forget_content_types() -> None:
        ContentType.objects.clear_cache()
        clear_ct_cache()

    def switch(name: str) -> None:
        conn.close()
        conn.settings_dict["NAME"] = name
        forget_content_types()

    with django_db_blocker.unblock():
        yield switch
        conn.close()
        conn.settings_dict["NAME"] = original
        forget_content_types()


@on_postgresql
@pytest.mark.slow
def test_first_migrate_of_an_empty_database__every_role_complete_and_operator_pushes(
    empty_database: str, on_database, settings, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    # Given an empty database, migrated once by a separate `manage.py migrate`, as an operator
    # installing the product would (no signing key anywhere yet: migrate makes and activates it)
    db = connections["default"].settings_dict
    url = (
        f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{empty_database}"
    )
    key_dir = tmp_path / "signing"
    result = subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput"],
        cwd=ROOT,
        env={
            **os.environ,
            "DATABASE_URL": url,
            "DJANGO_SETTINGS_MODULE": settings.SETTINGS_MODULE,
            "CONTROLPLANE_SIGNING_KEY": "",
            "CONTROLPLANE_SIGNING_KEY_FILE": "",
            "CONTROLPLANE_SIGNING_KEY_DIR": str(key_dir),
        },
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    on_database(empty_database)

    # Then every role holds exactly its permissions
    assert _role_permissions() == _expected()
    assert (
        len(_expected()[Role.OPERATOR.value]) == 61
    )  # + telemetry, review, rollout, alert, budget, approval permissions

    # And the signing key was activated by migrate, once, audited
    assert SigningKey.objects.filter(active=True).count() == 1
    assert AuditEvent.objects.filter(action="signing_key.activated").count() == 1

    # And an Operator granted a tenant can push a bundle (signed) right away
    settings.SIGNING_KEY, settings.SIGNING_KEY_FILE = "", ""
    settings.SIGNING_KEY_DIR = key_dir
    operator, _ = user_create(
        actor=SYSTEM, username="first-operator", role=Role.OPERATOR, password="a-l0ng-pass-phrase"
    )
    tenant = tenant_create(actor=SYSTEM, slug="acme", name="Acme")
    agent = agent_create(actor=SYSTEM, tenant=tenant, slug="refund-agent", name="Refund agent")
    user_grant_tenant(actor=SYSTEM, user=operator, tenant=tenant)
    client = APIClient()
    client.force_authenticate(operator)
    response = client.generic(
        "POST",
        f"/api/v1/agents/{agent.pk}/bundles/?message=first",
        DEMO_BUNDLE.read_text(),
        content_type="application/yaml",
    )
    assert response.status_code == 201, response.content
    signed = BundleVersion.objects.get(agent=agent)
    assert signed.signing_key_id == SigningKey.objects.get(active=True).kid
    # signing read the key; it wrote no key and no event
    assert AuditEvent.objects.filter(action="signing_key.activated").count() == 1


@pytest.mark.django_db(transaction=True)
def test_flush__post_migrate_runs_again__every_role_complete() -> None:
    # What a transactional test does between tests: empty every table, then post_migrate
    call_command("flush", interactive=False, verbosity=0)

    assert _role_permissions() == _expected()


@pytest.mark.django_db
def test_role_groups__after_test_database_migrate__hold_exactly_their_permissions() -> None:
    assert _role_permissions() == _expected()


@pytest.mark.django_db
@pytest.mark.parametrize(
    "missing", ["flags.add_killswitch", "bundles.add_bundleversion", "tenancy.view_tenant"]
)
def test_roles_sync__permission_missing_from_database__raises_naming_it_and_changes_nothing(
    missing: str,
) -> None:
    app_label, codename = missing.split(".")
    Permission.objects.filter(content_type__app_label=app_label, codename=codename).delete()
    before = _role_permissions()

    with pytest.raises(RolePermissionsMissing, match=missing):
        roles_sync()

    assert _role_permissions() == before


@pytest.mark.parametrize(
    "bogus", ["flags.fly_killswitch", "nosuchapp.view_thing", "tenancy.view_tenants"]
)
def test_system_check__role_names_unknown_permission__error(
    bogus: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(
        roles.ROLE_PERMISSIONS, Role.VIEWER, [*ROLE_PERMISSIONS[Role.VIEWER], bogus]
    )

    errors = [m for m in run_checks() if m.id == "accounts.E001"]

    assert [bogus in e.msg for e in errors] == [True]


def test_system_check__shipped_roles__no_error() -> None:
    assert [m for m in run_checks() if m.id == "accounts.E001"] == []
