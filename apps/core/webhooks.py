"""Signing of outbound webhooks: runtime pushes (docs/runtime-api.md, "Webhook push") and
alert channels (apps/alerts) share one scheme, so one receiver library verifies both.

``X-Controlplane-Signature: v1=<hex HMAC-SHA256(key, "<timestamp>.<body>")>`` with
``X-Controlplane-Timestamp: <unix seconds>``; the receiver refuses a timestamp outside its
replay window (dataplane/webhook.py: ``PushVerifier``). The scheme is Stripe's
``t=…,v1=…`` signature split over two headers."""

from __future__ import annotations

import hashlib
import hmac
import time

SIGNATURE_HEADER = "X-Controlplane-Signature"
TIMESTAMP_HEADER = "X-Controlplane-Timestamp"


def sign(*, key: str, timestamp: int, body: bytes) -> str:
    """``key``: a shared secret both sides can compute; for a runtime the hex sha256 of its
    token, for an alert channel the hex sha256 of the secret shown once at its creation.
    ``timestamp``: unix seconds. Returns ``"v1=<64 hex>"``."""
    message = str(timestamp).encode() + b"." + body
    return "v1=" + hmac.new(key.encode(), message, hashlib.sha256).hexdigest()


def signed_headers(*, key: str, body: bytes, now: float | None = None) -> dict[str, str]:
    """The headers of a signed JSON POST of ``body`` (timestamp ``now``, default the clock)."""
    timestamp = int(now if now is not None else time.time())
    return {
        "Content-Type": "application/json",
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: sign(key=key, timestamp=timestamp, body=body),
    }
