"""Parallel grants and token rotations on PostgreSQL: one change, one audit event, whoever
comes second sees the first's result."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection, connections

from apps.accounts.models import ApiToken
from apps.accounts.services import api_token_rotate, user_grant_tenant, user_revoke_tenant
from apps.audit.models import AuditEvent
from apps.core.roles import Role

from ..factories import TenantFactory, make_user

pytestmark = [
    pytest.mark.skipif(connection.vendor != "postgresql", reason="row locks need PostgreSQL"),
    pytest.mark.django_db(transaction=True),
]
THREADS = 5


def _in_parallel(call: Callable[[], Any]) -> list[Any]:
    barrier = threading.Barrier(THREADS)
    results: list[Any] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            barrier.wait(timeout=20)
            results.append(call())
        except BaseException as exc:  # reported below, in the test thread
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    return results


def test_parallel_grants__same_tenant__one_grant_one_event() -> None:
    admin = make_user(Role.ADMIN, username="root")
    viewer = make_user(Role.VIEWER, username="victor")
    tenant = TenantFactory()

    results = _in_parallel(lambda: user_grant_tenant(actor=admin, user=viewer, tenant=tenant))

    assert sorted(results) == [False] * (THREADS - 1) + [True]
    assert AuditEvent.objects.filter(action="user.tenant_granted").count() == 1


def test_parallel_revokes__granted_tenant__one_revoke_one_event() -> None:
    admin = make_user(Role.ADMIN, username="root")
    tenant = TenantFactory()
    viewer = make_user(Role.VIEWER, tenant, username="victor")

    results = _in_parallel(lambda: user_revoke_tenant(actor=admin, user=viewer, tenant=tenant))

    assert sorted(results) == [False] * (THREADS - 1) + [True]
    assert AuditEvent.objects.filter(action="user.tenant_revoked").count() == 1


def test_parallel_token_rotations__one_token_left_each_replacing_the_previous() -> None:
    user = make_user(Role.OPERATOR, username="otto")

    keys = _in_parallel(lambda: api_token_rotate(actor=user, user=user))

    assert len(set(keys)) == THREADS and ApiToken.objects.count() == 1
    events = AuditEvent.objects.filter(action="user.api_token_rotated")
    assert sorted(e.before["api_access"] for e in events) == [False] + [True] * (THREADS - 1)
