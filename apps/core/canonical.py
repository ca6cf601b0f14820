"""Canonical form and digest of bundle content and snapshots (pure functions).

Canonical JSON is RFC 8785, the JSON Canonicalization Scheme (JCS), computed by the maintained
``rfc8785`` package, so a runtime in any language reproduces the bytes (a Node.js runtime with
npm ``canonicalize`` gets the same digest; tests/crosslang checks it). Before it, numbers are
normalised: a float with no fractional part is the integer it equals, so ``temperature: 1`` and
``temperature: 1.0`` in two YAML files are the same content with the same digest (JCS writes
both as ``1`` anyway; the legacy form needs it done first).

Bundle versions signed before RFC 8785 keep the form they were signed in (``canonical_form`` on
the version, ``"python-json"``), so their stored digests and signatures stay true; see
docs/decisions/0006-canonical-json-jcs.md. The forms themselves (``canonical_json``) are
``dataplane/canonical.py``'s, the runtime's own: this module adds number normalisation and
the digests of bundle content."""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any

# One implementation of the canonical forms for the control plane and the runtime: the bytes
# signed here are, by construction, the bytes a runtime recomputes.
from dataplane.canonical import (
    FORMS,
    PYTHON_JSON,
    RFC8785,
    CanonicalError,
    canonical_json,
)

__all__ = ["FORMS", "PYTHON_JSON", "RFC8785", "CanonicalError", "canonical_json"]

# I-JSON (RFC 7493), which RFC 8785 requires: integers a double carries exactly.
MAX_SAFE_INTEGER = 2**53 - 1
# Integral floats within I-JSON's integers become ints; larger ones stay floats (RFC 8785
# writes them with the same digits, and refuses integers beyond it).
_MAX_EXACT_FLOAT_INT = MAX_SAFE_INTEGER


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


def canonical_bytes(value: Any, form: str = RFC8785) -> bytes:
    """The canonical JSON bytes of bundle content ``value``: what is stored, digested and
    signed. Raises ``ValueError`` (``CanonicalError`` included) when it has none."""
    return canonical_json(normalize(value), form)


def digest_of_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def digest(value: Any, form: str = RFC8785) -> str:
    """sha256 (hex) of the canonical JSON of bundle content ``value``."""
    return digest_of_bytes(canonical_bytes(value, form))


def form_reproducing(data: bytes, form: str) -> str:
    """The form a runtime should recompute stored canonical ``data`` (written in ``form``) in:
    RFC 8785 too for a legacy version whose bytes JCS writes identically (most are: they differ
    only in some numbers' spelling), so more runtimes, in any language, can verify it."""
    if form == RFC8785:
        return RFC8785
    try:
        return RFC8785 if canonical_json(json.loads(data)) == data else form
    except (ValueError, RecursionError):
        return form


def signed_bytes(document: dict[str, Any]) -> tuple[dict[str, Any], bytes]:
    """A snapshot marked with its canonical form and its canonical bytes: RFC 8785, unless it
    carries what RFC 8785 cannot (an integer beyond 2**53-1 in a bundle version stored before
    RFC 8785 was required); then the legacy form, which Python runtimes still verify."""
    marked = {**document, "canonical": RFC8785}
    try:
        return marked, canonical_json(marked, RFC8785)
    except CanonicalError:
        marked["canonical"] = PYTHON_JSON
        return marked, canonical_json(marked, PYTHON_JSON)
