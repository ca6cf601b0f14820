"""Every strategy, constraint, variant and dependency field: what strict validation refuses
(and where it says so), what it normalises, and what an import keeps with a warning."""

from __future__ import annotations

from typing import Any

import pytest

from apps.flags.validation import Context, Problems, normalize_feature, normalize_segment

SEGMENTS = frozenset({1, 2})
FLAGS = {"parent": [], "child-of-parent": [{"feature": "parent", "enabled": True}]}


def _strict(feature: dict[str, Any]) -> tuple[dict[str, Any], Problems]:
    problems = Problems()
    document = {"name": "my-flag", **feature}
    result = normalize_feature(
        document,
        "",
        problems,
        Context(strict=True, flag_name="my-flag", segment_ids=SEGMENTS, flags=FLAGS),
    )
    return result, problems


def _constraint(**fields: Any) -> dict[str, Any]:
    return {"strategies": [{"name": "default", "constraints": [fields]}]}


def _strategy(name: str, **parameters: Any) -> dict[str, Any]:
    return {"strategies": [{"name": name, "parameters": parameters}]}


BAD = {
    # flag fields
    "name empty": ({"name": ""}, "name"),
    "name with a space": ({"name": "my flag"}, "name"),
    "name reserved for kill switches": ({"name": "kill.tool.search"}, "name"),
    "name too long": ({"name": "x" * 201}, "name"),
    "type unknown": ({"type": "feature"}, "type"),
    "enabled not a boolean": ({"enabled": "yes"}, "enabled"),
    "impressionData not a boolean": ({"impressionData": 1}, "impressionData"),
    "strategies not a list": ({"strategies": {"name": "default"}}, "strategies"),
    "unknown flag field": ({"colour": "red"}, "colour"),
    # strategies
    "strategy not an object": ({"strategies": ["default"]}, "strategies.0"),
    "strategy name unknown": ({"strategies": [{"name": "gradualRollout"}]}, "strategies.0.name"),
    "strategy name missing": ({"strategies": [{}]}, "strategies.0.name"),
    "parameters not an object": (
        {"strategies": [{"name": "default", "parameters": ["a"]}]},
        "strategies.0.parameters",
    ),
    "parameter nested object": (
        _strategy("flexibleRollout", rollout={"v": 1}),
        "strategies.0.parameters.rollout",
    ),
    "parameter unknown for strategy": (
        _strategy("default", rollout="5"),
        "strategies.0.parameters.rollout",
    ),
    "flexibleRollout rollout missing": (
        _strategy("flexibleRollout"),
        "strategies.0.parameters.rollout",
    ),
    "flexibleRollout rollout above 100": (
        _strategy("flexibleRollout", rollout="101"),
        "strategies.0.parameters.rollout",
    ),
    "flexibleRollout rollout negative": (
        _strategy("flexibleRollout", rollout=-1),
        "strategies.0.parameters.rollout",
    ),
    "flexibleRollout rollout not a number": (
        _strategy("flexibleRollout", rollout="ten"),
        "strategies.0.parameters.rollout",
    ),
    "flexibleRollout rollout fractional": (
        _strategy("flexibleRollout", rollout="10.5"),
        "strategies.0.parameters.rollout",
    ),
    "flexibleRollout stickiness blank": (
        _strategy("flexibleRollout", rollout="5", stickiness=" "),
        "strategies.0.parameters.stickiness",
    ),
    "gradualRolloutUserId percentage missing": (
        _strategy("gradualRolloutUserId", groupId="g"),
        "strategies.0.parameters.percentage",
    ),
    "gradualRolloutSessionId percentage 200": (
        _strategy("gradualRolloutSessionId", percentage="200"),
        "strategies.0.parameters.percentage",
    ),
    "gradualRolloutRandom percentage word": (
        _strategy("gradualRolloutRandom", percentage="half"),
        "strategies.0.parameters.percentage",
    ),
    "userWithId userIds missing": (_strategy("userWithId"), "strategies.0.parameters.userIds"),
    "userWithId userIds empty": (
        _strategy("userWithId", userIds=" , "),
        "strategies.0.parameters.userIds",
    ),
    "userWithId userIds empty entry": (
        _strategy("userWithId", userIds="1,,2"),
        "strategies.0.parameters.userIds",
    ),
    "remoteAddress IPs missing": (_strategy("remoteAddress"), "strategies.0.parameters.IPs"),
    "remoteAddress IP invalid": (
        _strategy("remoteAddress", IPs="10.0.0.1,300.1.1.1"),
        "strategies.0.parameters.IPs",
    ),
    "applicationHostname hostNames missing": (
        _strategy("applicationHostname"),
        "strategies.0.parameters.hostNames",
    ),
    "segment reference unknown": (
        {"strategies": [{"name": "default", "segments": [9]}]},
        "strategies.0.segments.0",
    ),
    "segment reference not a number": (
        {"strategies": [{"name": "default", "segments": ["1"]}]},
        "strategies.0.segments.0",
    ),
    "strategy title not a string": (
        {"strategies": [{"name": "default", "title": ["t"]}]},
        "strategies.0.title",
    ),
    # constraints
    "constraint not an object": (
        {"strategies": [{"name": "default", "constraints": ["userId IN 1"]}]},
        "strategies.0.constraints.0",
    ),
    "constraint contextName missing": (
        _constraint(operator="IN", values=["1"]),
        "strategies.0.constraints.0.contextName",
    ),
    "constraint contextName blank": (
        _constraint(contextName=" ", operator="IN", values=["1"]),
        "strategies.0.constraints.0.contextName",
    ),
    "constraint operator unknown": (
        _constraint(contextName="userId", operator="EQUALS", values=["1"]),
        "strategies.0.constraints.0.operator",
    ),
    "constraint operator missing": (
        _constraint(contextName="userId", values=["1"]),
        "strategies.0.constraints.0.operator",
    ),
    "IN without values": (
        _constraint(contextName="userId", operator="IN", values=[]),
        "strategies.0.constraints.0.values",
    ),
    "IN with value instead of values": (
        _constraint(contextName="userId", operator="IN", value="1"),
        "strategies.0.constraints.0.value",
    ),
    "values not a list": (
        _constraint(contextName="userId", operator="IN", values="1"),
        "strategies.0.constraints.0.values",
    ),
    "values entry an object": (
        _constraint(contextName="userId", operator="IN", values=[{}]),
        "strategies.0.constraints.0.values.0",
    ),
    "STR_STARTS_WITH without values": (
        _constraint(contextName="email", operator="STR_STARTS_WITH"),
        "strategies.0.constraints.0.values",
    ),
    "STR_ENDS_WITH without values": (
        _constraint(contextName="email", operator="STR_ENDS_WITH", values=[]),
        "strategies.0.constraints.0.values",
    ),
    "STR_CONTAINS with value": (
        _constraint(contextName="email", operator="STR_CONTAINS", value="x"),
        "strategies.0.constraints.0.value",
    ),
    "IN_CIDR bad range": (
        _constraint(contextName="remoteAddress", operator="IN_CIDR", values=["10.0.0.0/33"]),
        "strategies.0.constraints.0.values.0",
    ),
    "NUM_EQ not a number": (
        _constraint(contextName="n", operator="NUM_EQ", value="twelve"),
        "strategies.0.constraints.0.value",
    ),
    "NUM_GT missing value": (
        _constraint(contextName="n", operator="NUM_GT"),
        "strategies.0.constraints.0.value",
    ),
    "NUM_GTE with values": (
        _constraint(contextName="n", operator="NUM_GTE", value="1", values=["2"]),
        "strategies.0.constraints.0.values",
    ),
    "NUM_LT boolean": (
        _constraint(contextName="n", operator="NUM_LT", value=True),
        "strategies.0.constraints.0.value",
    ),
    "NUM_LTE empty": (
        _constraint(contextName="n", operator="NUM_LTE", value=""),
        "strategies.0.constraints.0.value",
    ),
    "DATE_AFTER not a date": (
        _constraint(contextName="currentTime", operator="DATE_AFTER", value="tomorrow"),
        "strategies.0.constraints.0.value",
    ),
    "DATE_BEFORE without zone": (
        _constraint(contextName="currentTime", operator="DATE_BEFORE", value="2026-01-01T00:00:00"),
        "strategies.0.constraints.0.value",
    ),
    "SEMVER_EQ not semver": (
        _constraint(contextName="version", operator="SEMVER_EQ", value="1.2"),
        "strategies.0.constraints.0.value",
    ),
    "SEMVER_GT leading v": (
        _constraint(contextName="version", operator="SEMVER_GT", value="v1.2.3"),
        "strategies.0.constraints.0.value",
    ),
    "SEMVER_LT garbage": (
        _constraint(contextName="version", operator="SEMVER_LT", value="latest"),
        "strategies.0.constraints.0.value",
    ),
    "REGEX does not compile": (
        _constraint(contextName="userId", operator="REGEX", value="(abc"),
        "strategies.0.constraints.0.value",
    ),
    "caseInsensitive not a boolean": (
        _constraint(contextName="userId", operator="IN", values=["1"], caseInsensitive="true"),
        "strategies.0.constraints.0.caseInsensitive",
    ),
    "inverted not a boolean": (
        _constraint(contextName="userId", operator="IN", values=["1"], inverted=0),
        "strategies.0.constraints.0.inverted",
    ),
    "constraint unknown field": (
        _constraint(contextName="userId", operator="IN", values=["1"], negate=True),
        "strategies.0.constraints.0.negate",
    ),
    # variants
    "variants not a list": ({"variants": {"name": "a"}}, "variants"),
    "variant name missing": (
        {"variants": [{"weight": 1000, "weightType": "fix"}]},
        "variants.0.name",
    ),
    "variant name blank": ({"variants": [{"name": " "}]}, "variants.0.name"),
    "variant name twice": ({"variants": [{"name": "a"}, {"name": "a"}]}, "variants.1.name"),
    "variant weight above 1000": (
        {"variants": [{"name": "a", "weight": 1001, "weightType": "fix"}]},
        "variants.0.weight",
    ),
    "variant weight not whole": (
        {"variants": [{"name": "a", "weight": 2.5, "weightType": "fix"}]},
        "variants.0.weight",
    ),
    "variant weightType unknown": (
        {"variants": [{"name": "a", "weightType": "fixed"}]},
        "variants.0.weightType",
    ),
    "fixed weights above 1000": (
        {
            "variants": [
                {"name": "a", "weight": 600, "weightType": "fix"},
                {"name": "b", "weight": 600, "weightType": "fix"},
            ]
        },
        "variants",
    ),
    "fixed weights short of 1000": (
        {"variants": [{"name": "a", "weight": 600, "weightType": "fix"}]},
        "variants",
    ),
    "variant stickiness blank": (
        {"variants": [{"name": "a", "stickiness": ""}]},
        "variants.0.stickiness",
    ),
    "payload type unknown": (
        {"variants": [{"name": "a", "payload": {"type": "xml", "value": "<a/>"}}]},
        "variants.0.payload.type",
    ),
    "payload json invalid": (
        {"variants": [{"name": "a", "payload": {"type": "json", "value": "{nope"}}]},
        "variants.0.payload.value",
    ),
    "payload number invalid": (
        {"variants": [{"name": "a", "payload": {"type": "number", "value": "many"}}]},
        "variants.0.payload.value",
    ),
    "payload not an object": (
        {"variants": [{"name": "a", "payload": "blue"}]},
        "variants.0.payload",
    ),
    "override contextName missing": (
        {"variants": [{"name": "a", "overrides": [{"values": ["1"]}]}]},
        "variants.0.overrides.0.contextName",
    ),
    "override values empty": (
        {"variants": [{"name": "a", "overrides": [{"contextName": "userId", "values": []}]}]},
        "variants.0.overrides.0.values",
    ),
    "strategy variant weight negative": (
        {
            "strategies": [
                {"name": "default", "variants": [{"name": "a", "weight": -1, "weightType": "fix"}]}
            ]
        },
        "strategies.0.variants.0.weight",
    ),
    "strategy variant overrides not allowed": (
        {"strategies": [{"name": "default", "variants": [{"name": "a", "overrides": []}]}]},
        "strategies.0.variants.0.overrides",
    ),
    # dependencies
    "dependency on missing flag": (
        {"dependencies": [{"feature": "nope"}]},
        "dependencies.0.feature",
    ),
    "dependency on itself": ({"dependencies": [{"feature": "my-flag"}]}, "dependencies.0.feature"),
    "dependency without feature": ({"dependencies": [{"enabled": True}]}, "dependencies.0.feature"),
    "dependency two levels": (
        {"dependencies": [{"feature": "child-of-parent"}]},
        "dependencies.0.feature",
    ),
    "dependency enabled not boolean": (
        {"dependencies": [{"feature": "parent", "enabled": "no"}]},
        "dependencies.0.enabled",
    ),
    "dependency variants when disabled": (
        {"dependencies": [{"feature": "parent", "enabled": False, "variants": ["a"]}]},
        "dependencies.0.variants",
    ),
}


@pytest.mark.parametrize("case", list(BAD))
def test_normalize_feature__strict_bad_field__error_at_its_path(case: str) -> None:
    feature, path = BAD[case]

    _, problems = _strict(feature)

    assert path in problems.errors, problems.errors


def test_normalize_feature__strict_good_document__normalised_as_served() -> None:
    feature, problems = _strict(
        {
            "description": None,
            "type": "experiment",
            "enabled": True,
            "strategies": [
                {
                    "name": "flexibleRollout",
                    "parameters": {"rollout": 30},
                    "constraints": [
                        {
                            "contextName": "email",
                            "operator": "STR_ENDS_WITH",
                            "values": ["@acme.com"],
                            "caseInsensitive": True,
                        },
                        {
                            "contextName": "appVersion",
                            "operator": "SEMVER_GTE",
                            "value": "2.0.0-beta.1",
                        },
                        {
                            "contextName": "currentTime",
                            "operator": "DATE_AFTER",
                            "value": "2026-01-01T00:00:00Z",
                        },
                        {"contextName": "n", "operator": "NUM_LTE", "value": 12.5},
                        {
                            "contextName": "remoteAddress",
                            "operator": "IN_CIDR",
                            "values": ["10.0.0.0/8"],
                        },
                        {
                            "contextName": "userId",
                            "operator": "REGEX",
                            "value": "^[a-z]+$",
                            "inverted": True,
                        },
                    ],
                    "segments": [1],
                },
                {
                    "name": "userWithId",
                    "parameters": {"userIds": "1, 2"},
                    "variants": [{"name": "sv", "weightType": "variable"}],
                },
            ],
            "variants": [
                {
                    "name": "a",
                    "weight": 200,
                    "weightType": "fix",
                    "payload": {"type": "json", "value": '{"x": 1}'},
                },
                {
                    "name": "b",
                    "stickiness": "userId",
                    "overrides": [{"contextName": "userId", "values": ["7"]}],
                },
                {"name": "c"},
            ],
            "dependencies": [{"feature": "parent", "variants": ["blue"]}],
        }
    )

    assert problems.errors == {}
    rollout = feature["strategies"][0]
    assert rollout["parameters"] == {"rollout": "30", "stickiness": "default", "groupId": "my-flag"}
    assert rollout["constraints"][0] == {
        "contextName": "email",
        "operator": "STR_ENDS_WITH",
        "values": ["@acme.com"],
        "caseInsensitive": True,
        "inverted": False,
    }
    assert rollout["constraints"][3]["value"] == "12.5"
    assert rollout["segments"] == [1]
    assert feature["strategies"][1]["variants"][0]["weight"] == 1000
    assert [v["weight"] for v in feature["variants"]] == [200, 400, 400]
    assert feature["variants"][1]["stickiness"] == "userId"
    assert feature["variants"][2]["stickiness"] == "default"
    assert feature["dependencies"] == [{"feature": "parent", "enabled": True, "variants": ["blue"]}]
    assert feature["description"] == ""


def test_normalize_feature__import_mode__keeps_what_sdks_evaluate_as_off_with_warnings() -> None:
    problems = Problems()
    feature = normalize_feature(
        {
            "name": "imported",
            "enabled": True,
            "createdAt": "2024-01-01",
            "strategies": [
                {"name": "myCustomStrategy", "parameters": {"x": "1"}},
                {
                    "name": "default",
                    "segments": [404],
                    "constraints": [
                        {"contextName": "c", "operator": "NOT_A_VALID_OPERATOR", "value": "v"},
                        {"contextName": "userId", "operator": "REGEX", "value": "(broken"},
                        {"contextName": "environment", "operator": "IN", "values": []},
                    ],
                },
                {"name": "default", "disabled": True},
            ],
            "variants": [{"name": "a", "weight": 33, "payload": {"type": "string", "value": "x"}}],
        },
        "",
        problems,
        Context(strict=False, segment_ids=frozenset({1})),
    )

    assert problems.errors == {}
    assert len(feature["strategies"]) == 2  # a disabled strategy never evaluates
    assert feature["strategies"][0]["name"] == "myCustomStrategy"
    assert feature["strategies"][1]["segments"] == [404]
    assert feature["strategies"][1]["constraints"][0]["operator"] == "NOT_A_VALID_OPERATOR"
    assert feature["variants"][0]["weight"] == 33  # weights are kept as exported
    assert any("myCustomStrategy" in w for w in problems.warnings)
    assert any("NOT_A_VALID_OPERATOR" in w for w in problems.warnings)
    assert any("segment 404" in w for w in problems.warnings)


def test_normalize_feature__import_mode__type_errors_still_refused() -> None:
    problems = Problems()
    normalize_feature(
        {"name": "x", "strategies": [{"name": "flexibleRollout", "parameters": {"rollout": [30]}}]},
        "payload.features.0",
        problems,
        Context(strict=False),
    )
    assert "payload.features.0.strategies.0.parameters.rollout" in problems.errors


def test_normalize_segment__strict__needs_constraints_and_an_id() -> None:
    problems = Problems()
    normalize_segment(
        {"id": 0, "name": "beta", "constraints": []}, "", problems, Context(strict=True)
    )
    assert set(problems.errors) == {"id", "constraints"}
