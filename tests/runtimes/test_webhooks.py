from __future__ import annotations

import hashlib
import hmac
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.utils import timezone

from apps.accounts.runtime_tokens import runtime_token_create
from apps.audit.services import SystemActor
from apps.core.webhooks import SIGNATURE_HEADER, TIMESTAMP_HEADER
from apps.runtimes.models import RuntimeInstance, WebhookDelivery
from apps.runtimes.tasks import backoff_seconds, deliver_webhook
from apps.tenancy.models import Tenant

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _loopback_push_targets(settings) -> None:  # type: ignore[no-untyped-def]
    # These receivers listen on loopback, which production refuses: allow it deliberately.
    settings.RUNTIME_PUSH_ALLOWED_CIDRS = ["127.0.0.0/8"]


class FlakyReceiver(BaseHTTPRequestHandler):
    """Fails the first two pushes, then accepts; records what it was sent."""

    received: list[tuple[dict[str, str], bytes]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        FlakyReceiver.received.append((dict(self.headers), body))
        self.send_response(503 if len(FlakyReceiver.received) <= 2 else 204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def receiver():  # type: ignore[no-untyped-def]
    FlakyReceiver.received = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), FlakyReceiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/push"
    server.shutdown()


def test_webhook__receiver_fails_twice__retries_then_delivers_signed_push(
    tenant: Tenant, receiver: str
) -> None:
    production = tenant.environments.get(slug="production")
    token, raw = runtime_token_create(
        actor=SystemActor("test"), tenant=tenant, environment=production, name="fleet"
    )
    instance = RuntimeInstance.objects.create(
        tenant=tenant,
        environment=production,
        token=token,
        instance_id="pod-1",
        last_seen_at=timezone.now(),
        push_url=receiver,
    )

    deliver_webhook.apply(args=[instance.pk, 7])

    attempts = list(
        WebhookDelivery.objects.order_by("attempt").values_list(
            "attempt", "status_code", "delivered"
        )
    )
    assert attempts == [(1, 503, False), (2, 503, False), (3, 204, True)]
    key = (
        hashlib.sha256(raw.encode()).hexdigest().encode()
    )  # what the runtime can compute from its token
    for headers, body in FlakyReceiver.received:
        expected = hmac.new(
            key, headers[TIMESTAMP_HEADER].encode() + b"." + body, hashlib.sha256
        ).hexdigest()
        assert headers[SIGNATURE_HEADER] == f"v1={expected}"
        assert abs(int(headers[TIMESTAMP_HEADER]) - timezone.now().timestamp()) < 300
        assert json.loads(body) == {"tenant": "acme", "environment": "production", "revision": 7}


def test_webhook__unreachable_receiver__every_attempt_logged_with_error(tenant: Tenant) -> None:
    production = tenant.environments.get(slug="production")
    token, _ = runtime_token_create(
        actor=SystemActor("test"), tenant=tenant, environment=production, name="fleet"
    )
    instance = RuntimeInstance.objects.create(
        tenant=tenant,
        environment=production,
        token=token,
        instance_id="pod-2",
        last_seen_at=timezone.now(),
        push_url="http://127.0.0.1:9/push",
    )

    deliver_webhook.apply(args=[instance.pk, 3])

    deliveries = WebhookDelivery.objects.filter(instance=instance)
    assert deliveries.count() == 6
    assert not deliveries.filter(delivered=True).exists()
    assert all(d.error for d in deliveries)


@pytest.mark.parametrize("attempt", [0, 1, 3, 10])
def test_backoff__grows_exponentially_with_jitter_and_a_cap(attempt: int) -> None:
    samples = [backoff_seconds(attempt) for _ in range(200)]
    assert all(0 <= s <= min(60, 2**attempt) for s in samples)
    assert len(set(samples)) > 1  # jittered, not a fixed delay
