"""Canonical form and digest of bundle content and snapshots (pure functions).

Canonical JSON is RFC 8785, the JSON Canonicalization Scheme (JCS), computed by the maintained
``rfc8785`` package, so a runtime in any language reproduces the bytes (a Node.js runtime with
npm ``canonicalize`` gets the same digest; tests/crosslang checks it). Before it, numbers are
normalised: a float with no fractional part is the integer it equals, so ``temperature: 1`` and
``temperature: 1.0`` in two YAML files are the same content with the same digest (JCS writes
both as ``1`` anyway; the legacy form needs it done first).

Bundle versions signed before RFC 8785 keep the form they were signed in (``canonical_form`` on
the version, ``"python-json"``), so their stored digests and signatures stay true; see
docs/decisions/0006-canonical-json-jcs.md. ``dataplane/canonical.py`` is the runtime's twin of
this module: the same forms, the same bytes (tests/dataplane/test_canonical.py)."""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any

import rfc8785

RFC8785 = "rfc8785"
PYTHON_JSON = "python-json"
FORMS = (RFC8785, PYTHON_JSON)

# I-JSON (RFC 7493), which RFC 8785 requires: integers a double carries exactly.
MAX_SAFE_INTEGER = 2**53 - 1
# Integral floats within I-JSON's integers become ints; larger ones stay floats (RFC 8785
# writes them with the same digits, and refuses integers beyond it).
_MAX_EXACT_FLOAT_INT = MAX_SAFE_INTEGER


class CanonicalError(ValueError):
    """No canonical form: a value JSON (or I-JSON, for RFC 8785) cannot carry."""


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


def _as_doubles(value: Any) -> Any:
    """Parsed JSON with every integer beyond ±(2**53-1) that is the RFC 8785 spelling of a
    double turned into that double. RFC 8785 numbers are doubles: ``1e16`` is written
    ``10000000000000000``, which Python parses back as an int; reading it as the double it is
    keeps re-canonicalising a fixed point. Other integers (2**53+1, which a double would round)
    stay, and are refused."""
    if isinstance(value, dict):
        return {key: _as_doubles(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_as_doubles(item) for item in value]
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 2**53 - 1:
        try:
            as_float = float(value)
        except OverflowError:
            return value
        # The double's own RFC 8785 spelling is these digits: it is what a JCS writer wrote.
        return as_float if rfc8785.dumps(as_float) == str(value).encode() else value
    return value


def canonical_json(value: Any, form: str = RFC8785) -> bytes:
    """The canonical bytes of plain JSON ``value`` in ``form`` ("rfc8785", or the legacy
    "python-json": ``json.dumps`` sorted and compact, kept to re-check what it signed).

    Raises ``CanonicalError`` for what the form cannot carry: for RFC 8785 an integer beyond
    ±(2**53-1) is refused, as I-JSON requires, rather than silently rounded."""
    if form == RFC8785:
        try:
            return rfc8785.dumps(value)
        except rfc8785.IntegerDomainError:
            pass  # perhaps a double written without a fraction: retried below
        except rfc8785.CanonicalizationError as exc:
            raise CanonicalError(str(exc)) from exc
        try:
            return rfc8785.dumps(_as_doubles(value))
        except rfc8785.CanonicalizationError as exc:
            raise CanonicalError(str(exc)) from exc
    if form == PYTHON_JSON:
        try:
            return json.dumps(
                value, sort_keys=True, separators=(",", ":"), ensure_ascii=False
            ).encode("utf-8")
        except (TypeError, ValueError) as exc:
            raise CanonicalError(str(exc)) from exc
    raise CanonicalError(f"unknown canonical form {form!r}")


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
