"""Ed25519 signatures: a version's signature verifies against the published key, and fails
after any change to its bytes; rotation keeps old keys published."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from apps.audit.models import AuditEvent
from apps.audit.services import SystemActor
from apps.bundles import signing
from apps.bundles.models import BundleVersion, SigningKey
from apps.bundles.services import bundle_version_push, signing_key_activate, signing_key_rotate
from apps.tenancy.models import Agent

from .conftest import demo_text

pytestmark = pytest.mark.django_db
ACTOR = SystemActor("system:test")


def _version(agent: Agent, name: str = "refund-agent-v1") -> BundleVersion:
    return bundle_version_push(
        actor=ACTOR, agent=agent, source=demo_text(name), message="test"
    ).version


def test_signature__verifies_against_the_published_key(agent: Agent, api) -> None:  # type: ignore[no-untyped-def]
    version = _version(agent)
    keys = api.get("/api/runtime/v1/keys").json()["keys"]
    published = next(k for k in keys if k["kid"] == version.signing_key_id)
    assert signing.verify_with_public_key(
        version.canonical_bytes, public_key=published["public_key"], signature=version.signature
    )
    assert signing.verify(
        version.canonical_bytes, kid=version.signing_key_id, signature=version.signature
    )


def test_signature__every_single_byte_change__fails_verification(agent: Agent) -> None:
    version = _version(agent)
    data = version.canonical_bytes
    for index in range(len(data)):
        tampered = data[:index] + bytes([data[index] ^ 0x01]) + data[index + 1 :]
        assert not signing.verify(
            tampered, kid=version.signing_key_id, signature=version.signature
        ), index
    assert not signing.verify(data + b" ", kid=version.signing_key_id, signature=version.signature)
    assert not signing.verify(data[:-1], kid=version.signing_key_id, signature=version.signature)


@settings(
    max_examples=50, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None
)
@given(
    data=st.binary(min_size=1, max_size=500),
    position=st.integers(min_value=0),
    flip=st.integers(1, 255),
)
def test_signature__any_byte_of_any_message_changed__fails(
    agent: Agent, data: bytes, position: int, flip: int
) -> None:
    kid, signature = signing.sign(data)
    assert signing.verify(data, kid=kid, signature=signature)
    index = position % len(data)
    tampered = data[:index] + bytes([data[index] ^ flip]) + data[index + 1 :]
    assert not signing.verify(tampered, kid=kid, signature=signature)


def test_verify__unknown_kid_or_garbage_signature__false(agent: Agent) -> None:
    version = _version(agent)
    assert not signing.verify(
        version.canonical_bytes, kid="0000000000000000", signature=version.signature
    )
    assert not signing.verify(
        version.canonical_bytes, kid=version.signing_key_id, signature="not base64!"
    )
    assert not signing.verify(
        version.canonical_bytes,
        kid=version.signing_key_id,
        signature=base64.b64encode(b"x" * 64).decode(),
    )


def test_rotate__old_key_stays_published_and_old_versions_verify(agent: Agent, api) -> None:  # type: ignore[no-untyped-def]
    old_version = _version(agent, "refund-agent-v1")
    old_kid = old_version.signing_key_id

    new_key = signing_key_rotate(actor=ACTOR, reason="yearly rotation")
    new_version = _version(agent, "support-bot-v1")

    assert new_key.kid != old_kid and new_version.signing_key_id == new_key.kid
    keys = {k["kid"]: k for k in api.get("/api/runtime/v1/keys").json()["keys"]}
    assert keys[old_kid]["active"] is False and keys[old_kid]["retired_at"]
    assert keys[new_key.kid]["active"] is True
    assert signing.verify(old_version.canonical_bytes, kid=old_kid, signature=old_version.signature)
    assert SigningKey.objects.filter(active=True).count() == 1
    event = AuditEvent.objects.filter(action="signing_key.activated").order_by("-id").first()
    assert (
        event is not None
        and event.reason == "yearly rotation"
        and event.before == {"active_kid": old_kid}
    )


def test_rotate__without_reason__refused() -> None:
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError):
        signing_key_rotate(actor=ACTOR, reason=" ")


def _raw_seed(key: Ed25519PrivateKey) -> str:
    from cryptography.hazmat.primitives.serialization import NoEncryption, PrivateFormat

    return base64.b64encode(
        key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    ).decode()


def _kid(key: Ed25519PrivateKey) -> str:
    return signing.key_id(key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw))


def test_configured_key__from_environment_pem_base64_or_file(settings, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    embedded = sorted((tmp_path / "signing").iterdir())  # the install's key (the fixture's)
    key = Ed25519PrivateKey.generate()
    settings.SIGNING_KEY = signing.private_key_pem(key).decode()
    signing_key_activate(actor=ACTOR)
    assert signing.sign(b"x")[0] == _kid(key)
    settings.SIGNING_KEY = _raw_seed(key)
    assert signing.active_key_id() == _kid(key)
    other = Ed25519PrivateKey.generate()
    settings.SIGNING_KEY = ""
    settings.SIGNING_KEY_FILE = str(tmp_path / "key.pem")
    Path(settings.SIGNING_KEY_FILE).write_bytes(signing.private_key_pem(other))
    signing_key_activate(actor=ACTOR, reason="deployed a new key")
    kid, signature = signing.sign(b"payload")
    assert kid == _kid(other)
    # deploying a new key retired the first one, which stays published
    assert SigningKey.objects.get(kid=_kid(key)).active is False
    assert signing.verify(b"payload", kid=kid, signature=signature)
    # nothing generated when a key is configured
    assert sorted((tmp_path / "signing").iterdir()) == embedded


def test_sign__configured_key_not_activated__refused_and_nothing_written(settings) -> None:  # type: ignore[no-untyped-def]
    keys, events = SigningKey.objects.count(), AuditEvent.objects.count()
    settings.SIGNING_KEY = _raw_seed(Ed25519PrivateKey.generate())

    with pytest.raises(signing.SigningKeyNotActive, match="signing_key activate"):
        signing.sign(b"x")

    assert (SigningKey.objects.count(), AuditEvent.objects.count()) == (keys, events)


def test_sign__no_embedded_key_yet__refused_without_making_one(settings, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    settings.SIGNING_KEY_DIR = tmp_path / "fresh"

    with pytest.raises(signing.SigningKeyNotActive, match="No embedded signing key"):
        signing.sign(b"x")
    with pytest.raises(signing.SigningKeyNotActive):
        signing.active_key_id()  # naming the key makes none either

    assert not (tmp_path / "fresh").exists()


def test_signing_key_activate__twice__one_event(settings, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    settings.SIGNING_KEY_DIR = tmp_path / "fresh"
    before = AuditEvent.objects.filter(action="signing_key.activated").count()

    first = signing_key_activate(actor=ACTOR)
    again = signing_key_activate(actor=ACTOR)

    assert first.kid == again.kid == signing.active_key_id()
    assert AuditEvent.objects.filter(action="signing_key.activated").count() == before + 1
    assert signing.sign(b"x")[0] == first.kid


def test_configured_key__rotate_command_refuses_with_instructions(settings) -> None:  # type: ignore[no-untyped-def]
    settings.SIGNING_KEY = _raw_seed(Ed25519PrivateKey.generate())
    with pytest.raises(ImproperlyConfigured, match="CONTROLPLANE_SIGNING_KEY"):
        signing.rotate_embedded_key()


@pytest.mark.parametrize(
    "value",
    [
        "not a key",
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----",
        base64.b64encode(b"short").decode(),
    ],
)
def test_configured_key__unreadable__improperly_configured(settings, value: str) -> None:  # type: ignore[no-untyped-def]
    settings.SIGNING_KEY = value
    with pytest.raises(ImproperlyConfigured):
        signing.sign(b"x")


def test_embedded_key__generated_once_private_and_reused(settings) -> None:  # type: ignore[no-untyped-def]
    first = signing.active_key_id()
    second = signing.active_key_id()
    directory = Path(settings.SIGNING_KEY_DIR)
    assert first == second
    assert (directory / "active").read_text().strip() == first
    assert (directory / f"{first}.pem").stat().st_mode & 0o077 == 0


def test_keys_endpoint__no_login_needed_and_shape(api) -> None:  # type: ignore[no-untyped-def]
    response = api.get("/api/runtime/v1/keys")
    assert response.status_code == 200
    key, *retired = response.json()["keys"]  # the active key first
    assert all(not k["active"] for k in retired)
    assert set(key) == {"kid", "alg", "public_key", "created_at", "active", "retired_at"}
    assert key["alg"] == "Ed25519" and key["active"] is True
    assert len(base64.b64decode(key["public_key"])) == 32


def test_signing_key_command__generate_writes_a_usable_private_file(
    tmp_path: Path, settings
) -> None:  # type: ignore[no-untyped-def]
    target = tmp_path / "prod.pem"
    call_command("signing_key", "generate", "-o", str(target))
    assert target.stat().st_mode & 0o777 == 0o600
    settings.SIGNING_KEY_FILE = str(target)
    call_command("signing_key", "activate", "--reason", "deployed prod.pem")
    kid, signature = signing.sign(b"hello")
    assert signing.verify(b"hello", kid=kid, signature=signature)


def test_reference_runtime__verifies_a_version_with_the_published_keys(agent: Agent, api) -> None:  # type: ignore[no-untyped-def]
    """The data plane library (which speaks HTTP only) accepts what this app publishes."""
    from cryptography.exceptions import InvalidSignature

    from dataplane.canonical import bundle_digest, canonical_json
    from dataplane.verify import KeyRing

    version = _version(agent)
    ring = KeyRing(fetch=lambda: api.get("/api/runtime/v1/keys").json())
    public_key = ring.get(version.signing_key_id)
    received = json.loads(version.canonical)  # what a runtime parses out of a snapshot
    assert bundle_digest(received) == version.digest
    public_key.verify(base64.b64decode(version.signature), canonical_json(received))
    with pytest.raises(InvalidSignature):
        public_key.verify(
            base64.b64decode(version.signature), canonical_json({**received, "description": "x"})
        )
