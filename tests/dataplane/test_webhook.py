from __future__ import annotations

import hashlib
import http.client
import json
import threading

import pytest

from apps.core.webhooks import signed_headers
from dataplane.webhook import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    Push,
    PushReceiver,
    PushRejected,
    PushVerifier,
    push_key,
    sign_push,
)

TOKEN = "rt_secret-token"
NOW = 1_800_000_000
BODY = json.dumps({"tenant": "acme", "environment": "production", "revision": 43}).encode()


def headers(*, timestamp: int = NOW, body: bytes = BODY, key: str | None = None) -> dict[str, str]:
    signature = sign_push(key=key or push_key(TOKEN), timestamp=timestamp, body=body)
    return {TIMESTAMP_HEADER: str(timestamp), SIGNATURE_HEADER: signature}


def verifier() -> PushVerifier:
    return PushVerifier(TOKEN, clock=lambda: NOW)


def test_push_key__is_hex_sha256_of_token() -> None:
    assert push_key(TOKEN) == hashlib.sha256(TOKEN.encode()).hexdigest()


def test_verify__valid_push__returns_the_revision() -> None:
    assert verifier().verify(headers(), BODY) == Push("acme", "production", 43)


def test_verify__signed_by_the_control_planes_code__accepted() -> None:
    sent = signed_headers(key=push_key(TOKEN), body=BODY, now=NOW)

    assert verifier().verify(sent, BODY).revision == 43


def test_verify__header_names_any_case__accepted() -> None:
    lowered = {name.lower(): value for name, value in headers().items()}

    assert verifier().verify(lowered, BODY).revision == 43


@pytest.mark.parametrize(
    ("sent_headers", "body", "error"),
    [
        (headers(key=push_key("another-runtimes-token")), BODY, "bad signature"),
        (headers(), BODY.replace(b"43", b"44"), "bad signature"),
        ({TIMESTAMP_HEADER: str(NOW)}, BODY, "missing"),
        ({**headers(), TIMESTAMP_HEADER: "soon"}, BODY, "not an integer"),
        (headers(timestamp=NOW - 301), BODY, "replay window"),
        (headers(timestamp=NOW + 301), BODY, "replay window"),
        (headers(body=b"[]"), b"[]", "not a revision announcement"),
    ],
    ids=[
        "wrong key",
        "body changed",
        "no signature",
        "bad timestamp",
        "too old",
        "from the future",
        "not an announcement",
    ],
)
def test_verify__invalid_push__rejected(
    sent_headers: dict[str, str], body: bytes, error: str
) -> None:
    with pytest.raises(PushRejected, match=error):
        verifier().verify(sent_headers, body)


def test_verify__edge_of_window__accepted() -> None:
    assert verifier().verify(headers(timestamp=NOW - 300), BODY).revision == 43


def test_verify__same_push_twice__second_is_a_replay() -> None:
    check = verifier()
    check.verify(headers(), BODY)

    with pytest.raises(PushRejected, match="replayed"):
        check.verify(headers(), BODY)


def test_verify__same_body_new_timestamp__accepted() -> None:
    # The control plane re-signs each delivery attempt, so a retry is not a replay.
    check = verifier()
    check.verify(headers(), BODY)

    assert check.verify(headers(timestamp=NOW + 1), BODY).revision == 43


def _post(url: str, body: bytes, sent_headers: dict[str, str]) -> int:
    host_port = url.split("//", 1)[1].split("/", 1)[0]
    connection = http.client.HTTPConnection(host_port, timeout=10)
    try:
        connection.request("POST", "/push", body=body, headers=sent_headers)
        return connection.getresponse().status
    finally:
        connection.close()


def test_receiver__valid_push__204_and_delivered() -> None:
    received: list[Push] = []
    delivered = threading.Event()

    def on_push(push: Push) -> None:
        received.append(push)
        delivered.set()

    receiver = PushReceiver(verifier=verifier(), on_push=on_push)
    receiver.start()
    try:
        status = _post(receiver.url, BODY, headers())
    finally:
        receiver.stop()

    assert status == 204
    assert delivered.is_set()
    assert received == [Push("acme", "production", 43)]


def test_receiver__forged_push__401_and_not_delivered() -> None:
    received: list[Push] = []
    receiver = PushReceiver(verifier=verifier(), on_push=received.append)
    receiver.start()
    try:
        status = _post(receiver.url, BODY, headers(key=push_key("forged")))
    finally:
        receiver.stop()

    assert status == 401
    assert received == []
