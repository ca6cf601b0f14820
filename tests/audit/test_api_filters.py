"""The audit events list's query filters (``apps/audit/api/filters.py``): each keeps what the
dashboard's audit page keeps, and a bad value is a 400 naming the parameter. (The checkpoint
list's ``after_event`` is tested with the checkpoints.)"""

from __future__ import annotations

from datetime import timedelta, timezone
from typing import Any

import pytest

from apps.audit.models import AuditEvent
from apps.tenancy.models import Tenant

from ..conftest import api_as

pytestmark = pytest.mark.django_db

URL = "/api/v1/audit-events/"


@pytest.fixture
def events(
    empty_audit_log: None, record: Any, tenant: Tenant, other_tenant: Tenant
) -> list[AuditEvent]:
    made = [
        record(
            action="agent.created",
            target_type="tenancy.agent",
            target_id="7",
            target_label="Support bot",
            tenant=tenant,
        ),
        record(
            action="agent.archived",
            target_type="tenancy.agent",
            target_id="8",
            target_label="Refund agent",
            tenant=tenant,
        ),
        record(
            action="flag.updated",
            target_type="flags.flag",
            target_id="9",
            target_label="new-checkout",
            tenant=other_tenant,
        ),
    ]
    return made


def _actions(response: Any) -> list[str]:
    assert response.status_code == 200, response.content
    return [row["action"] for row in response.json()["results"]]


def test_filters__each_keeps_its_events(
    events: list[AuditEvent], admin: Any, other_tenant: Tenant
) -> None:
    client = api_as(admin)
    assert len(_actions(client.get(URL))) == 3
    assert _actions(client.get(URL, {"action": "agent."})) == ["agent.archived", "agent.created"]
    assert _actions(client.get(URL, {"actor": "SYSTEM:TE"})) != []
    assert _actions(client.get(URL, {"actor": "nobody"})) == []
    assert _actions(client.get(URL, {"tenant": other_tenant.pk})) == ["flag.updated"]
    assert _actions(client.get(URL, {"target": "refund"})) == ["agent.archived"]
    assert _actions(client.get(URL, {"target": "7"})) == ["agent.created"]
    assert _actions(client.get(URL, {"target": "flags.flag"})) == ["flag.updated"]
    first, second, _third = (event.occurred_at for event in events)
    assert _actions(client.get(URL, {"since": second.isoformat()})) == [
        "flag.updated",
        "agent.archived",
    ]
    assert _actions(
        client.get(URL, {"since": second.isoformat(), "until": second.isoformat()})
    ) == ["agent.archived"]
    assert _actions(client.get(URL, {"action": "agent.", "until": first.isoformat()})) == [
        "agent.created"
    ]


def test_filters__never_widen_the_scope(
    events: list[AuditEvent], operator: Any, other_tenant: Tenant
) -> None:
    client = api_as(operator)
    assert _actions(client.get(URL, {"tenant": other_tenant.pk})) == []
    assert "flag.updated" not in _actions(client.get(URL, {"target": "flags.flag"}))


@pytest.mark.parametrize(
    ("parameter", "value", "message"),
    [
        ("tenant", "acme", "Use the tenant id."),
        ("tenant", "1.5", "Use the tenant id."),
        ("tenant", "0", "Use the tenant id: at least 1."),
        ("tenant", "9" * 30, f"Use the tenant id: at most {2**63 - 1}."),
        ("since", "yesterday", "Use an ISO 8601 time such as 2026-11-23T12:00:00Z."),
        ("until", "2026-02-30T12:00:00Z", "Use an ISO 8601 time such as 2026-11-23T12:00:00Z."),
        (
            "since",
            "0001-01-01T00:00:00+14:00",
            "Use an ISO 8601 time such as 2026-11-23T12:00:00Z.",
        ),
        ("actor", "x" * 501, "At most 500 characters."),
    ],
)
def test_filters__bad_value__400_naming_it(
    admin: Any, parameter: str, value: str, message: str
) -> None:
    response = api_as(admin).get(URL, {parameter: value})
    assert response.status_code == 400
    assert response.json() == {
        "detail": "Invalid input: see errors by field.",
        "errors": {parameter: [message]},
    }


def test_filters__offset_postgresql_refuses__still_compared(
    events: list[AuditEvent], admin: Any
) -> None:
    # +20:18 is an offset Python reads and PostgreSQL refuses: the instant is compared in UTC.
    far_east = timezone(timedelta(hours=20, minutes=18))
    until = events[0].occurred_at.astimezone(far_east).isoformat()
    assert _actions(api_as(admin).get(URL, {"until": until})) == ["agent.created"]
