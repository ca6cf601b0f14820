"""The control plane's Ed25519 signing key and the registry of its published public keys.

Public interface (bundle versions use it; the runtimes app signs snapshots with it):

- ``sign(data) -> (kid, signature_b64)``: sign bytes with the active key;
- ``verify(data, kid=..., signature=...) -> bool``: check against any published key, retired
  ones included;
- ``verify_with_public_key(data, public_key=..., signature=...) -> bool``: no database;
- ``public_keys() -> list[dict]``: what ``GET /api/runtime/v1/keys`` serves;
- ``active_key_id() -> str``.

Where the private key comes from (settings, read from the environment): ``SIGNING_KEY`` (PEM
or base64 seed), else the PEM file ``SIGNING_KEY_FILE``, else the embedded default: keys
generated under ``SIGNING_KEY_DIR`` (``var/signing/<kid>.pem``, with ``active`` naming the
current one). The key id is derived from the public key, so every process agrees on it.

A key signs only once it is *activated*: recorded as the active ``SigningKey`` (audited) by
``services.signing_key_activate``, which ``migrate`` runs (a post-migrate hook, so a fresh
install and every deploy activate the configured key) and ``./manage.py signing_key activate``
runs on demand. The key it replaces stays published, retired, so runtimes still verify what
it signed. Reading (``sign``, ``public_keys``, ``active_key_id``) never writes: ``sign`` with a
key that is not the active one raises :class:`SigningKeyNotActive`, naming the command."""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import connection, transaction
from django.utils import timezone

from apps.audit.services import Actor, SystemActor, audit_record

from .models import SigningKey

ALGORITHM = "Ed25519"
_ACTIVATION_LOCK_KEY = 0x5349474E  # "SIGN": serialises activations on PostgreSQL


@dataclass(frozen=True)
class LoadedKey:
    kid: str
    private_key: Ed25519PrivateKey
    public_key: str  # raw 32 bytes, base64
    source: str  # "environment", "file" or "embedded"


def key_id(public_raw: bytes) -> str:
    return hashlib.sha256(public_raw).hexdigest()[:16]


def _public_raw(private_key: Ed25519PrivateKey) -> bytes:
    return private_key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )


def private_key_from_text(text: str) -> Ed25519PrivateKey:
    """A PEM private key, or the base64 of a raw 32-byte Ed25519 seed."""
    text = text.strip()
    if text.startswith("-----BEGIN"):
        try:
            key = serialization.load_pem_private_key(text.encode("ascii"), password=None)
        except (ValueError, TypeError) as exc:
            raise ImproperlyConfigured(
                f"The signing key is not a readable PEM private key: {exc}"
            ) from None
        if not isinstance(key, Ed25519PrivateKey):
            raise ImproperlyConfigured("The signing key must be an Ed25519 key.")
        return key
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ImproperlyConfigured("The signing key is neither PEM nor base64.") from None
    if len(raw) != 32:
        raise ImproperlyConfigured("A base64 signing key must decode to the 32-byte Ed25519 seed.")
    return Ed25519PrivateKey.from_private_bytes(raw)


def private_key_pem(private_key: Ed25519PrivateKey) -> bytes:
    return private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def generate_private_key_pem() -> bytes:
    return private_key_pem(Ed25519PrivateKey.generate())


def key_source() -> str:
    if settings.SIGNING_KEY:
        return "environment"
    if settings.SIGNING_KEY_FILE:
        return "file"
    return "embedded"


def _loaded(private_key: Ed25519PrivateKey, source: str) -> LoadedKey:
    raw = _public_raw(private_key)
    return LoadedKey(key_id(raw), private_key, base64.b64encode(raw).decode("ascii"), source)


# --------------------------------------------------------------------------- embedded keys


def _key_dir() -> Path:
    directory = Path(settings.SIGNING_KEY_DIR)
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    return directory


def _write_private_file(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def _new_embedded_key(directory: Path) -> str:
    private_key = Ed25519PrivateKey.generate()
    kid = key_id(_public_raw(private_key))
    _write_private_file(directory / f"{kid}.pem", private_key_pem(private_key))
    return kid


def _point_active_at(directory: Path, kid: str, *, replace: bool) -> bool:
    """Make ``active`` name ``kid`` atomically. Without ``replace``, only if there is none yet
    (the web server and the worker may both start on a fresh install); returns whether it won."""
    temporary = directory / f".active.{os.getpid()}.{kid}"
    temporary.write_text(kid + "\n")
    try:
        if replace:
            os.replace(temporary, directory / "active")
            return True
        try:
            os.link(temporary, directory / "active")
            return True
        except FileExistsError:
            return False
    finally:
        temporary.unlink(missing_ok=True)


class SigningKeyNotActive(ImproperlyConfigured):
    """The configured key has not been activated (or none exists yet, embedded default): run
    ``./manage.py signing_key activate`` (``migrate`` does it)."""


ACTIVATE_HINT = "run `./manage.py signing_key activate` (`./manage.py migrate` does it too)"


def _embedded_key(*, create: bool) -> Ed25519PrivateKey:
    directory = Path(settings.SIGNING_KEY_DIR)
    active = directory / "active"
    if not active.exists():
        if not create:
            raise SigningKeyNotActive(
                f"No embedded signing key in {directory} yet: {ACTIVATE_HINT}."
            )
        directory = _key_dir()
        kid = _new_embedded_key(directory)
        if not _point_active_at(directory, kid, replace=False):
            (directory / f"{kid}.pem").unlink(missing_ok=True)  # another process got there first
    kid = active.read_text().strip()
    return private_key_from_text((directory / f"{kid}.pem").read_text())


def rotate_embedded_key() -> str:
    """A new embedded key becomes active; returns its kid. The old key file stays, unused."""
    if key_source() != "embedded":
        variable = (
            "CONTROLPLANE_SIGNING_KEY"
            if key_source() == "environment"
            else "CONTROLPLANE_SIGNING_KEY_FILE"
        )
        raise ImproperlyConfigured(
            f"The signing key comes from {variable}. Generate a new one with "
            "`./manage.py signing_key generate -o FILE`, deploy it there and activate it "
            "(`./manage.py signing_key activate`, or `migrate`); the old public key stays "
            "published."
        )
    directory = _key_dir()
    kid = _new_embedded_key(directory)
    _point_active_at(directory, kid, replace=True)
    return kid


def load_active_key(*, create: bool = False) -> LoadedKey:
    """The configured private key: from ``SIGNING_KEY``, ``SIGNING_KEY_FILE`` or the embedded
    default. ``create``: generate the embedded key when there is none yet (activation only);
    otherwise a missing embedded key raises :class:`SigningKeyNotActive`. Raises
    ``ImproperlyConfigured`` for an unreadable or invalid key."""
    if settings.SIGNING_KEY:
        return _loaded(private_key_from_text(settings.SIGNING_KEY), "environment")
    if settings.SIGNING_KEY_FILE:
        path = Path(settings.SIGNING_KEY_FILE)
        try:
            text = path.read_text()
        except OSError as exc:
            raise ImproperlyConfigured(
                f"Cannot read the signing key file {path}: {exc.strerror}"
            ) from None
        return _loaded(private_key_from_text(text), "file")
    return _loaded(_embedded_key(create=create), "embedded")


# --------------------------------------------------------------------------- the registry


def publish_active_key(*, actor: Actor = None, reason: str = "") -> SigningKey:
    """Record the configured key as the active published key, generating the embedded key
    when there is none yet (idempotent; audited when it changes anything). The previously
    active key is retired, not removed. A write: called by ``services.signing_key_activate``
    (migrate, the ``signing_key`` command), never by a read."""
    loaded = load_active_key(create=True)
    existing = SigningKey.objects.filter(kid=loaded.kid, active=True).first()
    if existing is not None:
        return existing
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_ACTIVATION_LOCK_KEY])
        existing = SigningKey.objects.filter(kid=loaded.kid, active=True).first()
        if existing is not None:
            return existing
        previous = list(SigningKey.objects.filter(active=True).values_list("kid", flat=True))
        SigningKey.objects.filter(active=True).update(active=False, retired_at=timezone.now())
        key, created = SigningKey.objects.get_or_create(
            kid=loaded.kid,
            defaults={"public_key": loaded.public_key, "active": True, "algorithm": ALGORITHM},
        )
        if not created:
            key.active, key.retired_at = True, None
            key.save(update_fields=["active", "retired_at"])
        audit_record(
            actor=actor if actor is not None else SystemActor("system:signing"),
            action="signing_key.activated",
            target=key,
            target_label=f"signing key {key.kid}",
            reason=reason or f"activated the {loaded.source} key",
            before={"active_kid": previous[0] if previous else None},
            after={"active_kid": key.kid, "source": loaded.source},
        )
    return key


def sign(data: bytes) -> tuple[str, str]:
    """Sign ``data`` with the active key: ``(kid, base64 signature)``. Reads only: raises
    :class:`SigningKeyNotActive` when the configured key is not the active published one
    (never activated, or replaced in the environment without activating it), so nothing is
    signed with a key runtimes cannot look up."""
    loaded = load_active_key()
    if not SigningKey.objects.filter(kid=loaded.kid, active=True).exists():
        raise SigningKeyNotActive(
            f"The {loaded.source} signing key {loaded.kid} is not the active published key: "
            f"{ACTIVATE_HINT}."
        )
    return loaded.kid, base64.b64encode(loaded.private_key.sign(data)).decode("ascii")


def verify_with_public_key(data: bytes, *, public_key: str, signature: str) -> bool:
    try:
        key = Ed25519PublicKey.from_public_bytes(base64.b64decode(public_key, validate=True))
        key.verify(base64.b64decode(signature, validate=True), data)
    except (InvalidSignature, ValueError, binascii.Error):
        return False
    return True


def verify(data: bytes, *, kid: str, signature: str) -> bool:
    """Was ``data`` signed by the published key ``kid`` (active or retired)?"""
    public_key = SigningKey.objects.filter(kid=kid).values_list("public_key", flat=True).first()
    return public_key is not None and verify_with_public_key(
        data, public_key=public_key, signature=signature
    )


def active_key_id() -> str:
    return load_active_key().kid


def public_keys() -> list[dict[str, Any]]:
    """Every published key, the active one first: what runtimes verify against."""
    return [
        {
            "kid": key.kid,
            "alg": key.algorithm,
            "public_key": key.public_key,
            "created_at": key.created_at.isoformat(),
            "active": key.active,
            "retired_at": key.retired_at.isoformat() if key.retired_at else None,
        }
        for key in SigningKey.objects.order_by("-active", "-created_at", "-id")
    ]
