"""Canonical JSON, exactly as docs/runtime-api.md defines it.

The control plane signs the canonical bytes of a snapshot; the runtime recomputes them from the
parsed JSON and compares. Both sides must therefore produce identical bytes for equal content,
in any language: the form is RFC 8785, the JSON Canonicalization Scheme (JCS), computed by the
maintained ``rfc8785`` package (sorted keys by UTF-16 code units, no whitespace, ECMAScript
number formatting: ``1e-7`` not Python's ``1e-07``, ``0`` for ``-0.0``, ``1`` for ``1.0``).

Two forms exist, named in the documents they cover (docs/decisions/0006-canonical-json-jcs.md):

- ``"rfc8785"``: the form of everything signed since this change;
- ``"python-json"``: what older control planes signed, Python's
  ``json.dumps(sort_keys=True, separators=(",", ":"), ensure_ascii=False)``. A document with no
  ``canonical`` field is in this form; it is kept only so bundle versions and cached snapshots
  signed before the change keep verifying."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import rfc8785

RFC8785 = "rfc8785"
PYTHON_JSON = "python-json"
FORMS = (RFC8785, PYTHON_JSON)
# What a document without a ``canonical`` field was signed in (it predates the field).
UNMARKED_FORM = PYTHON_JSON


class CanonicalError(ValueError):
    """The value has no canonical form: a number outside I-JSON (integers beyond ±(2**53-1),
    NaN, infinities), a non-string key, or a type JSON cannot carry; or the form is unknown."""


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
    """Equal JSON content gives equal bytes, whatever the key order or formatting it came in.

    ``form`` is ``"rfc8785"`` (default) or ``"python-json"`` (legacy, see the module docstring).
    Raises ``CanonicalError`` for values the form cannot carry: RFC 8785 requires I-JSON
    (RFC 7493), so an integer beyond ±(2**53-1) is refused rather than rounded."""
    if form == RFC8785:
        try:
            return rfc8785.dumps(value)
        except rfc8785.IntegerDomainError:
            pass  # perhaps a double written without a fraction: retried below
        except rfc8785.CanonicalizationError as exc:
            raise CanonicalError(f"no RFC 8785 form: {exc}") from exc
        try:
            return rfc8785.dumps(_as_doubles(value))
        except rfc8785.CanonicalizationError as exc:
            raise CanonicalError(f"no RFC 8785 form: {exc}") from exc
    if form == PYTHON_JSON:
        # No ``default=``: anything that is not plain JSON is a bug here, not something to
        # stringify.
        try:
            return json.dumps(
                value, sort_keys=True, separators=(",", ":"), ensure_ascii=False
            ).encode("utf-8")
        except (TypeError, ValueError) as exc:
            raise CanonicalError(f"no canonical form: {exc}") from exc
    raise CanonicalError(f"unknown canonical form {form!r}; known: {', '.join(FORMS)}")


def form_of(document: Any) -> str:
    """The canonical form a snapshot or bundle release declares (``canonical`` field), or the
    legacy form when it predates the field."""
    if isinstance(document, dict):
        declared = document.get("canonical", UNMARKED_FORM)
        return declared if isinstance(declared, str) else ""
    return UNMARKED_FORM


def digest(value: Any, form: str = RFC8785) -> str:
    """Hex sha256 of the canonical bytes: the content address of a snapshot or bundle."""
    return hashlib.sha256(canonical_json(value, form)).hexdigest()


# Beyond 2**53 a float no longer stands for one integer; such values stay floats.
_MAX_EXACT_FLOAT_INT = 2**53


def normalize_numbers(value: Any) -> Any:
    """Integral floats become ints (``1.0`` -> ``1``), as the bundle format's digest requires:
    ``temperature: 1`` and ``temperature: 1.0`` are the same content (docs/bundle-format.md).
    RFC 8785 already writes them so; the legacy form needs it done first."""
    if isinstance(value, dict):
        return {key: normalize_numbers(item) for key, item in value.items()}
    if isinstance(value, list):
        return [normalize_numbers(item) for item in value]
    if isinstance(value, float) and value.is_integer() and abs(value) <= _MAX_EXACT_FLOAT_INT:
        return int(value)
    return value


def bundle_canonical_json(bundle: Any, form: str = RFC8785) -> bytes:
    """The bytes a bundle version is digested and signed over: canonical JSON after number
    normalisation (RFC 8785 writes an integral float as the integer already; the legacy form
    needs it done first)."""
    if form == RFC8785:
        return canonical_json(bundle, form)
    return canonical_json(normalize_numbers(bundle), form)


def bundle_digest(bundle: Any, form: str = RFC8785) -> str:
    """The digest a bundle version is published under: canonical JSON after number
    normalisation (the snapshot digest, by contrast, is over the snapshot exactly as sent)."""
    return hashlib.sha256(bundle_canonical_json(bundle, form)).hexdigest()
