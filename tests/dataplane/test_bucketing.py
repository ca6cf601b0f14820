from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from dataplane.bucketing import flexible_rollout_enabled, normalized_hash, stickiness_value

SPEC_DIR = (
    Path(__file__).resolve().parents[3] / "shared" / "conformance" / "unleash-client-specification"
)


@pytest.mark.parametrize(
    ("identifier", "group_id", "expected"),
    [("123", "gr1", 73), ("999", "groupX", 25)],
)
def test_normalized_hash__unleash_reference_values(
    identifier: str, group_id: str, expected: int
) -> None:
    # The values every official Unleash SDK's normalizedValue test pins.
    assert normalized_hash(identifier, group_id) == expected


def test_normalized_hash__always_in_one_to_modulus() -> None:
    buckets = {normalized_hash(str(i), "group", modulus=10) for i in range(500)}

    assert buckets == set(range(1, 11))


def test_flexible_rollout__zero_percent__never_enabled() -> None:
    assert not flexible_rollout_enabled(0, "g", "sessionId", {"sessionId": "s"})


def test_flexible_rollout__missing_stickiness_field__disabled() -> None:
    assert not flexible_rollout_enabled(100, "g", "userId", {"sessionId": "s"})


def test_flexible_rollout__default_stickiness__prefers_user_then_session() -> None:
    assert stickiness_value("default", {"userId": "u", "sessionId": "s"}) == "u"
    assert stickiness_value("default", {"sessionId": "s"}) == "s"
    assert stickiness_value("default", {}, random_id=lambda: "r") == "r"


def test_flexible_rollout__custom_field__read_from_properties() -> None:
    assert stickiness_value("tenantId", {"properties": {"tenantId": "t1"}}) == "t1"


def _flexible_rollout_cases() -> list[Any]:
    """Every spec test whose toggle uses only constraint-free flexibleRollout strategies."""
    if not SPEC_DIR.is_dir():
        return []
    cases = []
    for path in sorted(SPEC_DIR.glob("*.json")):
        spec = json.loads(path.read_text())
        if not isinstance(spec, dict) or "state" not in spec:
            continue
        features = {feature["name"]: feature for feature in spec["state"].get("features", [])}
        for test in spec.get("tests", []):
            feature = features.get(test["toggleName"])
            strategies = feature.get("strategies", []) if feature else []
            usable = (
                feature
                and feature.get("enabled")
                and not feature.get("dependencies")
                and strategies
                and all(
                    strategy["name"] == "flexibleRollout"
                    and not strategy.get("constraints")
                    and not strategy.get("segments")
                    and strategy["parameters"].get("stickiness") != "random"
                    for strategy in strategies
                )
            )
            if usable:
                cases.append(pytest.param(feature, test, id=f"{path.stem}: {test['description']}"))
    return cases


CASES = _flexible_rollout_cases()


def test_conformance_cases__are_found() -> None:
    if not SPEC_DIR.is_dir():
        pytest.skip("shared/conformance is not beside the repository")
    assert len(CASES) >= 10


@pytest.mark.parametrize(("feature", "test"), CASES)
def test_flexible_rollout__unleash_client_specification(
    feature: dict[str, Any], test: dict[str, Any]
) -> None:
    enabled = any(
        flexible_rollout_enabled(
            strategy["parameters"]["rollout"],
            strategy["parameters"].get("groupId") or feature["name"],
            strategy["parameters"].get("stickiness") or "default",
            test["context"],
        )
        for strategy in feature["strategies"]
    )

    assert enabled is test["expectedResult"]
