"""SSRF through ``push_url`` (issue 9, item 3): checked at registration and at connect time,
pinned to the checked address, no redirects, short timeouts."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from apps.accounts.runtime_tokens import runtime_token_create
from apps.audit.services import SystemActor
from apps.core import outbound as push_targets
from apps.core.outbound import PushTargetRefused, push_target_resolve
from apps.runtimes.models import RuntimeInstance, WebhookDelivery
from apps.runtimes.services import webhook_deliver
from apps.runtimes.tasks import deliver_webhook
from apps.tenancy.models import Environment, Tenant

pytestmark = pytest.mark.django_db
ACTOR = SystemActor("test")

# One of each kind the guard must refuse by default, in the spellings an attacker tries.
REFUSED_URLS = [
    "http://127.0.0.1:8000/internal",
    "http://localhost:8000/internal",
    "http://127.1/",
    "http://2130706433/",  # 127.0.0.1 as one decimal number
    "http://0x7f000001/",  # and in hex
    "http://0.0.0.0:9000/",
    "http://[::1]:9000/push",
    "http://[::]/",
    "http://[::ffff:127.0.0.1]/push",  # IPv4-mapped IPv6
    "http://[::ffff:10.0.0.1]/push",
    "http://[64:ff9b::a9fe:a9fe]/",  # NAT64 form of the metadata address
    "http://10.0.0.5:9000/push",
    "http://172.16.3.4/",
    "http://192.168.1.10/",
    "http://100.64.0.7/",  # carrier-grade NAT
    "http://169.254.169.254/latest/meta-data/",  # cloud metadata
    "http://169.254.10.10/",  # link-local
    "http://[fd00:ec2::254]/",  # AWS metadata over IPv6
    "http://[fc00::1]/",  # unique local
    "http://[fe80::1]/",  # link-local IPv6
    "http://224.0.0.1/",  # multicast
    "http://[ff02::1]/",
    "http://240.0.0.1/",  # reserved
    "http://255.255.255.255/",
    "http://198.18.0.1/",  # benchmarking
]


@pytest.fixture
def production(tenant: Tenant) -> Environment:
    return tenant.environments.get(slug="production")


@pytest.fixture
def runtime(tenant: Tenant, production: Environment) -> APIClient:
    _, raw = runtime_token_create(actor=ACTOR, tenant=tenant, environment=production, name="f")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=raw)
    return client


class Receiver(BaseHTTPRequestHandler):
    """Answers with ``status`` (and a Location to ``location`` for redirects); records hosts."""

    status = 204
    location = ""
    hosts: list[str] = []

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        Receiver.hosts.append(self.headers["Host"])
        self.send_response(Receiver.status)
        if Receiver.location:
            self.send_header("Location", Receiver.location)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[int]:
    Receiver.status, Receiver.location, Receiver.hosts = 204, "", []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield int(server.server_address[1])
    server.shutdown()


def _instance(tenant: Tenant, production: Environment, url: str) -> RuntimeInstance:
    token, _ = runtime_token_create(actor=ACTOR, tenant=tenant, environment=production, name="p")
    return RuntimeInstance.objects.create(
        tenant=tenant,
        environment=production,
        token=token,
        instance_id="pod-1",
        last_seen_at=timezone.now(),
        push_url=url,
    )


# ------------------------------------------------------------------------------ registration


@pytest.mark.parametrize("url", REFUSED_URLS)
def test_heartbeat__push_url_not_public__400_names_push_url_and_nothing_stored(
    runtime: APIClient, url: str
) -> None:
    response = runtime.post(
        "/api/runtime/v1/heartbeat", {"instance_id": "pod-1", "push_url": url}, format="json"
    )
    assert response.status_code == 400, response.content
    assert "push_url" in response.json()["errors"]
    assert RuntimeInstance.objects.count() == 0


@pytest.mark.parametrize(
    "url",
    [
        "ftp://203.0.113.9/push",
        "file:///etc/passwd",
        "http://user:secret@93.184.215.14/push",
        "http://no-such-host.invalid/push",
    ],
)
def test_heartbeat__push_url_bad_scheme_credentials_or_unresolvable__400(
    runtime: APIClient, url: str
) -> None:
    response = runtime.post(
        "/api/runtime/v1/heartbeat", {"instance_id": "pod-1", "push_url": url}, format="json"
    )
    assert response.status_code == 400
    assert "push_url" in response.json()["errors"]


def test_heartbeat__public_push_url__registered(runtime: APIClient) -> None:
    for url in ("http://93.184.215.14:9000/push", "https://[2606:4700:4700::1111]/push"):
        response = runtime.post(
            "/api/runtime/v1/heartbeat", {"instance_id": "pod-1", "push_url": url}, format="json"
        )
        assert response.status_code == 200, response.content
        assert RuntimeInstance.objects.get().push_url == url


def test_heartbeat__operator_allows_loopback__registered(runtime: APIClient, settings) -> None:  # type: ignore[no-untyped-def]
    settings.RUNTIME_PUSH_ALLOWED_CIDRS = ["127.0.0.0/8", "::1/128"]
    for url in ("http://127.0.0.1:9000/push", "http://[::1]:9000/push", "http://localhost:9/"):
        response = runtime.post(
            "/api/runtime/v1/heartbeat", {"instance_id": "pod-1", "push_url": url}, format="json"
        )
        assert response.status_code == 200, response.content


@pytest.mark.parametrize(
    "url",
    ["http://169.254.169.254/", "http://[fd00:ec2::254]/", "http://[::ffff:169.254.169.254]/"],
)
def test_push_target__metadata__refused_even_when_everything_is_allowed(settings, url: str) -> None:  # type: ignore[no-untyped-def]
    settings.RUNTIME_PUSH_ALLOWED_CIDRS = ["0.0.0.0/0", "::/0"]
    with pytest.raises(PushTargetRefused, match="metadata"):
        push_target_resolve(url)


def test_push_target__name_with_one_refused_address__refused(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A round-robin answer cannot slip a private address in beside a public one."""

    def two_answers(host: str, port: int, **kwargs: Any) -> list[Any]:
        return [
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.215.14", port)),
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.0.0.1", port)),
        ]

    monkeypatch.setattr(push_targets, "getaddrinfo", two_answers)
    with pytest.raises(PushTargetRefused):
        push_target_resolve("http://mixed.example.test/push")


# ------------------------------------------------------------------------------ connect time


def test_deliver__allowed_at_registration_refused_now__not_sent_and_not_retried(
    tenant: Tenant, production: Environment, receiver: int
) -> None:
    """The operator narrowed the allow list after registration: the push checks again."""
    instance = _instance(tenant, production, f"http://127.0.0.1:{receiver}/push")

    deliver_webhook.apply(args=[instance.pk, 3])

    delivery = WebhookDelivery.objects.get()  # one attempt: a refusal is not retried
    assert (delivery.delivered, delivery.status_code) == (False, None)
    assert delivery.error.startswith("refused:")
    assert Receiver.hosts == []


def test_deliver__dns_rebinding__connects_only_to_the_checked_address(
    tenant: Tenant, production: Environment, receiver: int, monkeypatch, settings
) -> None:  # type: ignore[no-untyped-def]
    """Registration saw a public address; at push time the name answers loopback: refused.
    And when the answer is allowed, the push goes to that very address (the name itself is
    not resolvable by the system), with the URL's host in the Host header."""
    answers = iter(["93.184.215.14", "127.0.0.1", "127.0.0.1"])

    def rebinding(host: str, port: int, **kwargs: Any) -> list[Any]:
        assert host == "push.example.test"
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (next(answers), port))]

    monkeypatch.setattr(push_targets, "getaddrinfo", rebinding)
    url = f"http://push.example.test:{receiver}/push"
    assert push_target_resolve(url).address == "93.184.215.14"
    instance = _instance(tenant, production, url)

    deliver_webhook.apply(args=[instance.pk, 4])
    assert WebhookDelivery.objects.get().error.startswith("refused:")
    assert Receiver.hosts == []

    settings.RUNTIME_PUSH_ALLOWED_CIDRS = ["127.0.0.1/32"]
    deliver_webhook.apply(args=[instance.pk, 5])
    assert WebhookDelivery.objects.filter(revision=5, delivered=True).exists()
    assert Receiver.hosts == [f"push.example.test:{receiver}"]


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_deliver__redirect__not_followed_and_counted_failed(
    tenant: Tenant, production: Environment, receiver: int, settings, status: int
) -> None:  # type: ignore[no-untyped-def]
    settings.RUNTIME_PUSH_ALLOWED_CIDRS = ["127.0.0.0/8"]
    Receiver.status = status
    Receiver.location = "http://169.254.169.254/latest/meta-data/"
    instance = _instance(tenant, production, f"http://127.0.0.1:{receiver}/push")

    deliver_webhook.apply(args=[instance.pk, 3], kwargs={})

    deliveries = WebhookDelivery.objects.filter(instance=instance)
    assert not deliveries.filter(delivered=True).exists()
    assert set(deliveries.values_list("status_code", flat=True)) == {status}
    assert len(Receiver.hosts) == deliveries.count()  # every attempt hit only the receiver


def test_deliver__receiver_never_answers__gives_up_at_the_read_timeout(
    tenant: Tenant, production: Environment, settings
) -> None:  # type: ignore[no-untyped-def]
    settings.RUNTIME_PUSH_ALLOWED_CIDRS = ["127.0.0.0/8"]
    settings.RUNTIME_WEBHOOK_READ_TIMEOUT_S = 0.2
    with socket.socket() as hung:  # accepts (the kernel's backlog) and never answers
        hung.bind(("127.0.0.1", 0))
        hung.listen(8)
        instance = _instance(tenant, production, f"http://127.0.0.1:{hung.getsockname()[1]}/")
        delivery = webhook_deliver(instance_pk=instance.pk, revision=2, attempt=1)

    assert not delivery.delivered
    assert "timed out" in delivery.error.lower()


def test_deliver__https__pinned_address_with_the_url_host_as_tls_server_name(
    tenant: Tenant, production: Environment, monkeypatch, settings
) -> None:  # type: ignore[no-untyped-def]
    """TLS goes to the checked address but names (and would verify) the URL's host."""
    settings.RUNTIME_PUSH_ALLOWED_CIDRS = ["127.0.0.1/32"]
    monkeypatch.setattr(
        push_targets,
        "getaddrinfo",
        lambda host, port, **kw: [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))],
    )
    hellos: list[bytes] = []
    with socket.socket() as listener:  # not a TLS server: it only records the ClientHello
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)

        def record() -> None:
            conn, _ = listener.accept()
            hellos.append(conn.recv(4096))
            conn.close()

        thread = threading.Thread(target=record, daemon=True)
        thread.start()
        instance = _instance(
            tenant, production, f"https://runtime.example.test:{listener.getsockname()[1]}/push"
        )
        delivery = webhook_deliver(instance_pk=instance.pk, revision=2, attempt=1)
        thread.join(timeout=10)

    assert not delivery.delivered and "SSL" in delivery.error
    assert hellos and b"runtime.example.test" in hellos[0]
