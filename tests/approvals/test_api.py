"""The operator API: ``/api/v1/approvals/`` (list, retrieve, decide, bulk decide) and
``/api/v1/approval-queues/`` (CRUD), with who may see and decide what."""

from __future__ import annotations

from typing import Any

from apps.approvals.models import ApprovalQueue, ApprovalRequest, Status
from apps.approvals.services import approval_open, queue_create
from apps.core.roles import Role
from apps.tenancy.models import Tenant

from ..conftest import api_as
from ..factories import make_user
from .conftest import ACTOR, body

LIST = "/api/v1/approvals/"
QUEUES = "/api/v1/approval-queues/"


def open_request(tenant: Tenant, **fields: Any) -> ApprovalRequest:
    environment = tenant.environments.get(slug="production")
    return approval_open(
        tenant_id=tenant.pk,
        environment_id=environment.pk,
        token_id=None,
        token_agent_id=None,
        token_label="test",
        body=body(**fields),
    ).request


def test_an_approver_sees_and_decides_only_its_queues(tenant, agent, refunds, approver) -> None:  # type: ignore[no-untyped-def]
    carol = make_user(Role.APPROVER, tenant, username="carol-approver")
    queue_create(
        actor=ACTOR,
        tenant=tenant,
        data={"name": "Lookups", "match_tools": ["lookup_order"], "approvers": [carol]},
    )
    refund = open_request(tenant)
    lookup = open_request(tenant, tool="lookup_order", arguments={"id": 1}, idempotency_key="l1")
    listed = api_as(approver).get(LIST, {"status": "pending"}).json()["results"]
    assert [item["id"] for item in listed] == [refund.pk]
    assert listed[0]["arguments"] == {"order_id": "A-1001", "amount": 42.5}
    assert api_as(approver).get(f"{LIST}{lookup.pk}/").status_code == 404
    denied = api_as(approver).post(f"{LIST}{lookup.pk}/decide/", {"decision": "approve"})
    assert denied.status_code == 404
    mine = api_as(carol).post(f"{LIST}{lookup.pk}/decide/", {"decision": "approve"})
    assert mine.status_code == 200 and mine.json()["status"] == "approved"
    queues = [q["name"] for q in api_as(approver).get(QUEUES).json()["results"]]
    assert queues == ["Refunds"]


def test_decide_answers_409_naming_who_decided(tenant, agent, refunds, approver, approver2) -> None:  # type: ignore[no-untyped-def]
    request = open_request(tenant, tool="send_email", arguments={"to": "x"}, idempotency_key="e")
    admin = make_user(Role.ADMIN, username="root-admin")
    first = api_as(admin).post(f"{LIST}{request.pk}/decide/", {"decision": "reject"})
    assert first.status_code == 400 and "comment" in first.json()["errors"]
    ok = api_as(admin).post(
        f"{LIST}{request.pk}/decide/", {"decision": "reject", "comment": "wrong address"}
    )
    assert ok.status_code == 200 and ok.json()["outcome"] == "deny"
    late = api_as(admin).post(f"{LIST}{request.pk}/decide/", {"decision": "approve"})
    assert late.status_code == 409
    assert late.json()["decided_by"] == ["root-admin"] and "root-admin" in late.json()["detail"]


def test_a_viewer_reads_but_cannot_decide(tenant, agent, refunds, viewer) -> None:  # type: ignore[no-untyped-def]
    request = open_request(tenant)
    assert api_as(viewer).get(f"{LIST}{request.pk}/").status_code == 200
    refused = api_as(viewer).post(f"{LIST}{request.pk}/decide/", {"decision": "approve"})
    assert refused.status_code == 403
    request.refresh_from_db()
    assert request.status == Status.PENDING and request.approvals == 0


def test_bulk_decides_low_risk_only(tenant, agent, approver) -> None:  # type: ignore[no-untyped-def]
    queue_create(actor=ACTOR, tenant=tenant, data={"name": "All", "approvers": [approver]})
    low = [
        open_request(tenant, tool="lookup_order", arguments={"id": n}, idempotency_key=f"l{n}")
        for n in range(3)
    ]
    critical = open_request(tenant)
    answer = api_as(approver).post(
        f"{LIST}decide/",
        {"ids": [r.pk for r in low] + [critical.pk, 999999], "decision": "approve"},
        format="json",
    )
    assert answer.status_code == 200, answer.content
    assert sorted(answer.json()["decided"]) == sorted(r.pk for r in low)
    refused = answer.json()["refused"]
    assert "critical" in refused[str(critical.pk)] and "Not found" in refused["999999"]
    critical.refresh_from_db()
    assert critical.status == Status.PENDING


def test_queue_crud_and_field_errors(tenant, agent, operator, approver, viewer) -> None:  # type: ignore[no-untyped-def]
    client = api_as(operator)
    bad = client.post(
        QUEUES,
        {"tenant": tenant.pk, "name": "", "match_risks": ["huge"], "approvers": ["nobody"]},
        format="json",
    )
    assert bad.status_code == 400
    assert {"name", "match_risks[0]"} <= set(bad.json()["errors"])
    created = client.post(
        QUEUES,
        {
            "tenant": tenant.pk,
            "name": "Refunds",
            "match_tools": ["issue_*"],
            "timeout_s": 1800,
            "approvers": ["alice-approver", "nobody"],
        },
        format="json",
    )
    assert created.status_code == 400 and "nobody" in str(created.json()["errors"]["approvers"])
    created = client.post(
        QUEUES,
        {"tenant": tenant.pk, "name": "Refunds", "approvers": ["alice-approver"]},
        format="json",
    )
    assert created.status_code == 201, created.content
    queue = created.json()
    assert queue["approvers"] == ["alice-approver"]
    stale = client.patch(
        f"{QUEUES}{queue['id']}/", {"sla_s": 60, "expected_version": 0}, format="json"
    )
    assert stale.status_code == 409
    changed = client.patch(f"{QUEUES}{queue['id']}/", {"sla_s": 60}, format="json")
    assert changed.status_code == 200 and changed.json()["sla_s"] == 60
    assert changed.json()["approvers"] == ["alice-approver"]
    assert api_as(viewer).delete(f"{QUEUES}{queue['id']}/").status_code == 403
    assert api_as(approver).patch(f"{QUEUES}{queue['id']}/", {"sla_s": 90}).status_code == 403
    assert client.delete(f"{QUEUES}{queue['id']}/").status_code == 204
    open_request(tenant)  # creates the default queue, which then holds a request
    default = ApprovalQueue.objects.get(tenant=tenant, is_default=True)
    kept = client.delete(f"{QUEUES}{default.pk}/")
    assert kept.status_code == 409 and "stays" in kept.json()["detail"]
