from __future__ import annotations

import base64
import hashlib
import json
import random
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st

from apps.core.canonical import canonical_json as control_plane_canonical_json
from apps.core.canonical import digest as control_plane_bundle_digest
from dataplane.canonical import (
    PYTHON_JSON,
    RFC8785,
    CanonicalError,
    bundle_digest,
    canonical_json,
    digest,
)
from dataplane.verify import KeyRing, VerificationError, verify_envelope

from .bundles import GOOD_SUPPORT_BOT
from .conftest import snapshot_content

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53 - 1), max_value=2**53 - 1)
    | st.text()
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4)
    ),
    max_leaves=20,
)


def test_canonical_json__nested_unicode__sorted_compact_utf8() -> None:
    value = {"b": [1, {"z": None, "a": True}], "a": "café ✓", "c": 1.5}

    assert canonical_json(value) == '{"a":"café ✓","b":[1,{"a":true,"z":null}],"c":1.5}'.encode()


def test_digest__known_value__is_sha256_of_canonical_bytes() -> None:
    assert digest({"b": 1, "a": 2}) == hashlib.sha256(b'{"a":2,"b":1}').hexdigest()


@given(json_values)
def test_canonical_json__key_order_and_formatting__do_not_change_bytes(value: object) -> None:
    def shuffled(item: object, rng: random.Random) -> object:
        if isinstance(item, dict):
            keys = list(item)
            rng.shuffle(keys)
            return {key: shuffled(item[key], rng) for key in keys}
        if isinstance(item, list):
            return [shuffled(child, rng) for child in item]
        return item

    reparsed = json.loads(json.dumps(shuffled(value, random.Random(7)), indent=3))

    assert canonical_json(reparsed) == canonical_json(value)


@given(json_values)
def test_canonical_json__any_json__matches_the_control_planes_bytes(value: object) -> None:
    assert canonical_json(value) == control_plane_canonical_json(value)


@given(json_values)
def test_bundle_digest__any_json__matches_the_control_planes_bundle_digest(value: object) -> None:
    assert bundle_digest(value) == control_plane_bundle_digest(value)


def test_bundle_digest__integral_float__equals_the_integer() -> None:
    assert bundle_digest({"temperature": 1.0}) == bundle_digest({"temperature": 1})
    # RFC 8785 writes numbers as ECMAScript does: 1.0 is 1 for snapshots too.
    assert digest({"temperature": 1.0}) == digest({"temperature": 1})
    assert digest({"temperature": 1.0}, PYTHON_JSON) != digest({"temperature": 1}, PYTHON_JSON)


# Numbers whose Python spelling differs from ECMAScript's (and so from RFC 8785's).
NUMBER_SPELLINGS = [
    (0.0000001, b"1e-7"),
    (1e-7, b"1e-7"),
    (1e21, b"1e+21"),
    (1e16, b"10000000000000000"),
    (-0.0, b"0"),
    (5e-324, b"5e-324"),
    (1.0, b"1"),
    (123456789012.5, b"123456789012.5"),
    (2**53 - 1, b"9007199254740991"),
]


@pytest.mark.parametrize(("value", "expected"), NUMBER_SPELLINGS)
def test_canonical_json__numbers__ecmascript_spelling(value: float, expected: bytes) -> None:
    assert canonical_json({"n": value}) == b'{"n":' + expected + b"}"
    assert control_plane_canonical_json({"n": value}) == b'{"n":' + expected + b"}"


@pytest.mark.parametrize("value", [2**53 + 1, -(2**53 + 1), 2**64, 10**30 + 1])
def test_canonical_json__integer_beyond_i_json__refused_not_rounded(value: int) -> None:
    with pytest.raises(CanonicalError, match="exceeds safe integer"):
        canonical_json({"n": value})
    with pytest.raises(ValueError, match="exceeds safe integer"):
        control_plane_canonical_json({"n": value})


@pytest.mark.parametrize("value", [1e16, 2.0**53, 1e21 - 2**17, -1.5e300])
def test_canonical_json__double_written_without_fraction__reparsed_to_the_same_bytes(
    value: float,
) -> None:
    # RFC 8785 writes 1e16 as 10000000000000000, which Python reads back as an int.
    once = canonical_json({"n": value})
    assert canonical_json(json.loads(once)) == once


def test_canonical_json__legacy_form__python_spelling_kept_for_old_signatures() -> None:
    value = {"t": 0.0000001, "b": -0.0}
    assert canonical_json(value, PYTHON_JSON) == b'{"b":-0.0,"t":1e-07}'
    assert canonical_json(value, RFC8785) == b'{"b":0,"t":1e-7}'
    with pytest.raises(CanonicalError, match="unknown canonical form"):
        canonical_json(value, "json-ish")


# -- verifying what was signed before RFC 8785 (docs/decisions/0006) ---------------------------


def _signed(content: dict[str, Any], form: str) -> tuple[dict[str, Any], KeyRing]:
    key = Ed25519PrivateKey.generate()
    data = canonical_json(content, form)
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    envelope = {
        "snapshot": content,
        "digest": hashlib.sha256(data).hexdigest(),
        "signature": {
            "alg": "Ed25519",
            "kid": "k1",
            "value": base64.b64encode(key.sign(data)).decode(),
        },
    }
    return json.loads(json.dumps(envelope)), KeyRing(keys={"k1": base64.b64encode(raw).decode()})


def _snapshot_with(bundle: dict[str, Any], release_form: str | None) -> dict[str, Any]:
    content = snapshot_content(1, bundle=bundle)
    release = content["agents"]["support-bot"]["stable"]
    if release_form is None:
        del release["canonical"]
    else:
        release["canonical"] = release_form
    release["digest"] = bundle_digest(bundle, release_form or PYTHON_JSON)
    return content


FLOATY_BUNDLE = {
    **GOOD_SUPPORT_BOT,
    "description": "x",
    "model": {**GOOD_SUPPORT_BOT["model"], "parameters": {"temperature": 0.0000001, "top_p": 1e-5}},
}


def test_verify__legacy_cache_file__unmarked_and_python_spelled__verifies() -> None:
    # A last-known-good file written before RFC 8785: no `canonical` anywhere.
    content = _snapshot_with(FLOATY_BUNDLE, None)
    envelope, keys = _signed(content, PYTHON_JSON)

    snapshot = verify_envelope(envelope, keys)

    stable = snapshot.agents["support-bot"].stable
    assert stable is not None and stable.canonical == PYTHON_JSON


def test_verify__current_snapshot_with_a_legacy_release__verifies() -> None:
    content = {**_snapshot_with(FLOATY_BUNDLE, PYTHON_JSON), "canonical": RFC8785}
    envelope, keys = _signed(content, RFC8785)

    assert verify_envelope(envelope, keys).agents["support-bot"].stable is not None


@pytest.mark.parametrize(
    ("marked", "signed_in", "error"),
    [
        (RFC8785, PYTHON_JSON, "digest mismatch"),
        (PYTHON_JSON, RFC8785, "digest mismatch"),
        ("jcs-ish", RFC8785, "unknown canonical form"),
    ],
)
def test_verify__form_marker_not_the_form_signed__refused(
    marked: str, signed_in: str, error: str
) -> None:
    content = {**_snapshot_with(FLOATY_BUNDLE, RFC8785), "canonical": marked}
    envelope, keys = _signed(content, signed_in)

    with pytest.raises(VerificationError, match=error):
        verify_envelope(envelope, keys)


def test_verify__release_digest_in_another_form_than_declared__refused() -> None:
    content = _snapshot_with(FLOATY_BUNDLE, RFC8785)
    content["agents"]["support-bot"]["stable"]["digest"] = bundle_digest(FLOATY_BUNDLE, PYTHON_JSON)
    envelope, keys = _signed({**content, "canonical": RFC8785}, RFC8785)

    with pytest.raises(VerificationError, match="bundle digest mismatch"):
        verify_envelope(envelope, keys)
