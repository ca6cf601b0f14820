"""Canonical JSON and the audit hash chain (pure functions)."""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

GENESIS_HASH = "0" * 64
REDACTED = "[redacted]"
_SECRET_KEY = re.compile(
    r"(secret|token|password|passwd|api[_-]?key|private[_-]?key|credential)", re.I
)


def canonical_json(value: Any) -> bytes:
    """Sorted keys, no insignificant whitespace, UTF-8: equal content gives equal bytes."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str
    ).encode("utf-8")


def chain_hash(content: dict[str, Any], prev_hash: str) -> str:
    return hashlib.sha256(prev_hash.encode("ascii") + canonical_json(content)).hexdigest()


def redact(value: Any) -> Any:
    """Replace the values of secret-looking keys, at any depth."""
    if isinstance(value, dict):
        return {
            k: (REDACTED if _SECRET_KEY.search(str(k)) and v not in (None, "") else redact(v))
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [redact(v) for v in value]
    return value
