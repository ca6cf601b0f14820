"""Canonical form and digest of bundle content (pure functions).

Canonical JSON is the project's one serialisation for hashing and signing
(``apps.audit.hashing.canonical_json``: sorted keys, no insignificant whitespace, UTF-8).
Before it, numbers are normalised the way RFC 8785 (JCS) serialises them: a float with no
fractional part is the integer it equals, so ``temperature: 1`` and ``temperature: 1.0`` in
two YAML files are the same content with the same digest."""

from __future__ import annotations

import hashlib
import math
from typing import Any

from apps.audit.hashing import canonical_json

# Beyond 2**53 a float no longer stands for one integer; leave such values as floats.
_MAX_EXACT_FLOAT_INT = 2**53


def normalize(value: Any) -> Any:
    """A copy of JSON-compatible ``value`` with numbers in canonical form. Raises ``ValueError``
    for anything JSON cannot carry (NaN, infinities, non-string keys, other types)."""
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValueError(f"object keys must be strings, not {type(key).__name__}")
            out[key] = normalize(item)
        return out
    if isinstance(value, list):
        return [normalize(item) for item in value]
    if isinstance(value, bool) or value is None or isinstance(value, str | int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("NaN and infinite numbers have no JSON form")
        if value.is_integer() and abs(value) <= _MAX_EXACT_FLOAT_INT:
            return int(value)
        return value
    raise ValueError(f"{type(value).__name__} values have no JSON form")


def canonical_bytes(value: Any) -> bytes:
    """The canonical JSON bytes of ``value``: what is stored, digested and signed."""
    return canonical_json(normalize(value))


def digest_of_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def digest(value: Any) -> str:
    """sha256 (hex) of the canonical JSON of ``value``."""
    return digest_of_bytes(canonical_bytes(value))
