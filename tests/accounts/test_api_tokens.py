"""People's API tokens are stored only as hashes, shown once, and tokens issued before this
(DRF's plaintext ``authtoken`` rows) are hashed by a data migration and keep working."""

from __future__ import annotations

import hashlib
import importlib

import pytest
from django.apps import apps
from django.contrib.auth.models import User
from django.db import connection
from rest_framework.test import APIClient

from apps.accounts.models import ApiToken
from apps.accounts.services import api_token_rotate
from apps.audit.models import AuditEvent
from apps.core.roles import Role
from apps.tenancy.models import Tenant

from ..factories import make_user

pytestmark = pytest.mark.django_db

migration = importlib.import_module("apps.accounts.migrations.0003_hash_existing_api_tokens")


def _me(key: str) -> int:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client.get("/api/v1/me/").status_code


def _everything_stored() -> str:
    """Every column of every row a token could hide in, as one string."""
    return str(
        (
            list(ApiToken.objects.values()),
            list(AuditEvent.objects.values()),
            list(User.objects.values()),
        )
    )


@pytest.mark.parametrize("role", [Role.ADMIN, Role.OPERATOR, Role.VIEWER])
def test_api_token_rotate__key_shown_once__only_its_hash_stored(role: Role, tenant: Tenant) -> None:
    user = make_user(role, tenant)

    key = api_token_rotate(actor=user, user=user)

    assert key.startswith("cpat_") and len(key) > 40
    assert key not in _everything_stored()
    assert ApiToken.objects.get(user=user).key_hash == hashlib.sha256(key.encode()).hexdigest()
    assert _me(key) == 200


@pytest.mark.parametrize(
    "forged",
    [
        "{hash}",  # the stored hash is not a key
        "{key}x",
        "{key_upper}",
        "",
    ],
)
def test_api_token__anything_but_the_key__401(forged: str, operator: User) -> None:
    key = api_token_rotate(actor=operator, user=operator)
    stored = ApiToken.objects.get(user=operator).key_hash

    value = forged.format(hash=stored, key=key, key_upper=key.upper())

    assert _me(value) == 401


def test_api_token_rotate__again__old_key_dead_and_audit_says_replaced(operator: User) -> None:
    first = api_token_rotate(actor=operator, user=operator)
    second = api_token_rotate(actor=operator, user=operator)

    assert (_me(first), _me(second)) == (401, 200)
    events = AuditEvent.objects.filter(action="user.api_token_rotated").order_by("id")
    assert [e.before["api_access"] for e in events] == [False, True]
    assert events[1].after["key_prefix"] == second[:11]


@pytest.fixture
def legacy_table() -> None:
    """DRF's authtoken table as installs before hashed tokens have it (the DDL rolls back
    with the test's transaction on PostgreSQL)."""
    user_table = connection.ops.quote_name(User._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f'CREATE TABLE "authtoken_token" ("key" varchar(40) PRIMARY KEY, '
            f'"created" timestamp with time zone NOT NULL DEFAULT now(), '
            f'"user_id" integer NOT NULL UNIQUE REFERENCES {user_table} ("id"))'
        )


@pytest.mark.skipif(connection.vendor != "postgresql", reason="transactional DDL")
def test_migration__plaintext_tokens__hashed_keep_working_and_plaintext_gone(
    legacy_table: None, tenant: Tenant
) -> None:
    users = [make_user(Role.OPERATOR, tenant, username=f"script-{n}") for n in range(3)]
    keys = ["0123456789abcdef0123456789abcdef01234567", "f" * 40, "a1" * 20]
    with connection.cursor() as cursor:
        for user, key in zip(users, keys, strict=True):
            cursor.execute(
                'INSERT INTO "authtoken_token" ("key", "user_id") VALUES (%s, %s)', [key, user.pk]
            )

    with connection.schema_editor(atomic=False) as editor:
        migration.hash_legacy_tokens(apps, editor)

    assert "authtoken_token" not in connection.introspection.table_names()
    assert all(_me(key) == 200 for key in keys)
    assert not any(key in _everything_stored() for key in keys)
    assert sorted(ApiToken.objects.values_list("user__username", flat=True)) == [
        "script-0",
        "script-1",
        "script-2",
    ]


def test_migration__fresh_install__nothing_to_do() -> None:
    with connection.schema_editor(atomic=False) as editor:
        migration.hash_legacy_tokens(apps, editor)

    assert ApiToken.objects.count() == 0
