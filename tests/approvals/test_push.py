"""A final decision reaches the push URL of the runtime that asked, signed as revision pushes
are (docs/approvals.md, "Webhook"); nothing is pushed while a request waits."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from django.utils import timezone

from apps.accounts.runtime_tokens import runtime_token_create
from apps.approvals.services import approval_decide, approval_open
from apps.core.webhooks import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign
from apps.runtimes import tasks
from apps.runtimes.models import RuntimeInstance
from apps.tenancy.models import Tenant

from .conftest import ACTOR, body

pytestmark = pytest.mark.django_db(transaction=True)


class Receiver(BaseHTTPRequestHandler):
    received: list[tuple[dict[str, str], bytes]] = []

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers["Content-Length"]))
        Receiver.received.append((dict(self.headers.items()), raw))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[int]:
    Receiver.received = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield int(server.server_address[1])
    server.shutdown()


@pytest.fixture
def pushing(settings, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Pushes to loopback allowed, and the task run here, as a worker would (the broker hop
    only)."""
    settings.RUNTIME_PUSH_ALLOWED_CIDRS = ["127.0.0.1/32"]
    monkeypatch.setattr(
        tasks.push_approval, "delay", lambda *args: tasks.push_approval.apply(args=args)
    )


def test_the_decision_is_pushed_signed(
    tenant: Tenant, agent, refunds, approver, approver2, receiver: int, pushing: None
) -> None:  # type: ignore[no-untyped-def]
    production = tenant.environments.get(slug="production")
    token, _ = runtime_token_create(actor=ACTOR, tenant=tenant, environment=production, name="p")
    RuntimeInstance.objects.create(
        tenant=tenant,
        environment=production,
        token=token,
        instance_id="pod-7",
        last_seen_at=timezone.now(),
        push_url=f"http://127.0.0.1:{receiver}/push",
    )
    request = approval_open(
        tenant_id=tenant.pk,
        environment_id=production.pk,
        token_id=token.pk,
        token_agent_id=None,
        token_label="p",
        body=body(runtime_id="pod-7"),
    ).request
    approval_decide(actor=approver, request=request, choice="approve", comment="one")
    assert Receiver.received == []  # 1 of 2 approvals: still waiting, nothing to deliver
    approval_decide(actor=approver2, request=request, choice="approve", comment="two")
    assert len(Receiver.received) == 1
    headers, raw = Receiver.received[0]
    document = json.loads(raw)
    assert document["type"] == "approval.decided"
    assert document["approval"]["id"] == request.pk
    assert document["approval"]["outcome"] == "allow"
    assert document["approval"]["decided_by"] == ["alice-approver", "bob-approver"]
    expected = sign(key=token.token_hash, timestamp=int(headers[TIMESTAMP_HEADER]), body=raw)
    assert headers[SIGNATURE_HEADER] == expected


def test_a_runtime_naming_another_tokens_instance__nothing_pushed_there(
    tenant: Tenant, agent, refunds, approver, approver2, receiver: int, pushing: None
) -> None:  # type: ignore[no-untyped-def]
    production = tenant.environments.get(slug="production")
    asking, _ = runtime_token_create(actor=ACTOR, tenant=tenant, environment=production, name="a")
    other, _ = runtime_token_create(actor=ACTOR, tenant=tenant, environment=production, name="b")
    RuntimeInstance.objects.create(
        tenant=tenant,
        environment=production,
        token=other,
        instance_id="pod-of-b",
        last_seen_at=timezone.now(),
        push_url=f"http://127.0.0.1:{receiver}/push",
    )
    # The runtime of token a names an instance of token b as its runtime_id: b must not
    # receive a's decisions (signed with b's key, b's receiver would accept them).
    request = approval_open(
        tenant_id=tenant.pk,
        environment_id=production.pk,
        token_id=asking.pk,
        token_agent_id=None,
        token_label="a",
        body=body(runtime_id="pod-of-b"),
    ).request
    approval_decide(actor=approver, request=request, choice="reject", comment="not owed")

    assert Receiver.received == []
