"""The runtime API of approvals over HTTP through the real ASGI application (fast path): open
(idempotent), long-poll a decision, cancel, scope, the session limit, and what the platform
computes from the contract."""

from __future__ import annotations

import threading
import time

import pytest

from apps.approvals.models import ApprovalQueue, ApprovalRequest
from apps.approvals.services import approval_decide, queue_update

from .conftest import ACTOR, OPEN, Runtime, body

pytestmark = pytest.mark.django_db(transaction=True)


def test_open_is_idempotent_and_assessed(runtime: Runtime, refunds: ApprovalQueue) -> None:
    first = runtime.post(
        OPEN,
        body(
            arguments={"order_id": "A-1", "amount": 10, "card_number": "4111"},
            arguments_sha256="a" * 64,
        ),
    )
    assert first.status_code == 201, first.text
    document = first.json()
    assert document["status"] == "pending" and document["outcome"] is None
    assert document["risk"] == "critical" and document["approvals_required"] == 2
    assert document["queue"] == "Refunds"
    again = runtime.post(
        OPEN,
        body(
            arguments={"order_id": "A-1", "amount": 10, "card_number": "4111"},
            arguments_sha256="a" * 64,
        ),
    )
    assert again.status_code == 200 and again.json()["id"] == document["id"]
    request = ApprovalRequest.objects.get(pk=document["id"])
    assert request.arguments["card_number"] == "[redacted]"
    assert request.redacted == ["card_number"]
    assert any("two different approvers" in line for line in request.risk_summary)
    conflict = runtime.post(OPEN, body(arguments={"order_id": "A-2", "amount": 10}))
    assert conflict.status_code == 409
    assert "other arguments" in conflict.json()["detail"]


def test_hash_must_match_unredacted_arguments(runtime: Runtime, refunds: ApprovalQueue) -> None:
    wrong = runtime.post(OPEN, body(arguments_sha256="b" * 64))
    assert wrong.status_code == 400
    assert "arguments_sha256" in wrong.json()["errors"]
    assert not ApprovalRequest.objects.exists()


def test_long_poll_is_woken_by_the_decision(
    runtime: Runtime, refunds: ApprovalQueue, approver, approver2
) -> None:  # type: ignore[no-untyped-def]
    opened = runtime.post(
        OPEN, body(tool="send_email", arguments={"to": "x@example.com"}, idempotency_key="k-mail")
    ).json()
    assert opened["risk"] == "write" and opened["approvals_required"] == 1
    queue = ApprovalQueue.objects.get(pk=ApprovalQueue.objects.get(is_default=True).pk)
    queue_update(
        actor=ACTOR,
        queue=queue,
        data={**queue.snapshot(), "escalate_to": None, "approvers": [approver]},
    )
    answers: list[dict] = []

    def wait() -> None:
        answers.append(runtime.get(f"{OPEN}/{opened['id']}?wait=20", timeout=30).json())

    waiter = threading.Thread(target=wait)
    started = time.monotonic()
    waiter.start()
    time.sleep(0.5)
    approval_decide(
        actor=approver,
        request=ApprovalRequest.objects.get(pk=opened["id"]),
        choice="approve",
        comment="fine",
    )
    waiter.join(timeout=25)
    assert answers and answers[0]["status"] == "approved" and answers[0]["outcome"] == "allow"
    assert answers[0]["decided_by"] == ["alice-approver"]
    assert time.monotonic() - started < 15  # woken, not timed out (a generous bound)


def test_long_poll_of_the_id_spelled_with_leading_zeros__waits_on_the_requests_own_key() -> None:
    from apps.core.events import APPROVAL_CHANGED
    from apps.core.fastpath.registry import TokenScope, WaitRoute, registry

    matched = registry.match(f"{OPEN}/0017")
    assert matched is not None
    route, params = matched
    assert isinstance(route, WaitRoute)
    scope = TokenScope(token_id=1, tenant_id=1, environment_id=1, agent_id=None)
    # /0017 reads request 17; the change of request 17 is announced under the key "17"
    # (``announce``): a wait keyed "0017" would hear nothing until its re-read.
    assert (route.topic, route.topic_key(scope, params)) == (APPROVAL_CHANGED, "17")


def test_wait_returns_pending_at_the_end_and_404_outside_scope(
    runtime: Runtime, refunds: ApprovalQueue
) -> None:
    opened = runtime.post(OPEN, body()).json()
    pending = runtime.get(f"{OPEN}/{opened['id']}?wait=0.3")
    assert pending.status_code == 200 and pending.json()["status"] == "pending"
    assert runtime.get(f"{OPEN}/999999").status_code == 404
    assert runtime.get(f"{OPEN}/abc").status_code == 404
    assert runtime.get(f"{OPEN}/{opened['id']}?wait=61").status_code == 400


def test_cancel(runtime: Runtime, refunds: ApprovalQueue) -> None:
    opened = runtime.post(OPEN, body()).json()
    cancelled = runtime.post(f"{OPEN}/{opened['id']}/cancel", {"reason": "user left"})
    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "cancelled" and cancelled.json()["outcome"] == "deny"
    again = runtime.post(f"{OPEN}/{opened['id']}/cancel", b"")
    assert again.status_code == 200 and again.json()["status"] == "cancelled"


def test_session_limit(runtime: Runtime, refunds: ApprovalQueue) -> None:
    queue_update(
        actor=ACTOR,
        queue=refunds,
        data={**refunds.snapshot(), "escalate_to": None, "max_open_per_session": 2},
    )
    for index in range(2):
        assert runtime.post(OPEN, body(idempotency_key=f"k{index}")).status_code == 201
    refused = runtime.post(OPEN, body(idempotency_key="k3"))
    assert refused.status_code == 429 and refused.headers["Retry-After"] == "30"
    assert "sess-1" in refused.json()["detail"] and "limit is 2" in refused.json()["detail"]
    other = runtime.post(OPEN, body(idempotency_key="k4", session_id="sess-2"))
    assert other.status_code == 201


def test_expiry_reaches_the_runtime_as_deny(runtime: Runtime, refunds: ApprovalQueue) -> None:
    from datetime import timedelta

    from django.utils import timezone

    from apps.approvals.services import approvals_sweep

    opened = runtime.post(OPEN, body()).json()
    ApprovalRequest.objects.filter(pk=opened["id"]).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    approvals_sweep()
    seen = runtime.get(f"{OPEN}/{opened['id']}?wait=5").json()
    assert seen["status"] == "expired" and seen["outcome"] == "deny"
    assert seen["decided_by"] == []


def test_the_requesting_runtime_cannot_decide(runtime: Runtime, refunds: ApprovalQueue) -> None:
    import requests

    opened = runtime.post(OPEN, body()).json()
    for path in (f"/api/v1/approvals/{opened['id']}/decide/", "/api/v1/approvals/decide/"):
        answer = requests.post(
            runtime.base + path,
            json={"decision": "approve", "ids": [opened["id"]]},
            headers={"Authorization": f"Bearer {runtime.raw}"},
            timeout=10,
        )
        assert answer.status_code in (401, 403), (path, answer.status_code)
    assert runtime.post(f"{OPEN}/{opened['id']}/approve", {}).status_code in (404, 405)
    assert ApprovalRequest.objects.get(pk=opened["id"]).status == "pending"


def test_the_redaction_marker_only_where_the_contract_says(
    runtime: Runtime, refunds: ApprovalQueue
) -> None:
    # card_number is sensitive in the contract: expected; amount is not: hiding it is refused
    ok = runtime.post(
        OPEN,
        body(
            arguments={"order_id": "A-1", "amount": 5, "card_number": "[redacted]"},
            arguments_sha256="c" * 64,
            idempotency_key="m1",
        ),
    )
    assert ok.status_code == 201, ok.text
    for arguments in (
        {"order_id": "A-1", "amount": "[redacted]"},
        {"order_id": "A-1", "amount": 5, "notes": ["fine", "[redacted]"]},
        {"order_id": "A-1", "amount": 5, "meta": {"card_number": "[redacted]"}},
    ):
        refused = runtime.post(
            OPEN, body(arguments=arguments, arguments_sha256="d" * 64, idempotency_key="m2")
        )
        assert refused.status_code == 400, (arguments, refused.text)
        assert "sensitive" in refused.json()["errors"]["arguments"][0]
    assert ApprovalRequest.objects.count() == 1
