"""The rules of deciding: four eyes on critical, the requester cannot decide, a reject says
why, queues decide who, expiry is not a rejection, escalation moves a request, and two
approvers at once: exactly one wins and the other is told who decided."""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from typing import Any

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import connection, transaction
from django.utils import timezone

from apps.alerts.models import Alert
from apps.approvals.models import ApprovalQueue, ApprovalRequest, Status
from apps.approvals.services import (
    AlreadyDecided,
    QueueInUse,
    approval_cancel,
    approval_decide,
    approval_escalate,
    approval_expire,
    approval_for_runtime,
    approval_open,
    approvals_sweep,
    queue_create,
    queue_delete,
    queue_update,
    runtime_document,
)
from apps.audit.models import AuditEvent
from apps.core.roles import Role
from apps.tenancy.models import Tenant
from apps.tenancy.services import agent_archive, environment_archive, tenant_archive

from ..factories import make_user
from ..races import postgresql_only
from .conftest import ACTOR, body


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


def test_critical_needs_two_distinct_approvers(tenant, agent, refunds, approver, approver2) -> None:  # type: ignore[no-untyped-def]
    request = open_request(tenant)
    assert request.risk == "critical" and request.approvals_required == 2
    first = approval_decide(actor=approver, request=request, choice="approve", comment="ok")
    assert first.status == Status.PENDING and first.approvals == 1
    with pytest.raises(AlreadyDecided, match="needs another approver"):
        approval_decide(actor=approver, request=request, choice="approve")
    second = approval_decide(actor=approver2, request=request, choice="approve", comment="ok too")
    assert second.status == Status.APPROVED and second.outcome == "allow"
    assert second.decided_by_label == "alice-approver,bob-approver"
    actions = list(
        AuditEvent.objects.filter(
            target_type="approvals.approvalrequest", target_id=str(request.pk)
        )
        .order_by("id")
        .values_list("action", flat=True)
    )
    assert actions == ["approval.requested", "approval.vote", "approval.approved"]


def test_one_reject_decides_and_needs_a_comment(tenant, agent, refunds, approver) -> None:  # type: ignore[no-untyped-def]
    request = open_request(tenant)
    with pytest.raises(ValidationError) as error:
        approval_decide(actor=approver, request=request, choice="reject", comment="  ")
    assert "comment" in error.value.message_dict
    rejected = approval_decide(
        actor=approver, request=request, choice="reject", comment="Not our order."
    )
    assert rejected.status == Status.REJECTED and rejected.outcome == "deny"
    assert rejected.comment == "Not our order."
    with pytest.raises(AlreadyDecided, match="already rejected by alice-approver"):
        approval_decide(actor=approver, request=request, choice="approve")


def test_the_requester_cannot_decide(tenant, agent, refunds, approver, approver2) -> None:  # type: ignore[no-untyped-def]
    request = open_request(tenant, requested_by="Alice-Approver")
    with pytest.raises(PermissionDenied, match="someone else"):
        approval_decide(actor=approver, request=request, choice="approve")
    approval_decide(actor=approver2, request=request, choice="approve")


def test_only_the_queue_s_approvers_decide(tenant, agent, refunds, approver, viewer, admin) -> None:  # type: ignore[no-untyped-def]
    outsider = make_user(Role.APPROVER, tenant, username="carol-approver")
    queue_create(
        actor=ACTOR,
        tenant=tenant,
        data={"name": "Mail", "match_tools": ["send_email"], "approvers": [outsider]},
    )
    mail = open_request(
        tenant, tool="send_email", arguments={"to": "a@example.com"}, idempotency_key="m1"
    )
    refund = open_request(tenant)
    with pytest.raises(PermissionDenied):
        approval_decide(actor=approver, request=mail, choice="approve")  # X cannot decide Y
    with pytest.raises(PermissionDenied):
        approval_decide(actor=outsider, request=refund, choice="approve")
    with pytest.raises(PermissionDenied):
        approval_decide(actor=viewer, request=refund, choice="approve")
    with pytest.raises(PermissionDenied):
        approval_decide(actor=ACTOR, request=refund, choice="approve")  # not a person
    assert approval_decide(actor=admin, request=mail, choice="approve").status == Status.APPROVED


def test_expiry_is_not_a_rejection(tenant, agent, refunds, approver) -> None:  # type: ignore[no-untyped-def]
    request = open_request(tenant)
    ApprovalRequest.objects.filter(pk=request.pk).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    assert approvals_sweep() == {"expired": 1, "escalated": 0}
    request.refresh_from_db()
    assert request.status == Status.EXPIRED and request.outcome == "deny"
    assert request.decided_by_label == "" and "timeout" in request.comment
    assert Alert.objects.filter(kind="approval.expired", subject_id=str(request.pk)).exists()
    assert AuditEvent.objects.filter(action="approval.expired", target_id=str(request.pk)).exists()
    assert approvals_sweep() == {"expired": 0, "escalated": 0}
    with pytest.raises(AlreadyDecided, match="expired"):
        approval_decide(actor=approver, request=request, choice="approve")


def test_a_runtime_reading_a_due_request_sees_it_expired_before_the_sweep(
    tenant, agent, refunds
) -> None:  # type: ignore[no-untyped-def]
    request = open_request(tenant)
    due = timezone.now() - timedelta(seconds=1)
    ApprovalRequest.objects.filter(pk=request.pk).update(expires_at=due)
    seen = approval_for_runtime(
        tenant_id=tenant.pk,
        environment_id=request.environment_id,
        token_agent_id=None,
        approval_id=request.pk,
    )
    assert seen is not None
    document, settled = runtime_document(seen)
    assert settled and document["status"] == "expired" and document["outcome"] == "deny"
    assert ApprovalRequest.objects.get(pk=request.pk).status == Status.PENDING  # read only
    approvals_sweep()
    recorded, _ = runtime_document(ApprovalRequest.objects.get(pk=request.pk))
    assert recorded == {**document, "version": recorded["version"]}  # the sweep says the same


def test_a_failing_request_costs_the_sweep_only_itself(tenant, agent, refunds, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from apps.approvals.services import requests as module

    first, second = open_request(tenant), open_request(tenant, idempotency_key="k2")
    ApprovalRequest.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    real = module.approval_expire

    def flaky(*, request_id: int) -> bool:
        if request_id == first.pk:
            raise RuntimeError("boom")
        return real(request_id=request_id)

    monkeypatch.setattr(module, "approval_expire", flaky)
    assert approvals_sweep()["expired"] == 1
    assert ApprovalRequest.objects.get(pk=second.pk).status == Status.EXPIRED


def test_escalation_moves_the_request(tenant, agent, approver, approver2) -> None:  # type: ignore[no-untyped-def]
    managers = queue_create(
        actor=ACTOR,
        tenant=tenant,
        data={"name": "Managers", "approvers": [approver2], "position": 500},
    )
    queue_create(
        actor=ACTOR,
        tenant=tenant,
        data={
            "name": "Refunds",
            "match_tools": ["issue_refund"],
            "position": 1,
            "escalate_after_s": 600,
            "escalate_to": managers,
            "approvers": [approver],
        },
    )
    request = open_request(tenant)
    assert request.queue.name == "Refunds" and request.escalate_at is not None
    assert approvals_sweep() == {"expired": 0, "escalated": 0}
    ApprovalRequest.objects.filter(pk=request.pk).update(
        escalate_at=timezone.now() - timedelta(seconds=1)
    )
    assert approvals_sweep() == {"expired": 0, "escalated": 1}
    request.refresh_from_db()
    assert request.queue == managers and request.escalated_from.name == "Refunds"
    assert request.status == Status.PENDING and request.escalate_at is None
    with pytest.raises(PermissionDenied):
        approval_decide(actor=approver, request=request, choice="approve")


def test_a_queue_a_request_escalated_from_is_kept_for_the_record(tenant, agent, operator) -> None:  # type: ignore[no-untyped-def]
    managers = queue_create(actor=ACTOR, tenant=tenant, data={"name": "Managers", "position": 500})
    refunds = queue_create(
        actor=ACTOR,
        tenant=tenant,
        data={
            "name": "Refunds",
            "match_tools": ["issue_refund"],
            "position": 1,
            "escalate_after_s": 600,
            "escalate_to": managers,
        },
    )
    request = open_request(tenant)
    ApprovalRequest.objects.filter(pk=request.pk).update(
        escalate_at=timezone.now() - timedelta(seconds=1)
    )
    assert approvals_sweep()["escalated"] == 1
    # nothing routes there any more, but it held the request before its escalation
    queue_update(
        actor=ACTOR,
        queue=refunds,
        data={**refunds.snapshot(), "escalate_to": None, "escalate_after_s": None},
    )

    with pytest.raises(QueueInUse):
        queue_delete(actor=operator, queue=refunds)

    request.refresh_from_db()
    assert request.escalated_from == refunds
    assert ApprovalQueue.objects.filter(pk=refunds.pk).exists()


def test_queue_rules_refuse_a_loop_and_unknown_names(tenant, agent) -> None:  # type: ignore[no-untyped-def]
    a = queue_create(actor=ACTOR, tenant=tenant, data={"name": "A"})
    b = queue_create(
        actor=ACTOR, tenant=tenant, data={"name": "B", "escalate_to": a, "escalate_after_s": 60}
    )
    from apps.approvals.services import queue_update

    with pytest.raises(ValidationError) as error:
        queue_update(
            actor=ACTOR, queue=a, data={"name": "A", "escalate_to": b, "escalate_after_s": 60}
        )
    assert "escalate_to" in error.value.message_dict
    with pytest.raises(ValidationError) as error:
        queue_create(
            actor=ACTOR,
            tenant=tenant,
            data={
                "name": "a",
                "match_agents": ["nobody"],
                "match_risks": ["huge"],
                "timeout_s": 5,
                "approvers": [make_user(Role.VIEWER, tenant)],
            },
        )
    assert set(error.value.message_dict) == {
        "match_agents",
        "match_risks",
        "timeout_s",
        "approvers",
    }


def _decide_at_once(
    request: ApprovalRequest, deciders: list[tuple[Any, str]]
) -> tuple[list[str], list[str]]:
    """Each (user, choice) decides ``request`` in its own thread, released together: the
    usernames that won and the messages the others were told."""
    barrier = threading.Barrier(len(deciders))
    won: list[str] = []
    told: list[str] = []
    lock = threading.Lock()

    def decide(user: Any, choice: str) -> None:
        try:
            barrier.wait()
            approval_decide(actor=user, request=request, choice=choice, comment="mine")
            with lock:
                won.append(user.username)
        except AlreadyDecided as exc:
            with lock:
                told.append(str(exc))
        finally:
            connection.close()

    threads = [threading.Thread(target=decide, args=pair) for pair in deciders]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return won, told


@pytest.mark.django_db(transaction=True)
def test_two_approvers_at_once_exactly_one_wins(tenant, agent, approver, approver2) -> None:  # type: ignore[no-untyped-def]
    postgresql_only()
    queue_create(
        actor=ACTOR,
        tenant=tenant,
        data={"name": "Mail", "match_tools": ["send_email"], "approvers": [approver, approver2]},
    )
    for round_ in range(5):
        request = open_request(
            tenant, tool="send_email", arguments={"n": round_}, idempotency_key=f"race-{round_}"
        )
        won, told = _decide_at_once(request, [(approver, "approve"), (approver2, "reject")])
        assert len(won) == 1 and len(told) == 1, (won, told)
        assert won[0] in told[0]  # the loser is told who decided
        request.refresh_from_db()
        assert request.votes.count() == 1
        assert request.status == (
            Status.APPROVED if won[0] == "alice-approver" else Status.REJECTED
        )


def _while_escalation_commits(request: ApprovalRequest, call: Any) -> dict[str, Any]:
    """Run ``call()`` on its own connection while another holds ``request``'s row lock for its
    escalation, and let the escalation commit once ``call`` waits for that lock."""
    locked, release, outcome = threading.Event(), threading.Event(), {}

    def escalate() -> None:
        try:
            with transaction.atomic():
                assert approval_escalate(request_id=request.pk)
                locked.set()
                release.wait(10)
        finally:
            connection.close()

    def waiting() -> None:
        try:
            outcome["result"] = call()
        except Exception as exc:  # handed to the test
            outcome["error"] = exc
        finally:
            connection.close()

    escalating = threading.Thread(target=escalate)
    escalating.start()
    assert locked.wait(10)
    caller = threading.Thread(target=waiting)
    caller.start()
    for _ in range(1000):  # until the call waits for the escalation's row lock
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM pg_locks WHERE NOT granted")
            if cursor.fetchone()[0]:
                break
        time.sleep(0.01)
    release.set()
    escalating.join(10)
    caller.join(10)
    return outcome


@pytest.mark.django_db(transaction=True)
def test_decide_cancel_expire_while_an_escalation_commits__act_on_the_moved_request(
    tenant, agent, approver, approver2
) -> None:  # type: ignore[no-untyped-def]
    postgresql_only()
    managers = queue_create(
        actor=ACTOR,
        tenant=tenant,
        data={"name": "Managers", "approvers": [approver, approver2], "position": 500},
    )
    queue_create(
        actor=ACTOR,
        tenant=tenant,
        data={
            "name": "Mail",
            "match_tools": ["send_email"],
            "position": 1,
            "escalate_after_s": 600,
            "escalate_to": managers,
            "approvers": [approver, approver2],
        },
    )

    def due(key: str, **changes: Any) -> ApprovalRequest:
        request = open_request(tenant, tool="send_email", arguments={"k": key}, idempotency_key=key)
        ApprovalRequest.objects.filter(pk=request.pk).update(
            escalate_at=timezone.now() - timedelta(seconds=1), **changes
        )
        return request

    # An approver clicks at the moment the request moves to Managers, of which they are an
    # approver too; a runtime cancels at that moment; the read path expires a due one.
    approved = due("decide")
    decided = _while_escalation_commits(
        approved,
        lambda: approval_decide(actor=approver, request=approved, choice="approve", comment="ok"),
    )
    cancelled = due("cancel")
    withdrawn = _while_escalation_commits(
        cancelled,
        lambda: approval_cancel(
            tenant_id=tenant.pk,
            environment_id=cancelled.environment_id,
            token_agent_id=None,
            token_label="t",
            approval_id=cancelled.pk,
        ),
    )
    late = due("expire", expires_at=timezone.now() - timedelta(seconds=1))
    expired = _while_escalation_commits(late, lambda: approval_expire(request_id=late.pk))

    assert "error" not in decided, decided
    assert decided["result"].status == Status.APPROVED
    assert decided["result"].queue == managers
    assert "error" not in withdrawn, withdrawn
    assert withdrawn["result"].status == Status.CANCELLED
    assert "error" not in expired, expired
    assert expired["result"] is True
    late.refresh_from_db()
    assert late.status == Status.EXPIRED and late.queue == managers


def test_a_decision_after_the_timeout_is_refused_before_the_sweep(
    tenant, agent, refunds, approver
) -> None:  # type: ignore[no-untyped-def]
    request = open_request(tenant)
    ApprovalRequest.objects.filter(pk=request.pk).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    with pytest.raises(AlreadyDecided, match="expired"):
        approval_decide(actor=approver, request=request, choice="approve")
    assert approvals_sweep()["expired"] == 1


def test_naming_another_version_cannot_lower_the_stable_rating(tenant, agent, refunds) -> None:  # type: ignore[no-untyped-def]
    import copy

    from apps.bundles.services import bundle_version_push

    from .conftest import CONTRACT

    lenient = copy.deepcopy(CONTRACT)
    lenient["tools"][0]["risk"] = "read"  # issue_refund rated low in a version never deployed
    lenient["tools"].append(
        {
            "name": "new_tool",
            "description": "new.",
            "risk": "read",
            "parameters": {"type": "object"},
        }
    )
    v2 = bundle_version_push(actor=ACTOR, agent=agent, content=lenient, message="lenient").version
    refund = open_request(tenant, bundle_version=v2.number)
    assert refund.risk == "critical" and refund.approvals_required == 2
    assert any("stable in production" in line for line in refund.risk_summary)
    new = open_request(
        tenant,
        tool="new_tool",
        arguments={},
        bundle_version=v2.number,
        idempotency_key="new-1",
    )
    assert new.risk == "read"  # a candidate's new tool: the stable version says nothing of it


@pytest.mark.parametrize("archived", ["tenant", "agent", "environment"])
def test_archived_scope__approve_refused__reject_still_clears_it(  # type: ignore[no-untyped-def]
    tenant, agent, refunds, approver, archived: str
) -> None:
    admin = make_user(Role.ADMIN, tenant, username="ada-admin")
    request = open_request(tenant)
    if archived == "tenant":
        tenant_archive(actor=admin, tenant=tenant, reason="offboarded")
    elif archived == "agent":
        agent_archive(actor=admin, agent=agent, reason="retired")
    else:
        production = tenant.environments.get(slug="production")
        environment_archive(actor=admin, environment=production, reason="moved")
    audited = AuditEvent.objects.count()
    with pytest.raises(ValidationError) as refused:
        approval_decide(actor=approver, request=request, choice="approve", comment="ok")
    assert list(refused.value.message_dict) == [archived]
    assert "archived" in refused.value.message_dict[archived][0]
    request.refresh_from_db()
    assert (request.status, request.approvals) == (Status.PENDING, 0)
    assert AuditEvent.objects.count() == audited
    # a reject takes the action away: the approver can still clear the queue
    rejected = approval_decide(actor=approver, request=request, choice="reject", comment="no")
    assert rejected.status == Status.REJECTED
    # decided: an approval now is told so (409), not that the scope is archived
    with pytest.raises(AlreadyDecided):
        approval_decide(actor=approver, request=request, choice="approve", comment="late")
