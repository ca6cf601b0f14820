"""Signing of webhook pushes (see docs/runtime-api.md, "Webhook push")."""

from __future__ import annotations

import hashlib
import hmac
import time

SIGNATURE_HEADER = "X-Controlplane-Signature"
TIMESTAMP_HEADER = "X-Controlplane-Timestamp"


def sign(*, key: str, timestamp: int, body: bytes) -> str:
    """``key`` is the hex sha256 of the runtime's token, which both sides can compute."""
    message = str(timestamp).encode() + b"." + body
    return "v1=" + hmac.new(key.encode(), message, hashlib.sha256).hexdigest()


def signed_headers(*, key: str, body: bytes, now: float | None = None) -> dict[str, str]:
    timestamp = int(now if now is not None else time.time())
    return {
        "Content-Type": "application/json",
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: sign(key=key, timestamp=timestamp, body=body),
    }
