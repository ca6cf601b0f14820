"""Check a signed snapshot envelope before anything of it is applied.

Two failure classes, because the runtime reacts differently:

- ``VerificationError``: the envelope is wrong (digest mismatch, bad signature, a key id the
  control plane does not publish, a malformed body). The runtime NACKs it and keeps serving.
- ``KeysUnavailable``: the public keys could not be fetched. Nothing is known to be wrong with
  the snapshot, so the runtime backs off and retries instead of NACKing a good revision."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import threading
from collections.abc import Callable, Mapping
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from .canonical import FORMS, CanonicalError, bundle_digest, canonical_json, form_of
from .snapshot import Snapshot, SnapshotError

ALG = "Ed25519"


class VerificationError(Exception):
    """The snapshot must not be applied; the message is what the NACK reports."""


class KeysUnavailable(Exception):
    """The key set could not be fetched (network, server error): retry later, do not NACK."""


KeyFetcher = Callable[[], Mapping[str, Any]]


def _public_key(encoded: str) -> Ed25519PublicKey:
    raw = base64.b64decode(encoded, validate=True)
    return Ed25519PublicKey.from_public_bytes(raw)


class KeyRing:
    """Public keys by key id, fetched from ``/api/runtime/v1/keys`` on a miss and cached.

    Keys are only ever added: a key that signed an older snapshot stays usable after rotation
    (the control plane keeps publishing it for the same reason)."""

    def __init__(self, fetch: KeyFetcher | None = None, keys: Mapping[str, str] | None = None):
        self._fetch = fetch
        self._encoded: dict[str, str] = {}
        self._keys: dict[str, Ed25519PublicKey] = {}
        self._lock = threading.Lock()
        for kid, encoded in (keys or {}).items():
            self._add(kid, encoded)

    def _add(self, kid: str, encoded: str) -> None:
        try:
            key = _public_key(encoded)
        except (binascii.Error, ValueError):
            return  # a malformed entry cannot verify anything; other keys stay usable
        self._keys[kid] = key
        self._encoded[kid] = encoded

    def load_document(self, document: Mapping[str, Any]) -> None:
        """Add the keys of a ``/keys`` response (``{"keys": [{kid, alg, public_key}, ...]}``)."""
        entries = document.get("keys")
        if not isinstance(entries, list):
            raise KeysUnavailable("the key document has no 'keys' list")
        with self._lock:
            for entry in entries:
                if isinstance(entry, Mapping) and entry.get("alg", ALG) == ALG and entry.get("kid"):
                    self._add(str(entry["kid"]), str(entry.get("public_key", "")))

    def export(self) -> dict[str, str]:
        """``{kid: base64 public key}``, for the last-known-good cache."""
        with self._lock:
            return dict(self._encoded)

    def get(self, kid: str) -> Ed25519PublicKey:
        with self._lock:
            key = self._keys.get(kid)
        if key is not None:
            return key
        if self._fetch is None:
            raise VerificationError(f"unknown signing key {kid!r}")
        try:
            document = self._fetch()
        except KeysUnavailable:
            raise
        except Exception as exc:  # the fetcher's transport errors, whatever library raised them
            raise KeysUnavailable(f"could not fetch signing keys: {exc}") from exc
        self.load_document(document)
        with self._lock:
            key = self._keys.get(kid)
        if key is None:
            raise VerificationError(
                f"unknown signing key {kid!r}: not published by the control plane"
            )
        return key


def parse_envelope(raw: bytes) -> Mapping[str, Any]:
    try:
        envelope = json.loads(raw)
    except (UnicodeDecodeError, ValueError) as exc:
        raise VerificationError(f"the config body is not JSON: {exc}") from exc
    if not isinstance(envelope, dict):
        raise VerificationError("the config body is not a JSON object")
    return envelope


def verify_envelope(envelope: Mapping[str, Any], keys: KeyRing, *, raw: bytes = b"") -> Snapshot:
    """Digest, then signature, then each bundle's own digest; returns the parsed snapshot."""
    content = envelope.get("snapshot")
    claimed = envelope.get("digest")
    signature = envelope.get("signature")
    if not isinstance(content, dict):
        raise VerificationError("the envelope has no 'snapshot' object")
    if not isinstance(claimed, str) or not isinstance(signature, Mapping):
        raise VerificationError("the envelope is not signed (no 'digest' or 'signature')")
    # The snapshot names its canonical form (signed with it); one without the field predates
    # RFC 8785 and was signed in the legacy form (a last-known-good file from before).
    form = form_of(content)
    if form not in FORMS:
        raise VerificationError(f"unknown canonical form {content.get('canonical')!r}")
    try:
        canonical = canonical_json(content, form)
    except CanonicalError as exc:
        raise VerificationError(f"the snapshot has no canonical form: {exc}") from exc
    actual = hashlib.sha256(canonical).hexdigest()
    if not hmac.compare_digest(actual, claimed):
        raise VerificationError(
            f"digest mismatch: content hashes to {actual}, envelope says {claimed}"
        )
    if signature.get("alg") != ALG:
        raise VerificationError(f"unsupported signature algorithm {signature.get('alg')!r}")
    try:
        value = base64.b64decode(str(signature.get("value", "")), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise VerificationError("the signature is not valid base64") from exc
    key = keys.get(str(signature.get("kid", "")))
    try:
        key.verify(value, canonical)
    except InvalidSignature as exc:
        raise VerificationError(f"bad signature for key {signature.get('kid')!r}") from exc
    try:
        snapshot = Snapshot.parse(content, digest=actual, raw=raw)
    except SnapshotError as exc:
        raise VerificationError(f"malformed snapshot: {exc}") from exc
    _check_bundle_digests(snapshot)
    return snapshot


def _check_bundle_digests(snapshot: Snapshot) -> None:
    # The envelope signature already covers the bundles; this catches a control plane that
    # labelled a version with the wrong digest, which would make ACKs report the wrong thing.
    for release in snapshot.agents.values():
        for version in (release.stable, release.candidate):
            if version is None:
                continue
            try:
                actual = bundle_digest(version.bundle, version.canonical)
            except CanonicalError as exc:
                raise VerificationError(
                    f"bundle of {release.name} v{version.version} ({version.role}) has no "
                    f"canonical form: {exc}"
                ) from exc
            if actual != version.digest:
                raise VerificationError(
                    f"bundle digest mismatch for {release.name} v{version.version} ({version.role})"
                )
