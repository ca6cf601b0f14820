"""The value checks the editor, the API and the import share (issue 8, kinds 3, 4 and 5):
regexes in the SDKs' RE2 dialect, date-times with a time zone, numbers and semvers; numbers
turned into text without losing a digit; and the import reporting every failed check as a
warning naming flag, strategy and constraint, kept on the flag and shown on its page."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.test import Client
from yggdrasil_engine.engine import UnleashEngine

from apps.flags import selectors, services
from apps.flags.models import Flag
from apps.flags.validation import Context, Problems, normalize_feature, number_text
from apps.tenancy.models import Environment

from ..conftest import api_as
from .conftest import SYSTEM, make_flag

pytestmark = pytest.mark.django_db

VALUE = "strategies.0.constraints.0.value"


def _feature(operator: str, value: Any, name: str = "f") -> dict[str, Any]:
    return {
        "name": name,
        "enabled": True,
        "strategies": [
            {
                "name": "default",
                "constraints": [
                    {
                        # the date operators compare the current time (and fit only it)
                        "contextName": "currentTime" if operator.startswith("DATE_") else "x",
                        "operator": operator,
                        "value": value,
                    }
                ],
            }
        ],
    }


def _strict(document: dict[str, Any]) -> tuple[dict[str, Any], Problems]:
    problems = Problems()
    return normalize_feature(document, "", problems, Context(strict=True)), problems


def _evaluates(feature: dict[str, Any], context_value: str) -> bool:
    """What Unleash's own engine (Yggdrasil, inside UnleashClient) makes of a served flag."""
    engine = UnleashEngine()
    engine.take_state(json.dumps({"version": 2, "features": [feature]}))
    return bool(
        engine.is_enabled(
            feature["name"],
            {"properties": {"x": context_value}, "currentTime": "2026-06-01T00:00:00Z"},
        ).is_enabled
    )


# --------------------------------------------------------------------------- kind 4: RE2


@pytest.mark.parametrize(
    "pattern",
    [
        "^(?!test-).*$",  # look-ahead: the issue's example
        "^(?=.*admin).*$",
        "(?<=@)acme\\.com$",  # look-behind
        "(?<!internal-)user",
        "(a)\\1",  # back-reference
        "(?P<x>a)(?P=x)",
        "a{2,1001}",  # a repetition RE2 refuses
        "(unclosed",
    ],
)
def test_regex_constraint__outside_re2__refused_at_the_value_in_editor_and_api(
    pattern: str, operator, development: Environment
) -> None:  # type: ignore[no-untyped-def]
    _, problems = _strict(_feature("REGEX", pattern))
    response = api_as(operator).post(
        "/api/v1/flags/",
        {"environment": development.pk, **_feature("REGEX", pattern)},
        format="json",
    )

    assert "RE2" in " ".join(problems.errors[VALUE])
    assert response.status_code == 400
    assert VALUE in response.json()["errors"]
    assert not Flag.objects.exists()


@pytest.mark.parametrize(
    "pattern", ["^test-.*$", "\\d{3}-\\d{4}", "(?i)^ACME", "[[:alpha:]]+", "\\p{L}+$", "a|b|c"]
)
def test_regex_constraint__re2_syntax__accepted_and_the_sdk_engine_matches(pattern: str) -> None:
    feature, problems = _strict(_feature("REGEX", pattern))

    assert problems.errors == {}
    assert feature["strategies"][0]["constraints"][0]["value"] == pattern


# --------------------------------------------------------------------------- dates


@pytest.mark.parametrize(
    "value",
    [
        "2020-01-01T00:00:00",  # the issue's example: no time zone
        "2020-01-01T00:00:00.000",
        "2020-01-01",
        "2020-01-01T00:00",
        "20200101T000000Z",  # ISO 8601 basic form: no RFC 3339
        "yesterday",
    ],
)
def test_date_constraint__no_time_zone_or_not_rfc3339__refused_by_editor(value: str) -> None:
    for operator in ("DATE_AFTER", "DATE_BEFORE"):
        _, problems = _strict(_feature(operator, value))
        assert VALUE in problems.errors, (operator, value)


@pytest.mark.parametrize(
    "value", ["2020-01-01T00:00:00Z", "2020-01-01T00:00:00.000Z", "2020-01-01T02:00:00+02:00"]
)
def test_date_constraint__rfc3339_with_offset__accepted(value: str) -> None:
    feature, problems = _strict(_feature("DATE_AFTER", value))

    assert problems.errors == {}
    assert _evaluates(feature, "2026-06-01T00:00:00Z")  # 2026 is after 2020


# --------------------------------------------------------------------------- kind 5: numbers


@pytest.mark.parametrize(
    ("number", "text"),
    [
        (1234567.5, "1234567.5"),  # the issue's example, served as 1.23457e+06 before
        (0.1, "0.1"),
        (0.30000000000000004, "0.30000000000000004"),
        (123456789.123456, "123456789.123456"),
        (10.0, "10"),
        (1e-07, "1e-07"),
        (1e21, "1e+21"),
        (2**64 + 1, "18446744073709551617"),
        (123456789012345678901234567890, "123456789012345678901234567890"),
        (-42, "-42"),
        (Decimal("12345678901234567890.123456789"), "12345678901234567890.123456789"),
        (Decimal("1E+2"), "100"),
        (Decimal("0.0000001"), "0.0000001"),
    ],
)
def test_number_text__every_form__no_digit_lost(number: Any, text: str) -> None:
    assert number_text(number) == text
    if not isinstance(number, Decimal):
        assert type(number)(text if not isinstance(number, int) else int(text)) == number


@pytest.mark.parametrize("number", [1234567.5, 0.1, 123456789.123456, 2**60 + 3])
def test_num_constraint_and_payload__json_numbers__served_exactly_via_api(
    number: float, operator, development: Environment
) -> None:  # type: ignore[no-untyped-def]
    response = api_as(operator).post(
        "/api/v1/flags/",
        {
            "environment": development.pk,
            **_feature("NUM_GTE", number),
            "variants": [{"name": "v", "payload": {"type": "number", "value": number}}],
        },
        format="json",
    )

    assert response.status_code == 201, response.content
    served = selectors.flag_feature(Flag.objects.get())
    assert served["strategies"][0]["constraints"][0]["value"] == repr(number)
    assert served["variants"][0]["payload"]["value"] == repr(number)
    assert _evaluates(served, repr(number))  # number >= number


def test_num_constraint__the_issues_number__evaluates_as_written_by_the_sdk_engine(
    development: Environment,
) -> None:
    flag = make_flag(development, "big", strategies=_feature("NUM_GTE", 1234567.5)["strategies"])
    served = selectors.flag_feature(flag)

    assert _evaluates(served, "1234567.5") is True
    assert _evaluates(served, "1234567.4") is False


def test_editor_form_and_import__decimal_numbers__every_digit_kept(
    operator, development: Environment
) -> None:  # type: ignore[no-untyped-def]
    browser = Client()
    browser.force_login(operator)
    digits = "12345678901234567890.123456789"
    strategies = (
        '[{"name": "default", "constraints": '
        f'[{{"contextName": "x", "operator": "NUM_LT", "value": {digits}}}]}}]'
    )

    created = browser.post(
        f"/flags/new/?environment={development.pk}",
        {"name": "precise", "type": "release", "strategies": strategies},
    )
    imported = browser.post(
        "/flags/import/",
        {
            "environment": development.pk,
            "mode": "merge",
            "payload": json.dumps(
                {
                    "version": 2,
                    "features": [
                        {"name": "imported", **_feature("NUM_LT", "DIGITS", name="imported")}
                    ],
                }
            ).replace('"DIGITS"', digits),
        },
    )

    assert created.status_code == 302, created.content.decode()[:2000]
    assert "Imported into" in imported.content.decode(), imported.content.decode()[-3000:]
    for name in ("precise", "imported"):
        flag = Flag.objects.get(name=name)
        assert flag.strategies[0]["constraints"][0]["value"] == digits


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_number_text__not_finite__refused_at_the_field(bad: float) -> None:
    _, problems = _strict(_feature("NUM_EQ", bad))
    assert VALUE in problems.errors


# --------------------------------------------------------------------------- kind 3: import


BAD_VALUES = [
    ("DATE_AFTER", "2020-01-01T00:00:00", "time zone"),
    ("DATE_BEFORE", "2030-01-01", "time zone"),
    ("REGEX", "^(?!test-).*$", "RE2"),
    ("REGEX", "(broken", "RE2"),
    ("NUM_GT", "eighteen", "number"),
    ("NUM_LTE", "", "value is required"),
    ("SEMVER_GT", "v1.2", "without the leading v"),
    ("SEMVER_EQ", "1.2", "semantic version"),
]


def test_import__every_editor_value_check__warned_naming_flag_strategy_constraint(
    development: Environment,
) -> None:
    features = [
        {
            "name": f"flag-{i}",
            "enabled": True,
            "strategies": [
                {"name": "default", "constraints": []},
                {
                    "name": "flexibleRollout",
                    "parameters": {"rollout": "50", "stickiness": "default", "groupId": "g"},
                    "constraints": [
                        {"contextName": "appName", "operator": "IN", "values": ["web"]},
                        {"contextName": "when", "operator": operator, "value": value},
                    ],
                },
            ],
        }
        for i, (operator, value, _) in enumerate(BAD_VALUES)
    ]
    features.append(
        {
            "name": "flag-cidr",
            "enabled": True,
            "strategies": [
                {
                    "name": "default",
                    "constraints": [
                        {"contextName": "remoteAddress", "operator": "IN_CIDR", "values": ["x"]}
                    ],
                }
            ],
            "variants": [{"name": "j", "weight": 1000, "payload": {"type": "json", "value": "{"}}],
        }
    )

    result = services.flags_import(
        actor=SYSTEM, environment=development, payload={"version": 2, "features": features}
    )

    assert len(result.created) == len(features)  # stored as exported
    for i, (operator, value, words) in enumerate(BAD_VALUES):
        expected = f"flag 'flag-{i}', strategy 2 (flexibleRollout), constraint 2 (when {operator})"
        matching = [w for w in result.warnings if w.startswith(expected)]
        assert matching and words in matching[0], (operator, value, result.warnings)
        stored = Flag.objects.get(name=f"flag-{i}")
        assert stored.strategies[1]["constraints"][1].get("value", "") == value
        assert stored.import_warnings[0]["where"].startswith(
            f"strategy 2 (flexibleRollout), constraint 2 (when {operator})"
        )
    cidr = Flag.objects.get(name="flag-cidr")
    assert {w["path"] for w in cidr.import_warnings} == {
        "strategies.0.constraints.0.values.0",
        "variants.0.payload.value",
    }


def test_import_warnings__shown_on_the_flag_and_cleared_by_a_fixing_edit(
    operator, development: Environment
) -> None:  # type: ignore[no-untyped-def]
    services.flags_import(
        actor=SYSTEM,
        environment=development,
        payload={"version": 2, "features": [_feature("DATE_AFTER", "2020-01-01T00:00:00")]},
    )
    flag = Flag.objects.get(name="f")
    browser = Client()
    browser.force_login(operator)

    page = browser.get(f"/flags/{flag.pk}/").content.decode()
    listing = browser.get(f"/flags/?environment={development.pk}").content.decode()
    api = api_as(operator).get(f"/api/v1/flags/{flag.pk}/").json()
    with pytest.raises(ValidationError):
        services.flag_update(actor=SYSTEM, flag=flag, description="still broken")
    services.flag_update(
        actor=SYSTEM,
        flag=flag,
        strategies=_feature("DATE_AFTER", "2020-01-01T00:00:00Z")["strategies"],
    )

    assert "Import warnings" in page and "Give a time zone" in page
    assert "strategy 1 (default), constraint 1 (currentTime DATE_AFTER), value" in page
    assert "1 import warning" in listing
    assert api["import_warnings"][0]["path"] == VALUE
    assert Flag.objects.get(pk=flag.pk).import_warnings == []


# --------------------------------------------------------------------------- look-alike names


LOOKALIKES = [
    "n\u0435w-checkout",  # Cyrillic e
    "new\u200b-checkout",  # zero-width space
    "new-\u202echeckout",  # right-to-left override
    "new-checkout\u2066",  # bidi isolate
    "\ufeffnew-checkout",  # byte-order mark
    "cafe\u0301",  # NFD
    "\uff4e\uff45\uff57-checkout",  # full-width letters
    "\ufb01le-flag",  # ligature
]


@pytest.mark.parametrize("name", LOOKALIKES)
def test_flag_name__hidden_nfd_mixed_script_or_compatibility__refused_in_api_and_import(
    name: str, operator, development: Environment
) -> None:  # type: ignore[no-untyped-def]
    response = api_as(operator).post(
        "/api/v1/flags/",
        {"environment": development.pk, "name": name, "strategies": [{"name": "default"}]},
        format="json",
    )
    with pytest.raises(ValidationError) as refused:
        services.flags_import(
            actor=SYSTEM,
            environment=development,
            payload={"version": 2, "features": [{"name": name, "enabled": True}]},
        )

    assert response.status_code == 400 and "name" in response.json()["errors"]
    assert "payload.features.0.name" in refused.value.message_dict
    assert not Flag.objects.exists()


@pytest.mark.parametrize(
    ("existing", "twin"),
    [
        ("pay", "\u0440\u0430\u0443"),  # all Cyrillic: one script, but reads like "pay"
        ("poe", "\u0440\u043e\u0435"),
        ("xoxo", "\u0445\u043e\u0445\u043e"),
    ],
)
def test_flag_name__collides_with_an_existing_one_after_normalisation__refused(
    existing: str, twin: str, development: Environment
) -> None:
    make_flag(development, existing)

    with pytest.raises(ValidationError) as created:
        make_flag(development, twin)
    with pytest.raises(ValidationError) as imported:
        services.flags_import(
            actor=SYSTEM,
            environment=development,
            payload={"version": 2, "features": [{"name": twin, "enabled": True}]},
        )

    assert "Looks like the existing flag" in created.value.message_dict["name"][0]
    assert "payload.features.0.name" in imported.value.message_dict
    assert list(Flag.objects.values_list("name", flat=True)) == [existing]


@pytest.mark.parametrize("pair", [["pay", "\u0440\u0430\u0443"], ["ok-flag", "ok-flag"]])
def test_import__two_lookalikes_in_one_payload__refused(
    pair: list[str], development: Environment
) -> None:
    with pytest.raises(ValidationError) as refused:
        services.flags_import(
            actor=SYSTEM,
            environment=development,
            payload={"version": 2, "features": [{"name": n} for n in pair]},
        )

    assert "payload.features.1.name" in refused.value.message_dict
    assert not Flag.objects.exists()


def test_import__segment_constraint_checks__warned_naming_the_segment(
    development: Environment,
) -> None:
    result = services.flags_import(
        actor=SYSTEM,
        environment=development,
        payload={
            "version": 2,
            "features": [],
            "segments": [
                {
                    "id": 4,
                    "name": "launch",
                    "constraints": [
                        {
                            "contextName": "currentTime",
                            "operator": "DATE_AFTER",
                            "value": "2030-01-01",
                        },
                        {"contextName": "version", "operator": "SEMVER_GTE", "value": "v2.0.0"},
                    ],
                }
            ],
        },
    )

    assert result.segments_created == [4]
    assert any(
        w.startswith("segment 4 (launch), constraint 1 (currentTime DATE_AFTER), value:")
        for w in result.warnings
    ), result.warnings
    assert any(
        w.startswith("segment 4 (launch), constraint 2 (version SEMVER_GTE), value must be")
        for w in result.warnings
    ), result.warnings


def test_flag_name__stored_before_the_rule__its_flag_can_still_be_edited(
    development: Environment,
) -> None:
    # A row from before look-alike names were refused (no service creates one any more).
    legacy = Flag.objects.create(
        environment=development, name="cafe\u0301", strategies=[], enabled=False
    )

    services.flag_update(actor=SYSTEM, flag=legacy, description="still editable")

    assert Flag.objects.get(pk=legacy.pk).description == "still editable"


# JSON numbers with more digits than a float holds, as raw JSON bodies: the API keeps every
# digit, as the editor and the import page do (issue 8, kind 5: "in the import and the editor
# alike"). A float keeps 17 significant digits: each of these lost some.
LONG_NUMBERS = [
    "12345678901234567890.123456789",
    "0.12345678901234567891",
    "1.0000000000000000001",
    "9007199254740993.5",
    "-3.14159265358979323846",
]


def _raw_post(client, path: str, body: str):  # type: ignore[no-untyped-def]
    return client.post(path, body, content_type="application/json")


@pytest.mark.parametrize("digits", LONG_NUMBERS)
def test_api__long_json_numbers__every_digit_kept_in_flags_segments_and_imports(
    digits: str, operator, development: Environment
) -> None:  # type: ignore[no-untyped-def]
    client = api_as(operator)
    constraint = f'{{"contextName": "x", "operator": "NUM_LT", "value": {digits}}}'
    strategies = f'[{{"name": "default", "constraints": [{constraint}]}}]'
    payload = f'{{"type": "number", "value": {digits}}}'
    created = _raw_post(
        client,
        "/api/v1/flags/",
        f'{{"environment": {development.pk}, "name": "precise", "strategies": {strategies},'
        f' "variants": [{{"name": "v", "payload": {payload}}}]}}',
    )
    segment = _raw_post(
        client,
        "/api/v1/segments/",
        f'{{"environment": {development.pk}, "name": "s", "constraints": [{constraint}]}}',
    )
    imported = _raw_post(
        client,
        "/api/v1/flags/import/",
        f'{{"environment": {development.pk}, "mode": "merge", "payload": {{"version": 2,'
        f' "features": [{{"name": "imported", "enabled": true, "strategies": {strategies}}}]}}}}',
    )

    for response in (created, segment, imported):
        assert response.status_code in (200, 201), response.content
    for name in ("precise", "imported"):
        flag = Flag.objects.get(name=name)
        assert flag.strategies[0]["constraints"][0]["value"] == digits, name
    precise = selectors.flag_feature(Flag.objects.get(name="precise"))
    assert precise["variants"][0]["payload"]["value"] == digits
    from apps.flags.models import Segment

    assert Segment.objects.get().constraints[0]["value"] == digits


# Optional fields an exporter wrote as null mean "not set": the default applies, in the import
# and the API alike, rather than refusing the whole document (issue 8, kind 2: null = none).
NULL_FIELDS: list[tuple[dict[str, Any], Any]] = [
    ({"impressionData": None}, lambda f: f.impression_data is False),
    ({"stale": None}, lambda f: f.stale is False),
    (
        {
            "strategies": [
                {
                    "name": "default",
                    "constraints": [
                        {
                            "contextName": "x",
                            "operator": "IN",
                            "values": ["a"],
                            "inverted": None,
                            "caseInsensitive": None,
                        }
                    ],
                }
            ]
        },
        lambda f: (
            (
                f.strategies[0]["constraints"][0]["inverted"],
                f.strategies[0]["constraints"][0]["caseInsensitive"],
            )
            == (False, False)
        ),
    ),
    (
        {"variants": [{"name": "v", "weight": 1000, "stickiness": None, "weightType": None}]},
        lambda f: (
            (f.variants[0]["stickiness"], f.variants[0]["weightType"]) == ("default", "variable")
        ),
    ),
]


@pytest.mark.parametrize(("nulls", "stored_as_default"), NULL_FIELDS)
@pytest.mark.parametrize("via", ["import", "api"])
def test_import_and_api__optional_fields_null__default_applies_nothing_refused(
    nulls: dict[str, Any], stored_as_default: Any, via: str, operator, development: Environment
) -> None:  # type: ignore[no-untyped-def]
    feature = {"name": "f", "enabled": True, "strategies": [{"name": "default"}], **nulls}
    client = api_as(operator)
    if via == "import":
        response = client.post(
            "/api/v1/flags/import/",
            {
                "environment": development.pk,
                "mode": "merge",
                "payload": {"version": 2, "features": [feature, {"name": "g", "enabled": True}]},
            },
            format="json",
        )
        assert response.status_code == 200, response.content
        assert response.json()["created"] == ["f", "g"]
    else:
        response = client.post(
            "/api/v1/flags/", {"environment": development.pk, **feature}, format="json"
        )
        assert response.status_code == 201, response.content
    assert stored_as_default(Flag.objects.get(name="f"))
