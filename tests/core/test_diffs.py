"""The field-level JSON diff the audit log and the approvals pane show (apps.core.diffs)."""

from __future__ import annotations

from typing import Any

import pytest

from apps.core.diffs import Change, json_changes


def _rows(before: Any, after: Any) -> list[tuple[str, str, str, str]]:
    return [(c.path, c.kind, c.before_json, c.after_json) for c in json_changes(before, after)]


FLAG = {
    "name": "new-checkout",
    "enabled": False,
    "strategies": [
        {"name": "flexibleRollout", "parameters": {"rollout": "10", "stickiness": "default"}},
        {"name": "userWithId", "parameters": {"userIds": "a,b"}},
    ],
    "variants": [],
}


def test_json_changes__unchanged__nothing() -> None:
    assert json_changes(FLAG, dict(FLAG)) == []
    assert json_changes(None, None) == []


def test_json_changes__changed_keys__each_with_json_values_not_reprs() -> None:
    after = {**FLAG, "enabled": True, "description": None}

    assert _rows(FLAG, after) == [
        ("description", "added", "", "null"),
        ("enabled", "changed", "false", "true"),
    ]


def test_json_changes__nested_value_in_a_list_item__full_path() -> None:
    after = {**FLAG, "strategies": [dict(s) for s in FLAG["strategies"]]}
    after["strategies"][0] = {
        **FLAG["strategies"][0],
        "parameters": {"rollout": "50", "stickiness": "default"},
    }

    assert _rows(FLAG, after) == [("strategies[0].parameters.rollout", "changed", '"10"', '"50"')]


def test_json_changes__list_items_added_and_removed__one_row_each() -> None:
    added = {**FLAG, "variants": [{"name": "blue", "weight": 1000}]}
    removed = {**FLAG, "strategies": FLAG["strategies"][:1]}
    inserted = {**FLAG, "strategies": [{"name": "default"}, *FLAG["strategies"]]}

    assert _rows(FLAG, added) == [("variants[0]", "added", "", '{"name": "blue", "weight": 1000}')]
    assert _rows(FLAG, removed) == [
        ("strategies[1]", "removed", '{"name": "userWithId", "parameters": {"userIds": "a,b"}}', "")
    ]
    assert _rows(FLAG, inserted) == [("strategies[0]", "added", "", '{"name": "default"}')]


def test_json_changes__created_or_deleted__every_field_added_or_removed() -> None:
    created = json_changes(None, {"name": "daily", "limits": {"cost_usd": "5"}})
    deleted = json_changes({"name": "daily"}, None)

    assert [(c.path, c.kind) for c in created] == [("limits", "added"), ("name", "added")]
    assert [c.as_dict() for c in deleted] == [
        {"path": "name", "kind": "removed", "before": "daily"}
    ]


def test_json_changes__most_keys_differ__still_field_by_field() -> None:
    rows = _rows({"x": 1}, {"a": 1, "b": 2, "c": 3})

    assert [r[:2] for r in rows] == [
        ("a", "added"),
        ("b", "added"),
        ("c", "added"),
        ("x", "removed"),
    ]


@pytest.mark.parametrize(
    ("before", "after", "path"),
    [
        ({"labels": {"eu west": 1}}, {"labels": {"eu west": 2}}, 'labels["eu west"]'),
        ({"m": [{"id": 1, "v": [1, 2]}]}, {"m": [{"id": 1, "v": [1, 3]}]}, "m[0].v[1]"),
        ({"t": ["a", "b", "c"]}, {"t": ["a", "x", "c"]}, "t[1]"),
        ({"0": "a"}, {"0": "b"}, '["0"]'),
        (1, 2, "(whole value)"),
    ],
)
def test_json_changes__paths__readable_and_unambiguous(before: Any, after: Any, path: str) -> None:
    assert [c.path for c in json_changes(before, after)] == [path]


def test_json_changes__type_change__shown_as_changed() -> None:
    assert _rows({"rollout": 10}, {"rollout": "10"}) == [("rollout", "changed", "10", '"10"')]


def test_json_changes__order__keys_alphabetical_indexes_numeric() -> None:
    before = {"b": list(range(12)), "a": 0}
    after = {"b": [*range(12), 12], "a": 1}
    after["b"][2] = 99

    assert [c.path for c in json_changes(before, after)] == ["a", "b[2]", "b[12]"]


def test_json_changes__list_reordered__the_whole_list_changed() -> None:
    after = {**FLAG, "strategies": FLAG["strategies"][::-1]}

    assert [(c.path, c.kind) for c in json_changes(FLAG, after)] == [("strategies", "changed")]


def test_json_changes__item_without_identity_changed__shown_as_that_item_changed() -> None:
    assert _rows({"c": [{"a": 1}, {"a": 2}]}, {"c": [{"a": 1}, {"a": 3}]}) == [
        ("c[1]", "changed", '{"a": 2}', '{"a": 3}')
    ]


@pytest.mark.parametrize(
    ("before", "after"),
    [
        ([str(i) for i in range(100_000)], [str(i) for i in range(99_999)] + ["y"]),
        ([1] * 100_000, [2] * 100_000),
        ([str(i) for i in range(50_000)], [str(i) for i in range(50_000)][::-1]),
        ([1] * 100_000, "no longer a list"),
    ],
)
def test_long_list_changed__one_change_of_the_whole_list_at_its_path(
    before: Any, after: Any
) -> None:
    """Matching list items is quadratic: a flag with 100,000 constraint values must not keep
    the audit page (or its API, a page of events) busy for minutes."""
    document = {"strategies": [{"name": "default", "constraints": [{"values": before}]}]}
    document["strategies"][0]["title"] = "a"
    changed = {"strategies": [{"name": "default", "constraints": [{"values": after}]}]}
    changed["strategies"][0]["title"] = "b"

    changes = json_changes(document, changed)

    assert [(c.path, c.kind) for c in changes] == [
        ("strategies[0].constraints[0].values", "changed"),
        ("strategies[0].title", "changed"),
    ]
    assert changes[0].before == before and changes[0].after == after


def test_long_list_unchanged__no_change() -> None:
    values = [str(i) for i in range(10_000)]
    assert json_changes({"v": values, "n": 1}, {"v": list(values), "n": 2}) == [
        Change(("n",), "changed", 1, 2)
    ]
