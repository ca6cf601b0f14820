from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection, transaction

from apps.audit.models import AuditEvent
from apps.audit.services import SystemActor, audit_record

on_postgresql = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="needs PostgreSQL (its trigger and row locks)"
)


def tamper(sql: str, params: list[Any]) -> None:
    """Change audit rows behind the application's back, as an attacker with database access
    would. On PostgreSQL the append-only trigger must be bypassed first (replica mode skips
    ordinary triggers; it needs a superuser, which the test database owner is)."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SET session_replication_role = replica")
        try:
            cursor.execute(sql, params)
        finally:
            if connection.vendor == "postgresql":
                cursor.execute("SET session_replication_role = DEFAULT")


@pytest.fixture
def record() -> Callable[..., AuditEvent]:
    def _record(action: str = "thing.changed", **kwargs: Any) -> AuditEvent:
        with transaction.atomic():
            return audit_record(actor=SystemActor("system:test"), action=action, **kwargs)

    return _record
