"""Bearer tokens as they arrive and as they are stored: one spelling for Django and the fast path.

A runtime token (``cprt_…``) is sent as ``Authorization: <token>`` (how the Unleash SDKs send
it) or ``Authorization: Bearer <token>``; a person's API token (``cpat_…``) as ``Token <key>``.
Both are stored as :func:`hash_token` of the raw value. The accounts app owns the token rows;
the fast path (``apps/core/fastpath``) checks tokens against a cache keyed by the same hash
before any database is touched, so both must parse and hash identically — hence this module.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
from collections.abc import Callable
from typing import Any

# Public prefixes that make a leaked token recognisable (secret scanners); not secrets.
RUNTIME_TOKEN_PREFIX = "cprt_"  # noqa: S105
API_TOKEN_PREFIX = "cpat_"  # noqa: S105
# Real tokens are ~48 characters; anything longer is refused before it is hashed or looked up.
MAX_TOKEN_LENGTH = 256


def _small_input_sha256() -> Callable[[bytes], Any]:
    """SHA-256 (FIPS 180-4) as CPython's own implementation (``_sha2`` from 3.12, ``_sha256``
    before), else ``hashlib``'s: the same digests. On the ~50 bytes of a token CPython's is
    faster than OpenSSL 3's, whose every call first looks the algorithm up: 1.4 times alone,
    twice in the fast-path server under load (0.9 µs against 1.8 µs a hash). The fast path hashes
    the ``Authorization`` header of every request it answers from the answer memo."""
    for module in ("_sha2", "_sha256"):
        with contextlib.suppress(ImportError):
            return importlib.import_module(module).sha256
    return hashlib.sha256


# ``sha256(data).hexdigest()``: hashlib's interface (see ``_small_input_sha256``)
sha256 = _small_input_sha256()


def hash_token(raw: str) -> str:
    """The stored form of a token: sha256 of its UTF-8 bytes, 64 lowercase hex digits. Tokens
    carry 256 random bits, so a fast hash suffices (a password hash is for guessable
    secrets)."""
    return sha256(raw.encode("utf-8")).hexdigest()


def token_from_header(value: str) -> str:
    """The raw token of an ``Authorization`` header value: Unleash SDKs send the bare token,
    others ``Bearer <token>`` (scheme case-insensitive). Surrounding white space is dropped;
    an empty or missing header gives ``""``."""
    value = (value or "").strip()
    if value.lower().startswith("bearer "):
        return value[7:].strip()
    return value


def runtime_token_candidate(header: str) -> str:
    """The raw runtime token of an ``Authorization`` header value when it is well formed (the
    runtime prefix, at most :data:`MAX_TOKEN_LENGTH` characters), else ``""``: what is worth
    hashing and looking up at all."""
    raw = token_from_header(header)
    if not raw.startswith(RUNTIME_TOKEN_PREFIX) or len(raw) > MAX_TOKEN_LENGTH:
        return ""
    return raw
