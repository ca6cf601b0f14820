"""Cross-language: the unmodified Unleash **Node.js** SDK (``make-fetch-happen`` under it asks
for gzip) reads the features document the server sent gzip-coded, and a change arriving the
same way; Node's own gunzip reads the event stream sent as concatenated gzip members, event by
event as they arrive (the SDK's streaming mode does not ask for gzip: see
``test_unleash_node_sdk``). The server's side of the wire (``asgi_served``) shows gzip was
sent."""

from __future__ import annotations

import json
import subprocess

from apps.flags.models import Flag
from apps.flags.services import flag_toggle
from apps.tenancy.models import Tenant

from ..conftest import Served
from ..flags.conftest import SYSTEM, make_token
from .test_unleash_node_sdk import HERE, NODE, _seed, pytestmark  # noqa: F401 (the skip mark)


def test_node_sdk__features_sent_gzip__evaluates_them_and_sees_a_change(
    asgi_server: str, tenant: Tenant, asgi_served: list[Served]
) -> None:
    development = tenant.environments.get(slug="development")
    _seed(development)
    request = {
        "url": asgi_server + "/api/",
        "token": make_token(development),
        "appName": "node-gzip",
        "instanceId": "node-gzip",
        "metrics": False,
        "checks": [
            {"name": "app.checkout", "contexts": [{}]},
            {"name": "billing.invoices", "contexts": [{}]},
        ],
        "awaitChange": {"name": "billing.invoices", "enabled": True},
        "timeoutMs": 15_000,
    }
    assert NODE is not None
    node = subprocess.Popen(
        [NODE, str(HERE / "unleash_node_sdk.mjs")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=HERE,
    )
    try:
        assert node.stdin is not None and node.stderr is not None and node.stdout is not None
        node.stdin.write(json.dumps(request).encode())
        node.stdin.close()
        assert node.stderr.readline().strip() == b"SYNCHRONIZED"
        flag_toggle(
            actor=SYSTEM,
            flag=Flag.objects.get(environment=development, name="billing.invoices"),
            enabled=True,
        )
        stdout, stderr = node.stdout.read(), node.stderr.read()  # until the script ends
        node.wait(timeout=60)
    finally:
        if node.poll() is None:
            node.kill()
    answer = json.loads(stdout)

    assert answer["synchronized"] is True, (answer["errors"], stderr)
    assert answer["enabled"] == {"app.checkout": [True], "billing.invoices": [False]}
    assert answer["changeSeen"] is True
    sent = [s for s in asgi_served if s.path == "/api/client/features" and s.status == 200]
    assert len(sent) >= 2  # the first document and the changed one
    assert all("gzip" in s.request_headers.get("accept-encoding", "") for s in sent)
    assert all(s.headers.get("content-encoding") == "gzip" for s in sent)


def test_node_zlib__event_stream_sent_gzip__each_event_decoded_as_it_arrives(
    asgi_server: str, tenant: Tenant, asgi_served: list[Served]
) -> None:
    """Node's own gunzip reads the stream's concatenated gzip members live: the hydration is
    decoded while the connection stays open, and the update made after it arrives on it."""
    development = tenant.environments.get(slug="development")
    _seed(development)
    assert NODE is not None
    node = subprocess.Popen(
        [
            NODE,
            str(HERE / "gzip_event_stream.mjs"),
            asgi_server + "/api/client/streaming",
            make_token(development),
            "2",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=HERE,
    )
    try:
        assert node.stdout is not None and node.stderr is not None
        start = json.loads(node.stdout.readline())
        hydration = json.loads(node.stdout.readline() or '""')
        flag_toggle(
            actor=SYSTEM,
            flag=Flag.objects.get(environment=development, name="billing.invoices"),
            enabled=True,
        )
        update = json.loads(node.stdout.readline() or '""')
        node.wait(timeout=30)
        stderr = node.stderr.read()
    finally:
        if node.poll() is None:
            node.kill()

    assert start == {"status": 200, "contentEncoding": "gzip"}
    assert node.returncode == 0, stderr
    assert hydration.startswith("event: unleash-connected\nid: ")
    assert update.startswith("event: unleash-updated\nid: ")
    [event] = json.loads(update.split("data: ", 1)[1])["events"]
    assert (event["feature"]["name"], event["feature"]["enabled"]) == ("billing.invoices", True)
    [served] = [s for s in asgi_served if s.path == "/api/client/streaming"]
    assert served.headers["content-encoding"] == "gzip"
