"""The audit event page shows a field-level diff: the path of each change, the value before
(marked with a minus sign) and after (a plus) as JSON, and says so when nothing changed."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import transaction
from django.test import Client

from apps.audit.models import AuditEvent
from apps.audit.services import SystemActor, audit_record
from apps.tenancy.models import Tenant

pytestmark = pytest.mark.django_db
MINUS = "\u2212"

BEFORE = {
    "name": "new-checkout",
    "enabled": False,
    "strategies": [{"name": "flexibleRollout", "parameters": {"rollout": "10"}}],
    "variants": [{"name": "blue", "weight": 500}, {"name": "green", "weight": 500}],
}
AFTER = {
    "name": "new-checkout",
    "enabled": True,
    "strategies": [{"name": "flexibleRollout", "parameters": {"rollout": "50"}}],
    "variants": [{"name": "blue", "weight": 1000}],
}


def _event(tenant: Tenant, before: Any, after: Any) -> AuditEvent:
    with transaction.atomic():
        return audit_record(
            actor=SystemActor("test"),
            action="flag.updated",
            target_type="flags.flag",
            target_id="999999",
            target_label="new-checkout",
            tenant=tenant,
            before=before,
            after=after,
        )


def _page(user: User, event: AuditEvent) -> str:
    client = Client()
    client.force_login(user)
    return client.get(f"/audit/{event.pk}/").content.decode()


def test_audit_detail__flag_changed__paths_with_before_and_after_marked(
    tenant: Tenant, admin: User
) -> None:
    page = _page(admin, _event(tenant, BEFORE, AFTER))

    assert 'data-path="strategies[0].parameters.rollout"' in page
    assert 'data-path="enabled"' in page
    assert 'data-path="variants[0].weight"' in page
    assert 'data-path="variants[1]"' in page and ">removed</span>" in page
    assert 'data-path="name"' not in page  # unchanged fields are not listed
    old = f'<span aria-hidden="true">{MINUS} </span><span class="visually-hidden">before: </span>'
    new = '<span aria-hidden="true">+ </span><span class="visually-hidden">after: </span>'
    assert old + "&quot;10&quot;" in page
    assert new + "&quot;50&quot;" in page
    assert "false" in page and "False" not in page  # JSON, not Python reprs


def test_audit_detail__same_before_and_after__says_nothing_changed(
    tenant: Tenant, admin: User
) -> None:
    page = _page(admin, _event(tenant, BEFORE, dict(BEFORE)))

    assert "Before and after are the same" in page
    assert "audit-diff" not in page


def test_audit_detail__deleted_target_type_without_row__plain_text(
    tenant: Tenant, admin: User
) -> None:
    page = _page(admin, _event(tenant, BEFORE, None))

    assert '<span data-testid="audit-target">new-checkout</span>' in page
    assert 'data-path="strategies"' in page  # every field removed
