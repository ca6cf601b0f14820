"""Approvals in the reference runtime (issue 14): the request body (hash of the canonical full
arguments, sensitive arguments redacted), the answers parsed strictly, ``Runtime.approval_*``
against the fake control plane (idempotent retries, 429, long-poll chunks, retries, a push
waking a wait), and the guarded tool call: only approved, unchanged arguments are executed."""

from __future__ import annotations

import copy
import hashlib
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests

from dataplane.approvals import (
    REDACTED,
    Approval,
    ApprovalConflict,
    ApprovalError,
    ApprovalRefused,
    ApprovalUnavailable,
    approval_json,
    arguments_sha256,
    build_request,
    derive_idempotency_key,
    parse_approval,
    redact,
)
from dataplane.canonical import CanonicalError
from dataplane.client import Backoff, Runtime
from dataplane.gate import (
    ApprovalDenied,
    ApprovalGate,
    ApprovalMismatch,
    ApprovalNotOpened,
    ApprovalTimedOut,
    GuardDenied,
    ToolCallRefused,
)
from dataplane.guardrails import RequestContext, RequestGuard
from dataplane.simulate import Fleet
from dataplane.simulate.agent import ESCALATED, REJECTED
from dataplane.webhook import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    ApprovalPush,
    Push,
    PushReceiver,
    PushRejected,
    PushVerifier,
    push_key,
    sign_push,
)

from ..waiting import eventually
from .bundles import refund_agent
from .conftest import snapshot_content
from .fake_control_plane import TOKEN, WAIT, FakeControlPlane

AGENT = "refund-agent"
SESSION = "session-7"
ARGS: dict[str, Any] = {
    "order_id": "A00000001",
    "amount": 250.0,
    "currency": "EUR",
    "payment_reference": "PAY-4242-SECRET",
}
SHA = "a" * 64


def refund_bundle() -> dict[str, Any]:
    """The test refund agent with issue_refund needing a human and a sensitive argument."""
    bundle = refund_agent()
    refund = bundle["tools"][2]
    refund["requires_approval"] = True
    refund["sensitive_args"] = ["payment_reference"]
    refund["parameters"]["properties"]["payment_reference"] = {"type": "string"}
    return bundle


def refund_snapshot(revision: int = 1, **options: Any) -> dict[str, Any]:
    content = snapshot_content(revision, bundle=refund_bundle(), **options)
    content["agents"] = {AGENT: content["agents"]["support-bot"]}
    return content


@pytest.fixture
def plane(control_plane: FakeControlPlane) -> FakeControlPlane:
    control_plane.publish(refund_snapshot())
    return control_plane


@pytest.fixture
def runtime(plane: FakeControlPlane) -> Iterator[Runtime]:
    runtime = Runtime(plane.url, TOKEN, "approvals-test", backoff=Backoff(0.01, 0.05))
    runtime.sync_once()
    yield runtime
    runtime.stop()


def guard(runtime: Runtime, role: str = "customer") -> RequestGuard:
    return runtime.guard(AGENT, SESSION, RequestContext(end_user_role=role, tenant="acme"))


def approval_doc(**overrides: Any) -> dict[str, Any]:
    document: dict[str, Any] = {
        "id": 17,
        "status": "pending",
        "outcome": None,
        "tool": "issue_refund",
        "arguments_sha256": SHA,
        "risk": "critical",
        "queue": "Refunds",
        "session_id": SESSION,
        "idempotency_key": "k",
        "approvals_required": 2,
        "approvals": 1,
        "created_at": "2026-12-05T07:30:00+00:00",
        "expires_at": "2026-12-05T08:30:00Z",
        "decided_at": None,
        "decided_by": [],
        "comment": "",
        "version": 3,
    }
    document.update(overrides)
    return document


def decide_when(plane: FakeControlPlane, predicate: Any, status: str, **options: Any) -> None:
    """In the background: once ``predicate()`` holds, decide request 1."""

    def run() -> None:
        assert plane.wait_for(predicate)
        plane.decide(1, status, **options)

    threading.Thread(target=run, daemon=True).start()


# -- the request body ------------------------------------------------------------------------


def test_arguments_sha256__sha256_of_rfc8785_canonical_json() -> None:
    canonical = b'{"amount":250,"currency":"EUR","order_id":"A00000001"}'

    digest = arguments_sha256({"order_id": "A00000001", "currency": "EUR", "amount": 250.0})

    assert digest == hashlib.sha256(canonical).hexdigest()
    # Key order and number spelling are not content; values are.
    assert digest == arguments_sha256({"amount": 250, "currency": "EUR", "order_id": "A00000001"})
    assert digest != arguments_sha256(
        {"amount": 250.01, "currency": "EUR", "order_id": "A00000001"}
    )


def test_arguments_sha256__not_json__refused() -> None:
    with pytest.raises(CanonicalError):
        arguments_sha256({"amount": float("nan")})
    with pytest.raises(CanonicalError):
        arguments_sha256({"when": datetime.now(UTC)})


def test_build_request__sensitive_redacted__hash_over_the_full_arguments() -> None:
    body = build_request(
        agent=AGENT,
        tool="issue_refund",
        arguments=ARGS,
        session_id=SESSION,
        sensitive=["payment_reference", "card_number"],
    )

    assert body["arguments"] == {**ARGS, "payment_reference": REDACTED}
    assert "card_number" not in body["arguments"]  # absent stays absent
    assert body["arguments_sha256"] == arguments_sha256(ARGS)
    assert body["arguments_sha256"] != arguments_sha256(body["arguments"])
    assert redact(ARGS, ()) == ARGS


def test_build_request__bounds__model_text_cut_identity_and_enums_refused() -> None:
    excerpt = [{"role": "user", "content": f"turn {n} " + "x" * 3000} for n in range(25)]

    body = build_request(
        agent=AGENT,
        tool="issue_refund",
        arguments=ARGS,
        session_id=SESSION,
        reason="r" * 5000,
        rule="q" * 500,
        excerpt=excerpt,
    )

    assert len(body["reason"]) == 2000 and len(body["rule"]) == 200
    assert len(body["excerpt"]) == 20
    assert body["excerpt"][-1]["content"].startswith("turn 24")  # the most recent kept
    assert all(len(turn["content"]) == 2000 for turn in body["excerpt"])
    common: dict[str, Any] = {"agent": AGENT, "tool": "issue_refund", "arguments": ARGS}
    for bad in (
        {"session_id": "has space"},
        {"session_id": SESSION, "idempotency_key": "x" * 129},
        {"session_id": SESSION, "risk": "extreme"},
        {"session_id": SESSION, "excerpt": [{"role": "narrator", "content": "hi"}]},
        {"session_id": SESSION, "requested_by": "u" * 255},
        {"session_id": SESSION, "bundle_version": 0},
        {"session_id": SESSION, "request_id": "req 1"},
        {"session_id": SESSION, "runtime_id": "pod/ 1"},
    ):
        with pytest.raises(ValueError):
            build_request(**common, **bad)


def test_build_request__body_over_64_kib__oldest_turns_dropped() -> None:
    # 2,000 characters of "é" are 12,000 bytes on the wire (JSON escapes them): 20 such
    # turns do not fit in 64 KiB.
    excerpt = [{"role": "user", "content": f"{n} " + "é" * 1990} for n in range(20)]

    body = build_request(
        agent=AGENT, tool="issue_refund", arguments=ARGS, session_id=SESSION, excerpt=excerpt
    )

    assert len(json.dumps(body).encode()) <= 64 * 1024
    assert 0 < len(body["excerpt"]) < 20
    assert body["excerpt"][-1]["content"].startswith("19 ")  # the most recent kept


def test_build_request__arguments_over_16_kib__refused_before_sending() -> None:
    with pytest.raises(ValueError, match="16 KiB"):
        build_request(
            agent=AGENT,
            tool="issue_refund",
            arguments={"order_id": "A00000001", "notes": "n" * 17_000},
            session_id=SESSION,
        )
    # Measured as sent: a large sensitive argument is redacted first.
    body = build_request(
        agent=AGENT,
        tool="issue_refund",
        arguments={"order_id": "A00000001", "scan": "n" * 17_000},
        session_id=SESSION,
        sensitive=["scan"],
    )
    assert body["arguments"]["scan"] == REDACTED


def test_redact__dotted_paths__nested_values_replaced_caller_untouched() -> None:
    arguments = {"card": {"number": "4111", "holder": "Ann"}, "amount": 3, "note": "x"}

    shown = redact(arguments, ["card.number", "note", "card.missing", "amount.deep"])

    assert shown == {"card": {"number": REDACTED, "holder": "Ann"}, "amount": 3, "note": REDACTED}
    assert arguments["card"]["number"] == "4111"


def test_build_request__control_characters__cleaned_in_text_refused_in_identity() -> None:
    body = build_request(
        agent=AGENT,
        tool="issue_refund",
        arguments=ARGS,
        session_id=SESSION,
        reason="line one\nline\x00two\x1b[31m",
        excerpt=[{"role": "user", "content": "bell\x07"}],
    )

    assert body["reason"] == "line one\nline\ufffdtwo\ufffd[31m"
    assert body["excerpt"][0]["content"] == "bell\ufffd"
    with pytest.raises(ValueError, match="control"):
        build_request(
            agent=AGENT,
            tool="issue_refund",
            arguments=ARGS,
            session_id=SESSION,
            requested_by="eve\x00@example.com",
        )


def test_derive_idempotency_key__deterministic__discriminator_separates() -> None:
    first = derive_idempotency_key(
        session_id=SESSION, tool="issue_refund", arguments_sha256=SHA, discriminator="req-1:0"
    )

    assert first == derive_idempotency_key(
        session_id=SESSION, tool="issue_refund", arguments_sha256=SHA, discriminator="req-1:0"
    )
    assert first != derive_idempotency_key(
        session_id=SESSION, tool="issue_refund", arguments_sha256=SHA, discriminator="req-1:1"
    )
    assert first != derive_idempotency_key(
        session_id="session-8", tool="issue_refund", arguments_sha256=SHA, discriminator="req-1:0"
    )
    assert len(first) <= 128 and first.startswith("dp:")


# -- the answers -----------------------------------------------------------------------------


def test_parse_approval__documented_shape__typed_and_frozen() -> None:
    approval = parse_approval(
        approval_doc(
            status="approved",
            outcome="allow",
            decided_at="2026-12-05T07:41:00+00:00",
            decided_by=["alice", "bob"],
            comment="ok, verified the order",
        )
    )

    assert approval == Approval(
        id=17,
        status="approved",
        outcome="allow",
        tool="issue_refund",
        arguments_sha256=SHA,
        risk="critical",
        expires_at=datetime(2026, 12, 5, 8, 30, tzinfo=UTC),
        created_at=datetime(2026, 12, 5, 7, 30, tzinfo=UTC),
        decided_at=datetime(2026, 12, 5, 7, 41, tzinfo=UTC),
        queue="Refunds",
        session_id=SESSION,
        idempotency_key="k",
        approvals_required=2,
        approvals=1,
        decided_by=("alice", "bob"),
        comment="ok, verified the order",
        version=3,
    )
    assert approval.allowed and approval.final and not approval.pending
    assert "approved by alice, bob: ok, verified the order" in approval.describe()
    assert parse_approval(approval_json(approval)) == approval
    with pytest.raises(AttributeError):
        approval.status = "rejected"  # type: ignore[misc]


@pytest.mark.parametrize(
    "overrides",
    [
        {"status": "approved", "outcome": "deny"},
        {"status": "approved", "outcome": None},
        {"status": "rejected", "outcome": "allow"},
        {"status": "expired", "outcome": None},
        {"status": "pending", "outcome": "allow"},
        {"status": "maybe"},
        {"id": "17"},
        {"arguments_sha256": "A" * 64},
        {"arguments_sha256": SHA[:-1]},
        {"expires_at": "2026-12-05T08:30:00"},
        {"expires_at": None},
        {"tool": ""},
        {"decided_by": "alice"},
    ],
    ids=lambda overrides: json.dumps(overrides)[:50],
)
def test_parse_approval__unsafe_or_malformed__refused(overrides: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        parse_approval(approval_doc(**overrides))


# -- Runtime.approval_request ------------------------------------------------------------------


def test_approval_request__redacts_the_served_contracts_sensitive_args(
    runtime: Runtime, plane: FakeControlPlane
) -> None:
    approval = runtime.approval_request(
        AGENT,
        "issue_refund",
        ARGS,
        session_id=SESSION,
        reason="customer owed a refund",
        excerpt=[{"role": "user", "content": "my order never came"}],
        risk="critical",
        rule="issue_refund requires approval",
        request_id="req-1",
        requested_by="carol@example.com",
        bundle_version=1,
    )

    (body,) = plane.approval_bodies
    assert body["arguments"]["payment_reference"] == REDACTED
    assert "PAY-4242" not in json.dumps(body)
    assert body["arguments_sha256"] == arguments_sha256(ARGS)
    assert body["idempotency_key"] == derive_idempotency_key(
        session_id=SESSION,
        tool="issue_refund",
        arguments_sha256=arguments_sha256(ARGS),
        discriminator="req-1\x00",  # the request id tells this request's call apart
    )
    assert {k: body[k] for k in ("agent", "tool", "session_id", "risk", "request_id")} == {
        "agent": AGENT,
        "tool": "issue_refund",
        "session_id": SESSION,
        "risk": "critical",
        "request_id": "req-1",
    }
    assert body["requested_by"] == "carol@example.com" and body["bundle_version"] == 1
    assert body["runtime_id"] == "approvals-test"  # the decision is pushed to this runtime
    assert (approval.id, approval.status, approval.outcome) == (1, "pending", None)
    assert approval.arguments_sha256 == arguments_sha256(ARGS)


def test_approval_request__retry_after_lost_answer__same_request(
    runtime: Runtime, plane: FakeControlPlane
) -> None:
    first = runtime.approval_request(AGENT, "issue_refund", ARGS, session_id=SESSION)
    # The same call again (its answer lost, say), keys in another order: the same request.
    again = runtime.approval_request(
        AGENT, "issue_refund", dict(reversed(list(ARGS.items()))), session_id=SESSION
    )
    other = runtime.approval_request(
        AGENT, "issue_refund", ARGS, session_id=SESSION, discriminator="second refund"
    )

    assert again.id == first.id
    assert other.id != first.id
    assert len(plane.approvals) == 2


def test_approval_request__key_reused_for_other_arguments__conflict(
    runtime: Runtime,
) -> None:
    runtime.approval_request(AGENT, "issue_refund", ARGS, session_id=SESSION, idempotency_key="k1")

    with pytest.raises(ApprovalConflict) as refused:
        runtime.approval_request(
            AGENT,
            "issue_refund",
            {**ARGS, "amount": 9.0},
            session_id=SESSION,
            idempotency_key="k1",
        )

    assert refused.value.status == 409


def test_approval_request__session_limit_429__refused_with_the_servers_detail(
    runtime: Runtime, plane: FakeControlPlane
) -> None:
    plane.approval_limit = 1
    runtime.approval_request(AGENT, "issue_refund", ARGS, session_id=SESSION)

    with pytest.raises(ApprovalRefused) as refused:
        runtime.approval_request(AGENT, "issue_refund", {**ARGS, "amount": 300}, session_id=SESSION)

    assert refused.value.status == 429
    assert refused.value.retry_after_s == 30
    assert "Session session-7 already has 1 open approval requests" in refused.value.detail
    assert "queue Refunds" in str(refused.value)


def test_approval_request__refused__error_not_retried(
    runtime: Runtime, plane: FakeControlPlane
) -> None:
    plane.approval_agents = {"support-bot"}  # the token's scope

    with pytest.raises(ApprovalError) as refused:
        runtime.approval_request(AGENT, "issue_refund", ARGS, session_id=SESSION)

    assert refused.value.status == 404 and "not in scope" in refused.value.detail
    assert not isinstance(refused.value, ApprovalUnavailable)
    assert len(plane.approval_bodies) == 1
    # What the contract refuses is refused before anything is sent.
    with pytest.raises(ValueError):
        runtime.approval_request(
            AGENT, "issue_refund", ARGS, session_id=SESSION, idempotency_key="no spaces"
        )
    assert len(plane.approval_bodies) == 1


def test_approval_request__unreachable__unavailable_after_retries() -> None:
    runtime = Runtime("http://127.0.0.1:9", TOKEN, "approvals-down", backoff=Backoff(0.01, 0.02))
    try:
        with pytest.raises(ApprovalUnavailable):
            runtime.approval_request(AGENT, "issue_refund", ARGS, session_id=SESSION, timeout_s=0.2)
    finally:
        runtime.stop()


# -- Runtime.approval_wait / approval_cancel -----------------------------------------------------


def test_approval_wait__decided_while_parked__returns_the_decision(
    runtime: Runtime, plane: FakeControlPlane
) -> None:
    approval = runtime.approval_request(AGENT, "issue_refund", ARGS, session_id=SESSION)
    decide_when(plane, lambda: plane.approval_polls, "rejected", comment="not owed")

    decided = runtime.approval_wait(approval.id, timeout_s=WAIT)

    assert (decided.status, decided.outcome, decided.comment) == ("rejected", "deny", "not owed")
    assert decided.decided_by == ("alice",)


def test_approval_wait__long_poll_in_chunks_of_at_most_30_s(
    runtime: Runtime, plane: FakeControlPlane
) -> None:
    plane.park_cap_s = 0  # answers "pending" at once: the chunks asked for are what counts
    approval = runtime.approval_request(AGENT, "issue_refund", ARGS, session_id=SESSION)
    decide_when(plane, lambda: len(plane.approval_polls) >= 2, "approved")

    decided = runtime.approval_wait(approval.id, timeout_s=95)

    waits = [wait for _, wait in plane.approval_polls]
    assert decided.status == "approved"
    assert waits[0] == 30 and all(0 <= wait <= 30 for wait in waits)

    plane.approvals.clear()
    plane.approval_polls.clear()
    short = runtime.approval_request(AGENT, "issue_refund", ARGS, session_id=SESSION)

    pending = runtime.approval_wait(short.id, timeout_s=2)

    assert pending.status == "pending" and pending.outcome is None
    assert plane.approval_polls[0] == (short.id, 2)
    assert all(wait <= 2 for _, wait in plane.approval_polls)


def test_approval_wait__network_failures__retried_with_backoff(
    runtime: Runtime, plane: FakeControlPlane
) -> None:
    approval = runtime.approval_request(AGENT, "issue_refund", ARGS, session_id=SESSION)
    plane.failing_polls = 3
    plane.decide(approval.id, "approved")

    decided = runtime.approval_wait(approval.id, timeout_s=WAIT)

    assert decided.status == "approved"
    assert len(plane.approval_polls) == 4


def test_approval_wait__unknown_id__error_not_retried(runtime: Runtime) -> None:
    with pytest.raises(ApprovalError) as refused:
        runtime.approval_wait(999, timeout_s=WAIT)

    assert refused.value.status == 404
    assert not isinstance(refused.value, ApprovalUnavailable)


def test_approval_wait__control_plane_gone__unavailable_at_the_timeout(
    runtime: Runtime, plane: FakeControlPlane
) -> None:
    approval = runtime.approval_request(AGENT, "issue_refund", ARGS, session_id=SESSION)
    plane.stop()

    with pytest.raises(ApprovalUnavailable):
        runtime.approval_wait(approval.id, timeout_s=0.3)


def test_approval_cancel__pending_cancelled__final_state_unchanged(
    runtime: Runtime, plane: FakeControlPlane
) -> None:
    first = runtime.approval_request(AGENT, "issue_refund", ARGS, session_id=SESSION)
    second = runtime.approval_request(
        AGENT, "issue_refund", ARGS, session_id=SESSION, discriminator="2"
    )
    plane.decide(second.id, "approved")

    cancelled = runtime.approval_cancel(first.id, reason="the customer withdrew")
    kept = runtime.approval_cancel(second.id)

    assert (cancelled.status, cancelled.outcome) == ("cancelled", "deny")
    assert plane.cancel_bodies == [{"reason": "the customer withdrew"}, {}]
    assert (kept.status, kept.outcome) == ("approved", "allow")


# -- the webhook form ------------------------------------------------------------------------


def signed(body: bytes, token: str = TOKEN, timestamp: int | None = None) -> dict[str, str]:
    stamp = int(time.time()) if timestamp is None else timestamp
    return {
        TIMESTAMP_HEADER: str(stamp),
        SIGNATURE_HEADER: sign_push(key=push_key(token), timestamp=stamp, body=body),
        "Content-Type": "application/json",
    }


def decided_push(approval: dict[str, Any]) -> bytes:
    return json.dumps({"type": "approval.decided", "approval": approval}).encode()


def test_push_verifier__approval_decided__parsed_pending_or_revision_kinds_kept_apart() -> None:
    verifier = PushVerifier(TOKEN)
    body = decided_push(approval_doc(status="approved", outcome="allow", decided_by=["alice"]))

    push = verifier.verify_message(signed(body), body)

    assert isinstance(push, ApprovalPush)
    assert push.approval.status == "approved" and push.approval.id == 17
    pending = decided_push(approval_doc())
    with pytest.raises(PushRejected, match="still pending"):
        verifier.verify_message(signed(pending), pending)
    forged = decided_push(approval_doc(status="approved", outcome="deny"))
    with pytest.raises(PushRejected, match="not an approval decision"):
        verifier.verify_message(signed(forged), forged)
    other = decided_push(approval_doc(id=18, status="rejected", outcome="deny"))
    with pytest.raises(PushRejected, match="not a revision announcement"):
        verifier.verify(signed(other), other)
    revision = b'{"tenant": "acme", "environment": "production", "revision": 4}'
    assert verifier.verify_message(signed(revision), revision) == Push("acme", "production", 4)


def test_approval_wait__signed_push__wakes_the_wait_at_once(
    runtime: Runtime, plane: FakeControlPlane
) -> None:
    url = runtime.serve_push()
    approval = runtime.approval_request(AGENT, "issue_refund", ARGS, session_id=SESSION)
    plane.park_cap_s = 60  # the long-poll alone would hold the wait far beyond the test's
    result: dict[str, Approval] = {}
    waiter = threading.Thread(
        target=lambda: result.setdefault("approval", runtime.approval_wait(approval.id, 60))
    )
    waiter.start()
    assert plane.wait_for(lambda: plane.approval_polls)
    decision = {
        **approval_json(approval),
        "status": "approved",
        "outcome": "allow",
        "decided_by": ["alice"],
        "version": approval.version + 1,
    }
    body = decided_push(decision)

    forged = requests.post(url, data=body, headers=signed(body, token="someone-else"), timeout=5)
    assert forged.status_code == 401
    accepted = requests.post(url, data=body, headers=signed(body), timeout=5)
    waiter.join(WAIT)

    assert accepted.status_code == 204
    assert not waiter.is_alive()
    assert result["approval"].status == "approved"
    assert plane.approvals[approval.id]["status"] == "pending"  # the push, not the poll, said so
    # A wait that starts after the push finds it without asking.
    polls = len(plane.approval_polls)
    assert runtime.approval_wait(approval.id, 60).status == "approved"
    assert len(plane.approval_polls) == polls


# -- the guarded tool call -----------------------------------------------------------------------


class Tool:
    """A tool that records what it was asked to execute."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def __call__(self, arguments: dict[str, Any]) -> str:
        self.calls.append(copy.deepcopy(arguments))
        return f"refunded {arguments['amount']}"


def test_gate__allowed_call__executed_at_once_without_a_request(
    runtime: Runtime, plane: FakeControlPlane
) -> None:
    result = runtime.call_tool_with_approval(
        guard(runtime), "lookup_order", {"order_id": "A00000001"}, lambda args: args["order_id"]
    )

    assert result == "A00000001"
    assert plane.approval_bodies == []


def test_gate__approved__executes_the_approved_arguments_once(
    runtime: Runtime, plane: FakeControlPlane
) -> None:
    tool = Tool()
    request_guard = guard(runtime)
    arguments = copy.deepcopy(ARGS)

    def approve_after_a_change() -> None:
        assert plane.wait_for(lambda: plane.approval_polls)
        arguments["amount"] = 4999.0  # the caller's mapping changes while the human looks
        plane.decide(1, "approved", decided_by=("alice", "bob"))

    threading.Thread(target=approve_after_a_change, daemon=True).start()
    result = runtime.call_tool_with_approval(
        request_guard,
        "issue_refund",
        arguments,
        tool,
        confidence=0.9,
        reason="order never arrived",
        request_id="req-9",
    )

    assert result == "refunded 250.0"
    assert tool.calls == [ARGS]  # exactly what was hashed and approved
    (body,) = plane.approval_bodies
    assert body["reason"] == "order never arrived" and body["rule"].startswith("issue_refund")
    assert body["risk"] == "critical" and body["bundle_version"] == 1
    subject, last = request_guard.decisions[-1]
    assert subject == "issue_refund" and last.allowed and "after approval" in last.reason


def test_gate__same_call_in_a_later_request_of_the_session__needs_its_own_approval(
    runtime: Runtime, plane: FakeControlPlane
) -> None:
    tool = Tool()
    decide_when(plane, lambda: plane.approval_polls, "approved", decided_by=("alice", "bob"))
    runtime.call_tool_with_approval(
        guard(runtime), "issue_refund", ARGS, tool, confidence=0.9, request_id="req-1"
    )
    assert tool.calls == [ARGS]

    # The customer's next message in the same conversation: the agent asks for the very same
    # refund again. The first approval was for the first call; this one waits for a human.
    with pytest.raises(ApprovalTimedOut):
        runtime.call_tool_with_approval(
            guard(runtime),
            "issue_refund",
            ARGS,
            tool,
            confidence=0.9,
            request_id="req-2",
            timeout_s=0,
        )

    assert tool.calls == [ARGS]  # not refunded twice on one human's approval
    assert len(plane.approvals) == 2
    first, second = (body["idempotency_key"] for body in plane.approval_bodies)
    assert first != second


def test_build_request__request_id__part_of_the_derived_key() -> None:
    def key(**options: Any) -> str:
        body = build_request(
            agent=AGENT, tool="issue_refund", arguments=ARGS, session_id=SESSION, **options
        )
        return str(body["idempotency_key"])

    assert key(request_id="req-1") == key(request_id="req-1")  # a retry finds its request
    assert key(request_id="req-1") != key(request_id="req-2")
    assert key(request_id="req-1", discriminator="3") != key(request_id="req-2", discriminator="3")
    assert key() == key()  # no request id: as before, the session's call
    assert key(idempotency_key="mine", request_id="req-1") == "mine"


@pytest.mark.parametrize("status", ["rejected", "expired", "cancelled"])
def test_gate__not_approved__never_executed(
    runtime: Runtime, plane: FakeControlPlane, status: str
) -> None:
    tool = Tool()
    decide_when(plane, lambda: plane.approval_polls, status, comment="no")

    with pytest.raises(ApprovalDenied) as refused:
        runtime.call_tool_with_approval(guard(runtime), "issue_refund", ARGS, tool)

    assert tool.calls == []
    assert refused.value.code == status
    assert refused.value.approval is not None and refused.value.approval.outcome == "deny"
    assert status in refused.value.reason


def test_gate__changed_arguments__mismatch_needs_a_new_approval(
    runtime: Runtime, plane: FakeControlPlane
) -> None:
    tool = Tool()
    gate = runtime.approval_gate(guard(runtime))
    approval = gate.request(
        "issue_refund",
        ARGS,
        decision=gate.guard.check_tool_call("issue_refund", ARGS, confidence=0.9),
    )
    plane.decide(approval.id, "approved")
    approved = gate.wait(approval, timeout_s=WAIT)

    for changed in (
        {**ARGS, "amount": 251.0},
        {**ARGS, "payment_reference": "PAY-OTHER"},  # redacted for the human, pinned all the same
        {k: v for k, v in ARGS.items() if k != "currency"},
    ):
        with pytest.raises(ApprovalMismatch, match="new approval"):
            gate.execute_approved(approved, "issue_refund", changed, tool, confidence=0.9)
    with pytest.raises(ApprovalMismatch, match="is for issue_refund"):
        gate.execute_approved(approved, "open_ticket", ARGS, tool)
    assert tool.calls == []

    assert gate.execute_approved(approved, "issue_refund", dict(ARGS), tool, confidence=0.9)
    assert tool.calls == [ARGS]


def test_gate__server_claims_another_hash_was_approved__mismatch(
    runtime: Runtime, plane: FakeControlPlane
) -> None:
    tool = Tool()
    decide_when(plane, lambda: plane.approval_polls, "approved", arguments_sha256="b" * 64)

    with pytest.raises(ApprovalMismatch):
        runtime.call_tool_with_approval(guard(runtime), "issue_refund", ARGS, tool)

    assert tool.calls == []


def test_gate__no_decision_in_time__cancelled_refused_never_executed(
    runtime: Runtime, plane: FakeControlPlane
) -> None:
    tool = Tool()
    plane.park_cap_s = 0.05

    with pytest.raises(ApprovalTimedOut) as refused:
        runtime.call_tool_with_approval(guard(runtime), "issue_refund", ARGS, tool, timeout_s=0.3)

    assert tool.calls == []
    assert plane.approvals[1]["status"] == "cancelled"
    assert "stopped waiting" in plane.cancel_bodies[0]["reason"]
    assert refused.value.code == "timeout"
    assert refused.value.approval is not None and refused.value.approval.status == "cancelled"


def test_gate__request_already_past_its_expiry__cancelled_without_waiting(
    runtime: Runtime, plane: FakeControlPlane
) -> None:
    plane.approval_ttl_s = -120  # expired two minutes ago, and the beat has not run yet
    gate = runtime.approval_gate(guard(runtime), expiry_grace_s=0)
    tool = Tool()

    with pytest.raises(ApprovalTimedOut):
        gate.call("issue_refund", ARGS, tool, confidence=0.9)

    assert tool.calls == [] and plane.approval_polls == []


def test_gate__session_limit__refused_not_opened(runtime: Runtime, plane: FakeControlPlane) -> None:
    plane.approval_limit = 0
    tool = Tool()

    with pytest.raises(ApprovalNotOpened) as refused:
        runtime.call_tool_with_approval(guard(runtime), "issue_refund", ARGS, tool)

    assert refused.value.code == "session_limit"
    assert isinstance(refused.value.error, ApprovalRefused)
    assert "open approval requests" in refused.value.reason
    assert tool.calls == []


def test_gate__guard_denies__refused_without_asking_anyone(
    runtime: Runtime, plane: FakeControlPlane
) -> None:
    tool = Tool()

    with pytest.raises(GuardDenied, match="guests cannot be refunded"):
        runtime.call_tool_with_approval(guard(runtime, role="guest"), "issue_refund", ARGS, tool)

    assert tool.calls == [] and plane.approval_bodies == []


def test_gate__kill_switch_engaged_while_waiting__approval_does_not_override_it(
    runtime: Runtime, plane: FakeControlPlane
) -> None:
    tool = Tool()
    stop = {
        "id": 1,
        "kind": "agent_stopped",
        "agent": AGENT,
        "scope": "agent",
        "reason": "refunds paused",
        "engaged_at": "2026-12-05T07:00:00+00:00",
    }

    def engage_then_approve() -> None:
        assert plane.wait_for(lambda: plane.approval_polls)
        plane.publish(refund_snapshot(2, kill_switches=[stop]))
        runtime.sync_once()
        plane.decide(1, "approved")

    threading.Thread(target=engage_then_approve, daemon=True).start()
    with pytest.raises(GuardDenied, match="agent stopped") as refused:
        runtime.call_tool_with_approval(guard(runtime), "issue_refund", ARGS, tool)

    assert tool.calls == []
    assert refused.value.approval is not None and refused.value.approval.allowed


def test_gate__on_wait__told_the_request_before_blocking(
    runtime: Runtime, plane: FakeControlPlane
) -> None:
    told: list[Approval] = []
    gate = runtime.approval_gate(guard(runtime))

    def on_wait(approval: Approval) -> None:
        told.append(approval)
        plane.decide(approval.id, "approved")

    assert gate.call("issue_refund", ARGS, Tool(), on_wait=on_wait) == "refunded 250.0"
    assert [approval.status for approval in told] == ["pending"]


def test_gate__shadow_run__never_asks_never_executes(plane: FakeControlPlane) -> None:
    content = refund_snapshot()
    release = content["agents"][AGENT]
    release["candidate"] = {**release["stable"], "version": 2}
    release["rollout"] = {
        "id": 1,
        "phase": "shadow",
        "percentage": 0,
        "shadow_percentage": 100,
        "stickiness": "sessionId",
        "group_id": "refund-agent:production:rollout-1",
        "constraints": [],
    }
    plane.publish(content)
    runtime = Runtime(plane.url, TOKEN, "approvals-shadow")
    runtime.sync_once()
    try:
        shadow = runtime.shadow_guard(AGENT, SESSION, RequestContext(end_user_role="customer"))
        assert shadow is not None
        tool = Tool()

        with pytest.raises(ToolCallRefused) as refused:
            runtime.call_tool_with_approval(shadow, "issue_refund", ARGS, tool)

        assert refused.value.code == "shadow"
        assert tool.calls == [] and plane.approval_bodies == []
    finally:
        runtime.stop()


def test_gate__expires_at_bounds_the_wait(runtime: Runtime, plane: FakeControlPlane) -> None:
    # The clock says the request expires in a moment: the wait ends there (plus no grace),
    # long before the caller's hour.
    later = datetime.now(UTC) + timedelta(seconds=3600 - 0.3)
    gate = ApprovalGate(runtime, guard(runtime), expiry_grace_s=0, clock=lambda: later)
    plane.park_cap_s = 0.05
    tool = Tool()

    with pytest.raises(ApprovalTimedOut):
        gate.call("issue_refund", ARGS, tool, timeout_s=3600)

    assert tool.calls == [] and plane.approvals[1]["status"] == "cancelled"


# -- the simulator, connected -------------------------------------------------------------------


def live_fleet(plane: FakeControlPlane, requests_per_runtime: int) -> Fleet:
    return Fleet(
        plane.url,
        TOKEN,
        runtimes=1,
        agent=AGENT,
        rps=1000,
        requests_per_runtime=requests_per_runtime,
        report=False,
        backoff=Backoff(0.01, 0.05),
    )


def test_fleet__live_approvals__others_served_while_refunds_wait__decisions_acted_on(
    plane: FakeControlPlane,
) -> None:
    fleet = live_fleet(plane, 40)
    (member,) = fleet.members
    fleet.start()
    try:
        # Every request is dispatched while the refunds wait for a human: none blocks the rest.
        assert eventually(lambda: member.handled == 40, WAIT)
        with plane.cond:
            pending = sorted(plane.approvals)
        assert pending and all(plane.approvals[i]["status"] == "pending" for i in pending)
        assert eventually(lambda: member.in_flight == len(pending), WAIT)
        assert len(fleet.records) == 40 - len(pending)
        for approval_id in pending:
            plane.decide(
                approval_id,
                "approved" if approval_id % 2 else "rejected",
                comment="checked the order",
            )
        assert fleet.wait_finished(WAIT)
    finally:
        assert fleet.stop()

    records = {record.request_id: record for record in fleet.records}
    assert len(records) == 40
    request_of = {body["idempotency_key"]: body["request_id"] for body in plane.approval_bodies}
    for approval in plane.approvals.values():
        record = records[request_of[approval["idempotency_key"]]]
        assert record.approvals == 1
        if approval["status"] == "approved":
            assert "issue_refund" in record.tools_called
        else:
            assert "issue_refund" not in record.tools_called
            assert record.outcome in (REJECTED, ESCALATED)
    assert any(r.outcome == REJECTED for r in records.values())
    body = plane.approval_bodies[0]
    assert body["agent"] == AGENT and body["tool"] == "issue_refund"
    assert body["reason"].startswith("issue_refund ") and body["excerpt"][0]["role"] == "user"


def test_fleet__stopped_while_refunds_wait__requests_cancelled_and_recorded(
    plane: FakeControlPlane,
) -> None:
    fleet = live_fleet(plane, 40)
    (member,) = fleet.members
    fleet.start()
    assert eventually(lambda: member.handled == 40, WAIT)

    assert fleet.stop()

    assert plane.approvals
    assert {approval["status"] for approval in plane.approvals.values()} == {"cancelled"}
    assert len(fleet.records) == 40
    assert member.in_flight == 0


# -- against the real control plane (fast path, services, push) ----------------------------------

LIVE_ARGS: dict[str, Any] = {
    "order_id": "A00000042",
    "amount": 42.5,
    "currency": "EUR",
    "reason": "charged twice for the same order",
    "payment_reference": "PAY-SECRET-42",
    "idempotency_key": "refund-A00000042-0001",
}
DEMO = Path(__file__).resolve().parents[2] / "apps" / "bundles" / "demo"


@dataclass
class Live:
    url: str
    token: str
    queue: Any
    approvers: tuple[Any, Any]


@pytest.fixture
def live(asgi_server: str, tenant: Any) -> Live:
    """The demo refund agent deployed in production, a runtime token, and the queue Refunds
    (issue_refund, two approvers: the tool is critical)."""
    from apps.accounts.runtime_tokens import runtime_token_create
    from apps.approvals.services import queue_create
    from apps.audit.services import SystemActor
    from apps.bundles.services import bundle_version_push
    from apps.core.roles import Role
    from apps.rollouts.services import deployment_create

    from ..factories import AgentFactory, make_user

    actor = SystemActor("test")
    agent = AgentFactory(tenant=tenant, slug=AGENT, name="Refund agent")
    version = bundle_version_push(
        actor=actor,
        agent=agent,
        source=(DEMO / "refund-agent-v1.yaml").read_text(),
        message="demo",
    ).version
    production = tenant.environments.get(slug="production")
    deployment_create(
        actor=actor, agent=agent, environment=production, version=version, reason="launch"
    )
    _, token = runtime_token_create(
        actor=actor, tenant=tenant, environment=production, name="fleet"
    )
    approvers = (
        make_user(Role.APPROVER, tenant, username="alice-approver"),
        make_user(Role.APPROVER, tenant, username="bob-approver"),
    )
    queue = queue_create(
        actor=actor,
        tenant=tenant,
        data={
            "name": "Refunds",
            "match_tools": ["issue_refund"],
            "timeout_s": 3600,
            "sla_s": 600,
            "approvers": list(approvers),
        },
    )
    return Live(asgi_server, token, queue, approvers)


@pytest.fixture
def live_runtime(live: Live) -> Iterator[Runtime]:
    runtime = Runtime(live.url, live.token, "pod-live", backoff=Backoff(0.05, 0.5))
    runtime.sync_once()
    yield runtime
    runtime.stop()


def decide(approval_id: int, user: Any, choice: str, comment: str) -> None:
    from apps.approvals.models import ApprovalRequest
    from apps.approvals.services import approval_decide

    request = ApprovalRequest.objects.get(pk=approval_id)
    approval_decide(actor=user, request=request, choice=choice, comment=comment)


def in_background(function: Any) -> tuple[threading.Thread, dict[str, Any]]:
    """``function()`` on a thread; its result or exception lands in the dict."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["result"] = function()
        except Exception as exc:  # handed to the test thread
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


def opened_request() -> Any:
    from apps.approvals.models import ApprovalRequest

    assert eventually(lambda: ApprovalRequest.objects.exists(), WAIT)
    return ApprovalRequest.objects.get()


def test_live__approved_by_two__the_wait_is_woken_and_the_call_executed(
    live: Live, live_runtime: Runtime
) -> None:
    tool = Tool()
    request_guard = guard(live_runtime)
    thread, outcome = in_background(
        lambda: live_runtime.call_tool_with_approval(
            request_guard,
            "issue_refund",
            LIVE_ARGS,
            tool,
            confidence=0.95,
            reason="the customer was charged twice",
            excerpt=[{"role": "user", "content": "You charged me twice!"}],
            request_id="req-live-1",
            requested_by="carol@example.com",
            timeout_s=120,
        )
    )
    request = opened_request()
    alice, bob = live.approvers

    decide(request.pk, alice, "approve", "order checked")
    decide(request.pk, bob, "approve", "agreed")
    # Woken by the decision: the wait's long-poll chunk (30 s) is far from over.
    thread.join(25)

    assert not thread.is_alive() and "error" not in outcome, outcome
    assert outcome["result"] == "refunded 42.5"
    assert tool.calls == [LIVE_ARGS]
    request.refresh_from_db()
    assert request.status == "approved" and request.approvals_required == 2
    assert request.arguments == {**LIVE_ARGS, "payment_reference": REDACTED}
    assert request.arguments_sha256 == arguments_sha256(LIVE_ARGS)
    assert (request.runtime_id, request.request_id, request.session_id) == (
        "pod-live",
        "req-live-1",
        SESSION,
    )
    assert request.requested_by == "carol@example.com" and request.risk == "critical"
    assert request.bundle_version.number == 1
    assert request.rule.startswith("issue_refund needs approval by rule #")


def test_live__rejected__refused_with_the_comment_never_executed(
    live: Live, live_runtime: Runtime
) -> None:
    tool = Tool()
    thread, outcome = in_background(
        lambda: live_runtime.call_tool_with_approval(
            guard(live_runtime), "issue_refund", LIVE_ARGS, tool, confidence=0.95, timeout_s=120
        )
    )
    request = opened_request()

    decide(request.pk, live.approvers[0], "reject", "not owed: the second charge was refunded")
    thread.join(25)

    assert not thread.is_alive()
    refused = outcome.get("error")
    assert isinstance(refused, ApprovalDenied) and refused.code == "rejected"
    assert "not owed: the second charge was refunded" in refused.reason
    assert tool.calls == []


def test_live__idempotent_retry_and_cancel(live: Live, live_runtime: Runtime) -> None:
    from apps.approvals.models import ApprovalRequest

    first = live_runtime.approval_request(AGENT, "issue_refund", LIVE_ARGS, session_id=SESSION)
    again = live_runtime.approval_request(AGENT, "issue_refund", LIVE_ARGS, session_id=SESSION)

    assert again.id == first.id and ApprovalRequest.objects.count() == 1
    assert (first.status, first.queue, first.approvals_required) == ("pending", "Refunds", 2)
    pending = live_runtime.approval_wait(first.id, timeout_s=1)
    assert pending.status == "pending"

    cancelled = live_runtime.approval_cancel(first.id, reason="the customer withdrew")

    assert (cancelled.status, cancelled.outcome) == ("cancelled", "deny")
    assert ApprovalRequest.objects.get(pk=first.id).status == "cancelled"
    assert live_runtime.approval_cancel(first.id).status == "cancelled"
    assert live_runtime.approval_wait(first.id, timeout_s=5).status == "cancelled"
    with pytest.raises(ApprovalConflict):
        live_runtime.approval_request(
            AGENT,
            "issue_refund",
            {**LIVE_ARGS, "amount": 43},
            session_id=SESSION,
            idempotency_key=first.idempotency_key,
        )


def test_live__session_limit__refused_with_the_servers_sentence(
    live: Live, live_runtime: Runtime
) -> None:
    from apps.approvals.services import queue_update
    from apps.audit.services import SystemActor

    queue = live.queue
    queue_update(
        actor=SystemActor("test"),
        queue=queue,
        data={**queue.snapshot(), "escalate_to": None, "max_open_per_session": 1},
    )
    live_runtime.approval_request(AGENT, "issue_refund", LIVE_ARGS, session_id=SESSION)

    with pytest.raises(ApprovalRefused) as refused:
        live_runtime.approval_request(
            AGENT, "issue_refund", LIVE_ARGS, session_id=SESSION, discriminator="second"
        )

    assert "Session session-7 already has 1 open approval requests" in refused.value.detail
    assert "Refunds" in refused.value.detail and refused.value.status == 429


def test_live__expired_by_the_beat__denied_never_executed(
    live: Live, live_runtime: Runtime
) -> None:
    from django.utils import timezone

    from apps.approvals.models import ApprovalRequest
    from apps.approvals.services import approval_expire

    gate = live_runtime.approval_gate(guard(live_runtime))
    decision = gate.guard.check_tool_call("issue_refund", LIVE_ARGS, confidence=0.95)
    approval = gate.request("issue_refund", LIVE_ARGS, decision=decision)
    ApprovalRequest.objects.filter(pk=approval.id).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )

    assert approval_expire(request_id=approval.id)
    expired = gate.wait(approval, timeout_s=30)

    assert (expired.status, expired.outcome, expired.decided_by) == ("expired", "deny", ())
    tool = Tool()
    with pytest.raises(ApprovalDenied) as refused:
        gate.execute_approved(expired, "issue_refund", LIVE_ARGS, tool, confidence=0.95)
    assert refused.value.code == "expired" and tool.calls == []


def test_live__decision_pushed__verified_by_the_runtimes_receiver(
    live: Live, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from apps.runtimes import tasks

    settings.RUNTIME_PUSH_ALLOWED_CIDRS = ["127.0.0.1/32"]
    # The broker hop only: the task runs here, as a worker would.
    monkeypatch.setattr(
        tasks.push_approval, "delay", lambda *args: tasks.push_approval.apply(args=args)
    )
    pushed: list[ApprovalPush] = []
    receiver = PushReceiver(
        verifier=PushVerifier(live.token), on_push=lambda push: None, on_approval=pushed.append
    )
    receiver.start()
    runtime = Runtime(live.url, live.token, "pod-push", push_url=receiver.url)
    try:
        runtime.sync_once()  # its heartbeat registers the push URL
        approval = runtime.approval_request(AGENT, "issue_refund", LIVE_ARGS, session_id=SESSION)
        alice, bob = live.approvers

        decide(approval.id, alice, "approve", "one")
        decide(approval.id, bob, "approve", "two")

        assert eventually(lambda: pushed, WAIT)
        (push,) = pushed
        assert push.approval.id == approval.id
        assert (push.approval.status, push.approval.outcome) == ("approved", "allow")
        assert push.approval.decided_by == ("alice-approver", "bob-approver")
        assert push.approval.arguments_sha256 == arguments_sha256(LIVE_ARGS)
    finally:
        runtime.stop()
        receiver.stop()


def test_live__simulated_refund_agent__real_requests_decided_and_acted_on(live: Live) -> None:
    from apps.approvals.models import ApprovalRequest

    fleet = Fleet(
        live.url,
        live.token,
        runtimes=1,
        agent=AGENT,
        rps=1000,
        requests_per_runtime=30,
        report=False,
        backoff=Backoff(0.05, 0.5),
        # Short config long-polls: one still parked in the server would hold its shutdown.
        wait_s=2,
    )
    (member,) = fleet.members
    fleet.start()
    try:
        assert eventually(lambda: member.handled == 30, 60)
        opened = list(ApprovalRequest.objects.order_by("pk"))
        assert opened, "no refund asked for a human in 30 requests"
        alice, bob = live.approvers
        for index, request in enumerate(opened):
            if index % 2:
                decide(request.pk, alice, "reject", "not within policy")
            else:
                decide(request.pk, alice, "approve", "fine")
                decide(request.pk, bob, "approve", "fine")
        assert fleet.wait_finished(60)
    finally:
        assert fleet.stop()

    records = {record.request_id: record for record in fleet.records}
    assert len(records) == 30
    for request in ApprovalRequest.objects.all():
        record = records[request.request_id]
        assert request.tool == "issue_refund" and request.risk == "critical"
        executed = "issue_refund" in record.tools_called
        assert executed == (request.status == "approved"), (request.status, record)
