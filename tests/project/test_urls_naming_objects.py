"""A page whose URL names one object (``?environment=<id>``, ``?queue=<id>``, ``?version=N``)
shows that object or answers 404 — never silently another one. The diff, editor, deploy and
rollout pages have their own tests (tests/bundles/test_views.py, tests/rollouts/test_views.py);
these are the other pages of the same kind."""

from __future__ import annotations

import pytest
from django.test import Client

from apps.approvals.services.queues import queue_create
from apps.audit.services import SystemActor
from apps.core.roles import Role
from apps.tenancy.models import Tenant

from ..factories import make_user

pytestmark = pytest.mark.django_db
BAD = ["99999", "abc", "-1", "1.5", "%EF%BC%91"]


def _client(role: Role, tenant: Tenant) -> Client:
    client = Client()
    client.force_login(make_user(role, tenant))
    return client


@pytest.mark.parametrize("wanted", BAD)
@pytest.mark.parametrize("path", ["/flags/", "/flags/new/"])
def test_flag_pages__environment_that_is_not_yours__404(
    tenant: Tenant, other_tenant: Tenant, path: str, wanted: str
) -> None:
    client = _client(Role.OPERATOR, tenant)
    assert client.get(f"{path}?environment={wanted}").status_code == 404
    theirs = other_tenant.environments.get().pk
    assert client.get(f"{path}?environment={theirs}").status_code == 404
    ours = tenant.environments.get(slug="staging").pk
    assert client.get(f"{path}?environment={ours}").status_code == 200


@pytest.mark.parametrize("wanted", BAD)
def test_approvals_health__queue_that_is_not_yours__404(
    tenant: Tenant, other_tenant: Tenant, wanted: str
) -> None:
    system = SystemActor("test")
    approver = make_user(Role.APPROVER, tenant)
    ours = queue_create(
        actor=system, tenant=tenant, data={"name": "Refunds", "approvers": [approver]}
    )
    theirs = queue_create(
        actor=system,
        tenant=other_tenant,
        data={"name": "Theirs", "approvers": [make_user(Role.APPROVER, other_tenant)]},
    )
    client = _client(Role.OPERATOR, tenant)
    assert client.get(f"/approvals/health/?queue={wanted}").status_code == 404
    assert client.get(f"/approvals/health/?queue={theirs.pk}").status_code == 404
    assert client.get(f"/approvals/health/?queue={ours.pk}").status_code == 200
    assert client.get("/approvals/health/").status_code == 200
