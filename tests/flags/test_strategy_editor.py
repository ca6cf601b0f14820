"""The structured strategy editor (apps/flags/editor.py) without a script: a gradual rollout
with a constraint and variants built from form rows, rows added by the server, the JSON view
as "advanced" round-tripping both ways; and every error of flag validation in words, tied to
its strategy, constraint or variant, on the page and in the API (machine paths as keys)."""

from __future__ import annotations

from typing import Any

import pytest
from django.http import QueryDict
from django.test import Client

from apps.flags.editor import StrategyEditor
from apps.flags.models import Flag
from apps.flags.validation import in_words
from apps.tenancy.models import Environment

from ..conftest import api_as
from .conftest import make_flag


@pytest.fixture
def browser(operator) -> Client:  # type: ignore[no-untyped-def]
    client = Client()
    client.force_login(operator)
    return client


def _rows(
    *,
    strategy: dict[str, str] | None = None,
    constraints: list[dict[str, str]] = (),  # type: ignore[assignment]
    variants: list[dict[str, str]] = (),  # type: ignore[assignment]
    **fields: str,
) -> dict[str, Any]:
    """What the page posts for one strategy with ``constraints`` and flag ``variants``."""
    data: dict[str, Any] = {
        "name": "new-checkout",
        "type": "release",
        "editor": "form",
        "strategy-TOTAL_FORMS": "1",
        "strategy-INITIAL_FORMS": "1",
        "strategy-0-name": "flexibleRollout",
        "strategy-0-rollout": "25",
        "strategy-0-stickiness": "userId",
        "strategy-0-group_id": "",
        "strategy-0-list_values": "",
        "strategy-0-title": "",
        "strategy-0-segments": "",
        "strategy-0-extra": "",
        "strategy-0-constraint-TOTAL_FORMS": str(len(constraints)),
        "strategy-0-constraint-INITIAL_FORMS": "0",
        "strategy-0-variant-TOTAL_FORMS": "0",
        "strategy-0-variant-INITIAL_FORMS": "0",
        "variant-TOTAL_FORMS": str(len(variants)),
        "variant-INITIAL_FORMS": "0",
        "dependencies": "",
        "reason": "",
    }
    data.update({f"strategy-0-{k}": v for k, v in (strategy or {}).items()})
    for i, constraint in enumerate(constraints):
        data.update({f"strategy-0-constraint-{i}-{k}": v for k, v in constraint.items()})
    for i, variant in enumerate(variants):
        row = {"weight_type": "variable", "stickiness": "default", "payload_type": "", **variant}
        data.update({f"variant-{i}-{k}": v for k, v in row.items()})
    data.update(fields)
    return data


def _new(development: Environment) -> str:
    return f"/flags/new/?environment={development.pk}"


def test_editor__new_flag_page__a_gradual_rollout_row_ready(
    browser: Client, development: Environment
) -> None:
    page = browser.get(_new(development)).content.decode()

    assert 'name="strategy-TOTAL_FORMS" value="1"' in page
    assert '<option value="flexibleRollout" selected>' in page
    assert 'name="strategy-0-rollout" value="100"' in page
    assert "Add a constraint" in page and "Edit strategies and variants as JSON" in page
    assert '<textarea name="strategies"' not in page  # the JSON view is the advanced one


def test_editor__rollout_with_constraint_and_variants__stored_as_unleash_documents(
    browser: Client, development: Environment
) -> None:
    response = browser.post(
        _new(development),
        _rows(
            strategy={"group_id": "checkout-2026"},
            constraints=[
                {"context_name": "country", "operator": "IN", "values": "de\nat\n"},
                {
                    "context_name": "appVersion",
                    "operator": "SEMVER_GTE",
                    "values": "2.1.0",
                    "inverted": "on",
                },
            ],
            variants=[
                {"name": "blue", "weight_type": "fix", "weight": "250"},
                {"name": "green", "payload_type": "json", "payload_value": '{"a": 1}'},
            ],
        ),
    )

    assert response.status_code == 302, response.content.decode()
    flag = Flag.objects.get(name="new-checkout")
    assert flag.strategies == [
        {
            "name": "flexibleRollout",
            "parameters": {"rollout": "25", "stickiness": "userId", "groupId": "checkout-2026"},
            "constraints": [
                {
                    "contextName": "country",
                    "operator": "IN",
                    "values": ["de", "at"],
                    "caseInsensitive": False,
                    "inverted": False,
                },
                {
                    "contextName": "appVersion",
                    "operator": "SEMVER_GTE",
                    "value": "2.1.0",
                    "caseInsensitive": False,
                    "inverted": True,
                },
            ],
            "segments": [],
            "variants": [],
        }
    ]
    assert [(v["name"], v["weight"], v["weightType"]) for v in flag.variants] == [
        ("blue", 250, "fix"),
        ("green", 750, "variable"),
    ]
    assert flag.variants[1]["payload"] == {"type": "json", "value": '{"a": 1}'}


def test_editor__add_buttons_without_script__one_more_row_nothing_saved(
    browser: Client, development: Environment
) -> None:
    constraint = browser.post(
        _new(development), _rows(editor_add="strategy-0-constraint")
    ).content.decode()
    strategy = browser.post(_new(development), _rows(editor_add="strategy")).content.decode()

    assert 'name="strategy-0-constraint-TOTAL_FORMS" value="1"' in constraint
    assert 'name="strategy-0-constraint-0-context_name"' in constraint
    assert 'name="strategy-TOTAL_FORMS" value="2"' in strategy
    assert 'name="strategy-1-rollout"' in strategy
    assert 'name="strategy-1-constraint-TOTAL_FORMS"' in strategy
    assert "errorlist" not in constraint + strategy
    assert not Flag.objects.exists()


def test_editor__json_view_and_back__round_trips(browser: Client, development: Environment) -> None:
    data = _rows(
        constraints=[{"context_name": "email", "operator": "STR_ENDS_WITH", "values": "@acme.com"}],
        variants=[{"name": "blue"}],
    )
    as_json = browser.post(_new(development), {**data, "editor_switch": "json"})
    page = as_json.content.decode()
    assert '<textarea name="strategies"' in page and "STR_ENDS_WITH" in page
    strategies = as_json.context["form"]["strategies"].value()
    variants = as_json.context["form"]["variants"].value()

    back = browser.post(
        _new(development),
        {
            "name": "new-checkout",
            "type": "release",
            "editor": "json",
            "strategies": strategies,
            "variants": variants,
            "dependencies": "",
            "editor_switch": "form",
        },
    )
    page = back.content.decode()
    assert 'name="strategy-0-constraint-0-context_name" value="email"' in page
    assert 'name="variant-0-name" value="blue"' in page
    from_json = browser.post(
        _new(development),
        {
            "name": "from-json",
            "type": "release",
            "editor": "json",
            "strategies": strategies,
            "variants": variants,
            "dependencies": "",
        },
    )
    from_form = browser.post(_new(development), data)
    assert from_json.status_code == from_form.status_code == 302
    one, other = Flag.objects.get(name="from-json"), Flag.objects.get(name="new-checkout")
    assert one.strategies[0]["constraints"] == other.strategies[0]["constraints"]
    assert one.strategies[0]["parameters"]["rollout"] == "25"
    assert [v["name"] for v in one.variants] == [v["name"] for v in other.variants] == ["blue"]


def test_editor__editing_a_flag_with_overrides__kept_through_the_form(
    browser: Client, development: Environment
) -> None:
    flag = make_flag(
        development,
        "checkout",
        variants=[
            {"name": "a", "overrides": [{"contextName": "userId", "values": ["7"]}]},
            {"name": "b"},
        ],
    )
    page = browser.get(f"/flags/{flag.pk}/edit/")
    form = page.context["editor"]
    assert form.variants.forms[0].initial["overrides"]
    data = {
        key: value
        for key, value in _rows().items()
        if not key.startswith("variant") and key not in ("name",)
    }
    data.update(
        {
            "expected_version": str(flag.version),
            "variant-TOTAL_FORMS": "2",
            "variant-INITIAL_FORMS": "2",
            "variant-0-name": "a",
            "variant-0-weight_type": "variable",
            "variant-0-stickiness": "default",
            "variant-0-overrides": form.variants.forms[0].initial["overrides"],
            "variant-1-name": "b",
            "variant-1-weight_type": "variable",
            "variant-1-stickiness": "default",
        }
    )

    assert browser.post(f"/flags/{flag.pk}/edit/", data).status_code == 302
    flag.refresh_from_db()
    assert flag.variants[0]["overrides"] == [{"contextName": "userId", "values": ["7"]}]


# ------------------------------------------------------------------ errors in words


BAD: dict[str, tuple[dict[str, Any], str, str]] = {
    "rollout 150": (
        _rows(strategy={"rollout": "150"}),
        "strategies.0.parameters.rollout",
        "Strategy 1: rollout must be a whole number from 0 to 100.",
    ),
    "rollout abc": (
        _rows(strategy={"rollout": "abc"}),
        "strategies.0.parameters.rollout",
        "Strategy 1: rollout must be a whole number from 0 to 100.",
    ),
    "IN without values": (
        _rows(constraints=[{"context_name": "country", "operator": "IN", "values": ""}]),
        "strategies.0.constraints.0.values",
        "Strategy 1, constraint 1: values are required for IN.",
    ),
    "NUM_GT not a number": (
        _rows(
            constraints=[
                {"context_name": "country", "operator": "IN", "values": "de"},
                {"context_name": "age", "operator": "NUM_GT", "values": "eighteen"},
            ]
        ),
        "strategies.0.constraints.1.value",
        "Strategy 1, constraint 2: value must be a number, e.g. 12 or 3.5.",
    ),
    "bad date": (
        _rows(
            constraints=[
                {"context_name": "currentTime", "operator": "DATE_AFTER", "values": "soon"}
            ]
        ),
        "strategies.0.constraints.0.value",
        "Strategy 1, constraint 1: value must be a date and time with its time zone",
    ),
    "date without zone": (
        _rows(
            constraints=[
                {
                    "context_name": "currentTime",
                    "operator": "DATE_BEFORE",
                    "values": "2026-01-01T00:00:00",
                }
            ]
        ),
        "strategies.0.constraints.0.value",
        "Strategy 1, constraint 1, value: Give a time zone (Z or +02:00)",
    ),
    "fixed weights over 1000": (
        _rows(
            variants=[
                {"name": "a", "weight_type": "fix", "weight": "700"},
                {"name": "b", "weight_type": "fix", "weight": "500"},
            ]
        ),
        "variants",
        "Fixed weights add up to 1200; they may add up to 1000 at most.",
    ),
    "weight not a number": (
        _rows(variants=[{"name": "a", "weight_type": "fix", "weight": "half"}]),
        "variants.0.weight",
        "Variant 1: weight must be a whole number from 0 to 1000.",
    ),
    "currentTime with IN": (
        _rows(constraints=[{"context_name": "currentTime", "operator": "IN", "values": "x"}]),
        "strategies.0.constraints.0.operator",
        "Strategy 1, constraint 1, operator: IN does not fit the context field currentTime: "
        "use DATE_AFTER or DATE_BEFORE.",
    ),
    "date operator on another field": (
        _rows(
            constraints=[
                {
                    "context_name": "userId",
                    "operator": "DATE_AFTER",
                    "values": "2026-01-01T00:00:00Z",
                }
            ]
        ),
        "strategies.0.constraints.0.operator",
        "Strategy 1, constraint 1, operator: DATE_AFTER compares the current time: choose the "
        "context field currentTime (not userId).",
    ),
    "no context field": (
        _rows(constraints=[{"context_name": "", "operator": "IN", "values": "x"}]),
        "strategies.0.constraints.0.contextName",
        "Strategy 1, constraint 1, context field: Name the context field",
    ),
    "bad stickiness": (
        _rows(
            strategy={"stickiness": "   ", "rollout": "10"},
            **{"strategy-0-name": "flexibleRollout"},
        ),
        "strategies.0.parameters.stickiness",
        "",  # "default" is filled in for an empty one: no error (see below)
    ),
}
BAD.pop("bad stickiness")


@pytest.mark.parametrize("case", list(BAD))
def test_editor__bad_input__error_in_words_on_its_row_nothing_stored(
    case: str, browser: Client, development: Environment
) -> None:
    data, _, words = BAD[case]

    response = browser.post(_new(development), data)

    assert response.status_code == 200
    page = response.content.decode().replace("&#x27;", "'")
    assert words in page, page[page.find("errorlist") - 200 : page.find("errorlist") + 600]
    assert "].[" not in page and "strategies.0" not in page
    assert not Flag.objects.exists()


def _documents(data: dict[str, Any]) -> dict[str, Any]:
    """The same input as the API takes it: the editor's documents."""
    query = QueryDict(mutable=True)
    for key, value in data.items():
        query[key] = value
    editor = StrategyEditor(query)
    assert editor.is_valid()
    strategies, variants = editor.documents()
    return {"strategies": strategies, "variants": variants}


@pytest.mark.parametrize("case", list(BAD))
def test_api__bad_input__machine_path_keys_messages_in_words(
    case: str, operator, development: Environment
) -> None:  # type: ignore[no-untyped-def]
    data, path, words = BAD[case]

    response = api_as(operator).post(
        "/api/v1/flags/",
        {"environment": development.pk, "name": "checkout", **_documents(data)},
        format="json",
    )

    assert response.status_code == 400, response.content
    errors = response.json()["errors"]
    assert path in errors, errors
    assert any(message.startswith(words) for message in errors[path]), errors[path]
    assert not Flag.objects.exists()


@pytest.mark.parametrize(
    ("document", "path", "words"),
    [
        (
            {"strategies": [{"name": "default", "constraints": [{"contextName": "x"}]}]},
            "strategies.0.constraints.0.operator",
            "Strategy 1, constraint 1, operator: Unknown operator ''",
        ),
        (
            {"strategies": [{"name": "userWithId", "parameters": {}}]},
            "strategies.0.parameters.userIds",
            "Strategy 1: user ids is required for userWithId.",
        ),
        (
            {"strategies": [{"name": "default", "segments": [9]}]},
            "strategies.0.segments.0",
            "Strategy 1, segment 1: No segment 9 in this environment.",
        ),
        (
            {"variants": [{"name": "a", "payload": {"type": "xml", "value": "<a/>"}}]},
            "variants.0.payload.type",
            "Variant 1: payload type must be one of: string, json, csv, number.",
        ),
        (
            {"dependencies": [{"feature": "ghost"}]},
            "dependencies.0.feature",
            "Dependency 1, parent flag: No flag 'ghost' in this environment.",
        ),
        (
            {"strategies": [{"name": "default", "constraints": [{"contextName": True}]}]},
            "strategies.0.constraints.0.contextName",
            "Strategy 1, constraint 1: context field must be a string.",
        ),
        (
            {"strategies": [{"name": "default", "bogus": 1}]},
            "strategies.0.bogus",
            "Strategy 1: bogus is not a field here; expected one of:",
        ),
    ],
)
def test_api__other_error_paths__in_words_too(
    operator, development: Environment, document: dict[str, Any], path: str, words: str
) -> None:  # type: ignore[no-untyped-def]
    response = api_as(operator).post(
        "/api/v1/flags/",
        {"environment": development.pk, "name": "checkout", **document},
        format="json",
    )

    assert response.status_code == 400
    messages = response.json()["errors"][path]
    assert any(m.startswith(words) for m in messages), messages


@pytest.mark.parametrize(
    ("path", "message", "words"),
    [
        ("strategies.0.parameters.rollout", "must be x.", "Strategy 1: rollout must be x."),
        (
            "strategies.1.constraints.0.values.2",
            "must be a string.",
            "Strategy 2, constraint 1: value 3 must be a string.",
        ),
        (
            "strategies.0.variants.1.payload.type",
            "must be y.",
            "Strategy 1, variant 2: payload type must be y.",
        ),
        (
            "variants.0.overrides.1.contextName",
            "Name it.",
            "Variant 1, override 2, context field: Name it.",
        ),
        ("payload.features.3.name", "must be z.", "Flag 4: name must be z."),
        (
            "constraints.0.operator",
            "Unknown operator 'X'.",
            "Constraint 1, operator: Unknown operator 'X'.",
        ),
        ("strategies", "must be a list.", "Must be a list."),
        ("strategies.²", "must be a list.", "Must be a list."),  # a key, not an index
        ("strategies.0.²", "is odd.", "Strategy 1: ² is odd."),
        ("", "must be an object.", "Must be an object."),
    ],
)
def test_in_words__paths__read_as_places(path: str, message: str, words: str) -> None:
    assert in_words(path, message) == words


@pytest.mark.parametrize(
    "claim",
    [
        {"strategy-TOTAL_FORMS": "2000"},
        {"strategy-0-constraint-TOTAL_FORMS": "2000"},
        {"strategy-0-variant-TOTAL_FORMS": "2000"},
        {"variant-TOTAL_FORMS": "2000"},
        {
            "strategy-TOTAL_FORMS": "100",
            **{f"strategy-{i}-constraint-TOTAL_FORMS": "90" for i in range(100)},
        },
    ],
    ids=["strategies", "constraints", "strategy-variants", "variants", "spread-out"],
)
def test_editor__post_claims_thousands_of_rows__refused_in_words_and_nothing_built(
    claim: dict[str, str],
) -> None:
    """The management forms are the client's to forge: a POST claiming thousands of rows
    (each formset alone, or a few hundred spread over a hundred strategies) must not make the
    server build and render them all (seconds of a worker each); it is refused, in words."""
    data = QueryDict(mutable=True)
    data.update(_rows())
    for key, value in claim.items():
        data[key] = value
        if key.endswith("-TOTAL_FORMS"):
            data.setdefault(key.replace("TOTAL", "INITIAL"), "0")

    editor = StrategyEditor(data)

    built = (
        len(editor.strategies.forms)
        + len(editor.variants.forms)
        + sum(len(b.constraints.forms) + len(b.variants.forms) for b in editor.blocks)
    )
    assert built <= StrategyEditor.MAX_ROWS
    assert not editor.is_valid()
    assert any("rows" in e for e in editor.errors), editor.errors


def test_editor__many_rows_within_the_limit__kept(
    browser: Client, development: Environment
) -> None:
    constraints = [
        {"context_name": "userId", "operator": "IN", "values": f"u{i}"} for i in range(40)
    ]
    response = browser.post(_new(development), _rows(constraints=constraints))

    assert response.status_code == 302, response.content
    flag = Flag.objects.get(name="new-checkout")
    assert len(flag.strategies[0]["constraints"]) == 40


# Management data a page never sends (tampered, or a stale script): each is refused in words
# and nothing is stored; in particular a negative count must not read as "no rows" and save a
# flag whose strategies, constraints or variants are silently gone.
TAMPERED = {
    "strategies negative": {"strategy-TOTAL_FORMS": "-1"},
    "constraints negative": {"strategy-0-constraint-TOTAL_FORMS": "-3"},
    "variants negative": {"variant-TOTAL_FORMS": "-1"},
    "strategy variants negative": {"strategy-0-variant-TOTAL_FORMS": "-2"},
    "strategies past the editor's 100": {"strategy-TOTAL_FORMS": "101"},
    "not a number": {"strategy-TOTAL_FORMS": "abc"},
    "huge": {"strategy-0-constraint-TOTAL_FORMS": "99999999999"},
}


@pytest.mark.parametrize("case", list(TAMPERED))
def test_editor__tampered_row_counts__refused_in_words_nothing_stored(
    case: str, browser: Client, development: Environment
) -> None:
    flag = make_flag(
        development,
        "checkout",
        strategies=[
            {
                "name": "flexibleRollout",
                "parameters": {"rollout": "25", "stickiness": "default", "groupId": "checkout"},
                "constraints": [{"contextName": "userId", "operator": "IN", "values": ["7"]}],
                "variants": [],
                "segments": [],
            }
        ],
    )
    before = Flag.objects.values().get(pk=flag.pk)
    data = _rows(
        constraints=[{"context_name": "userId", "operator": "IN", "values": "7"}],
        variants=[{"name": "blue"}],
        expected_version=str(flag.version),
    )
    data.pop("name")
    data.update(TAMPERED[case])

    response = browser.post(f"/flags/{flag.pk}/edit/", data)

    assert response.status_code == 200
    page = response.content.decode()
    # a count past the editor's row cap is refused before any row is built
    words = "Too many rows" if case == "huge" else "The form was incomplete"
    assert words in page
    assert Flag.objects.values().get(pk=flag.pk) == before


HOSTILE_JSON = {
    "parameters a list": ([{"name": "default", "parameters": [[1, 2, 3]]}], []),
    "strategy not an object": ([1, "x", None], []),
    "constraints not a list": ([{"name": "default", "constraints": "IN"}], []),
    "constraint not an object": ([{"name": "default", "constraints": [5]}], []),
    "constraint values a string": (
        [{"name": "default", "constraints": [{"contextName": "a", "values": "abc"}]}],
        [],
    ),
    "operator a list": (
        [{"name": "default", "constraints": [{"contextName": "a", "operator": ["IN"]}]}],
        [],
    ),
    "segments a string": ([{"name": "default", "segments": "12"}], []),
    "variant not an object": ([], [1, "a", None]),
    "payload a list": ([], [{"name": "a", "payload": ["json", "{}"]}]),
    "strategy variants an object": ([{"name": "default", "variants": {"a": 1}}], []),
}


@pytest.mark.parametrize("case", list(HOSTILE_JSON))
def test_editor__json_the_form_cannot_show__stays_json_with_the_reason(
    case: str, browser: Client, development: Environment
) -> None:
    import json

    strategies, variants = HOSTILE_JSON[case]

    response = browser.post(
        _new(development),
        {
            "name": "checkout",
            "type": "release",
            "editor": "json",
            "strategies": json.dumps(strategies),
            "variants": json.dumps(variants),
            "dependencies": "",
            "editor_switch": "form",
        },
    )

    assert response.status_code == 200
    assert response.context["mode"] == "json"
    page = response.content.decode().replace("&#x27;", "'")
    assert "cannot be shown in the form" in page
    assert not Flag.objects.exists()


@pytest.mark.parametrize("field", ["strategy-0-extra", "variant-0-overrides"])
def test_editor__deeply_nested_hidden_json__no_500_nothing_stored(
    field: str, browser: Client, development: Environment
) -> None:
    data = _rows(variants=[{"name": "blue"}])
    data[field] = "[" * 5000 + "]" * 5000

    response = browser.post(_new(development), data)

    assert response.status_code == 200
    assert not Flag.objects.exists()
