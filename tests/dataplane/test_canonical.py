from __future__ import annotations

import hashlib
import json
import random

from hypothesis import given
from hypothesis import strategies as st

from apps.audit.hashing import canonical_json as control_plane_canonical_json
from apps.bundles.canonical import digest as control_plane_bundle_digest
from dataplane.canonical import bundle_digest, canonical_json, digest

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
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
    assert digest({"temperature": 1.0}) != digest({"temperature": 1})
