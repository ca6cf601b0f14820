"""Canonical JSON, exactly as docs/runtime-api.md defines it.

The control plane signs the canonical bytes of a snapshot; the runtime recomputes them from the
parsed JSON and compares. Both sides must therefore produce identical bytes for equal content:
sorted keys, ``,``/``:`` separators without whitespace, non-ASCII kept as UTF-8."""

from __future__ import annotations

import hashlib
import json
from typing import Any


def canonical_json(value: Any) -> bytes:
    """Equal JSON content gives equal bytes, whatever the key order or formatting it came in."""
    # No ``default=``: anything that is not plain JSON is a bug here, not something to stringify.
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode(
        "utf-8"
    )


def digest(value: Any) -> str:
    """Hex sha256 of the canonical bytes: the content address of a snapshot or bundle."""
    return hashlib.sha256(canonical_json(value)).hexdigest()


# Beyond 2**53 a float no longer stands for one integer; such values stay floats.
_MAX_EXACT_FLOAT_INT = 2**53


def normalize_numbers(value: Any) -> Any:
    """Integral floats become ints (``1.0`` -> ``1``), as the bundle format's digest requires:
    ``temperature: 1`` and ``temperature: 1.0`` are the same content (docs/bundle-format.md)."""
    if isinstance(value, dict):
        return {key: normalize_numbers(item) for key, item in value.items()}
    if isinstance(value, list):
        return [normalize_numbers(item) for item in value]
    if isinstance(value, float) and value.is_integer() and abs(value) <= _MAX_EXACT_FLOAT_INT:
        return int(value)
    return value


def bundle_digest(bundle: Any) -> str:
    """The digest a bundle version is published under: canonical JSON after number
    normalisation (the snapshot digest, by contrast, is over the snapshot exactly as sent)."""
    return digest(normalize_numbers(bundle))
