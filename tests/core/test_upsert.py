"""The kernel's upsert: which rows were new, counters added in the database, idempotent
inserts, on PostgreSQL's one-statement path and on the two-statement path SQLite takes."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from django.db import connection

from apps.core.upsert import upsert
from apps.flags.models import FlagUsage
from apps.tenancy.models import Environment, Tenant

from ..races import postgresql_only, race

HOUR = datetime(2026, 12, 5, 2, tzinfo=UTC)
KEY = ("environment_id", "flag_name", "app_name", "hour")


@pytest.fixture(params=["native", "two_statements"])
def path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each test on this database's own path and on the one SQLite takes (forced here by
    naming the vendor otherwise: the two-statement path is plain SQL both databases run)."""
    if request.param == "two_statements":
        monkeypatch.setattr(connection, "vendor", "sqlite-like")
    return str(request.param)


@pytest.fixture
def environment(tenant: Tenant) -> Environment:
    return tenant.environments.get(slug="production")


def _row(environment: Environment, name: str, yes: int, no: int = 0) -> dict[str, Any]:
    return {
        "environment_id": environment.pk,
        "flag_name": name,
        "app_name": "web",
        "hour": HOUR,
        "yes": yes,
        "no": no,
    }


def _counts() -> dict[str, tuple[int, int]]:
    return {u.flag_name: (u.yes, u.no) for u in FlagUsage.objects.all()}


def test_upsert__counters__new_rows_inserted_existing_added_in_order(
    environment: Environment, path: str
) -> None:
    first = upsert(FlagUsage, [_row(environment, "a", 1)], conflict=KEY, add=("yes", "no"))

    second = upsert(
        FlagUsage,
        [_row(environment, "b", 5, 1), _row(environment, "a", 2, 3)],
        conflict=KEY,
        add=("yes", "no"),
    )

    assert [u.inserted for u in first] == [True]
    assert [u.inserted for u in second] == [True, False]
    assert second[1].pk == first[0].pk
    assert second[0].pk == FlagUsage.objects.get(flag_name="b").pk
    assert _counts() == {"a": (3, 3), "b": (5, 1)}


def test_upsert__saturate_at__caps_the_sum(environment: Environment, path: str) -> None:
    upsert(FlagUsage, [_row(environment, "a", 8)], conflict=KEY, add=("yes",), saturate_at=10)

    upsert(FlagUsage, [_row(environment, "a", 8)], conflict=KEY, add=("yes",), saturate_at=10)

    assert _counts() == {"a": (10, 0)}


def test_upsert__update__overwrites_only_the_named_fields(
    environment: Environment, path: str
) -> None:
    upsert(FlagUsage, [_row(environment, "a", 1, 1)], conflict=KEY)

    result = upsert(FlagUsage, [_row(environment, "a", 7, 9)], conflict=KEY, update=("yes",))

    assert [u.inserted for u in result] == [False]
    assert _counts() == {"a": (7, 1)}


def test_upsert__no_update__idempotent_insert_says_what_was_new(
    environment: Environment, path: str
) -> None:
    upsert(FlagUsage, [_row(environment, "a", 1)], conflict=KEY)

    retried = upsert(
        FlagUsage, [_row(environment, "a", 5), _row(environment, "b", 2)], conflict=KEY
    )

    assert [u.inserted for u in retried] == [False, True]
    assert _counts() == {"a": (1, 0), "b": (2, 0)}


def test_upsert__more_rows_than_a_batch__every_row_answered(
    environment: Environment, path: str
) -> None:
    rows = [_row(environment, f"f{n}", n) for n in range(7)]
    upsert(FlagUsage, rows[:3], conflict=KEY, add=("yes",), batch_size=2)

    result = upsert(FlagUsage, rows, conflict=KEY, add=("yes",), batch_size=2)

    assert [u.inserted for u in result] == [False] * 3 + [True] * 4
    assert _counts()["f2"] == (4, 0)


def test_upsert__nothing__no_query(django_assert_num_queries: Any) -> None:
    with django_assert_num_queries(0):
        assert upsert(FlagUsage, [], conflict=KEY) == []


def test_upsert__duplicate_keys_in_rows__refused(environment: Environment) -> None:
    with pytest.raises(ValueError, match="share their conflict values"):
        upsert(FlagUsage, [_row(environment, "a", 1), _row(environment, "a", 2)], conflict=KEY)


def test_upsert__unknown_conflict_field__refused(environment: Environment) -> None:
    with pytest.raises(ValueError, match="'variant' is not a key"):
        upsert(FlagUsage, [_row(environment, "a", 1)], conflict=(*KEY, "variant"))


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("add", [("yes",), ()])
def test_upsert__concurrent_same_new_row__postgresql__exactly_one_inserted(
    tenant: Tenant, add: tuple[str, ...]
) -> None:
    postgresql_only()
    environment = tenant.environments.get(slug="production")

    results, errors = race(
        *[lambda: upsert(FlagUsage, [_row(environment, "a", 1)], conflict=KEY, add=add)] * 4
    )

    assert not errors
    assert sorted(r[0].inserted for r in results) == [False, False, False, True]
    assert len({r[0].pk for r in results}) == 1
    assert _counts() == {"a": (4 if add else 1, 0)}
