"""Calendar windows in the tenant's time zone, daylight-saving changes included."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from apps.budgets.windows import window_bounds


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


@pytest.mark.parametrize(
    ("window", "moment", "zone", "start", "end"),
    [
        ("hour", utc(2026, 12, 5, 7, 42), "UTC", utc(2026, 12, 5, 7), utc(2026, 12, 5, 8)),
        # a half-hour zone: the local hour starts at :30 UTC
        (
            "hour",
            utc(2026, 12, 5, 7, 42),
            "Asia/Kolkata",
            utc(2026, 12, 5, 7, 30),
            utc(2026, 12, 5, 8, 30),
        ),
        ("day", utc(2026, 12, 5, 7, 42), "UTC", utc(2026, 12, 5), utc(2026, 12, 6)),
        # 23:30 UTC is already the 6th in Berlin (UTC+1)
        (
            "day",
            utc(2026, 12, 5, 23, 30),
            "Europe/Berlin",
            utc(2026, 12, 5, 23),
            utc(2026, 12, 6, 23),
        ),
        ("day", utc(2026, 12, 5, 3), "America/New_York", utc(2026, 12, 4, 5), utc(2026, 12, 5, 5)),
        # 2026-12-05 is a Saturday: the week began Monday 2026-11-30
        ("week", utc(2026, 12, 5, 12), "UTC", utc(2026, 11, 30), utc(2026, 12, 7)),
        ("month", utc(2026, 12, 5, 12), "UTC", utc(2026, 12, 1), utc(2027, 1, 1)),
        (
            "month",
            utc(2026, 2, 28, 23, 30),
            "Asia/Tokyo",
            utc(2026, 2, 28, 15),
            utc(2026, 3, 31, 15),
        ),
    ],
)
def test_window_bounds(
    window: str, moment: datetime, zone: str, start: datetime, end: datetime
) -> None:
    assert window_bounds(window, moment, zone) == (start, end)


def test_day_of_spring_forward__23_hours_and_the_next_day_24() -> None:
    # Europe/Berlin sprang forward on 2026-03-29 at 02:00 local (01:00 UTC)
    start, end = window_bounds("day", utc(2026, 3, 29, 12), "Europe/Berlin")
    assert (start, end) == (utc(2026, 3, 28, 23), utc(2026, 3, 29, 22))
    assert end - start == timedelta(hours=23)
    after = window_bounds("day", end, "Europe/Berlin")
    assert after[0] == end and after[1] - after[0] == timedelta(hours=24)


def test_day_of_fall_back__25_hours() -> None:
    # America/New_York fell back on 2026-11-01 at 02:00 local (06:00 UTC)
    start, end = window_bounds("day", utc(2026, 11, 1, 12), "America/New_York")
    assert (start, end) == (utc(2026, 11, 1, 4), utc(2026, 11, 2, 5))
    assert end - start == timedelta(hours=25)


def test_repeated_hour_of_fall_back__two_distinct_hour_windows() -> None:
    first = window_bounds("hour", utc(2026, 11, 1, 5, 30), "America/New_York")  # 01:30 EDT
    second = window_bounds("hour", utc(2026, 11, 1, 6, 30), "America/New_York")  # 01:30 EST
    assert first == (utc(2026, 11, 1, 5), utc(2026, 11, 1, 6))
    assert second == (utc(2026, 11, 1, 6), utc(2026, 11, 1, 7))


def test_midnight_that_does_not_exist__window_starts_after_the_gap() -> None:
    # America/Santiago springs forward at 00:00 local (2026-09-06): the day starts at 01:00 -03
    start, _end = window_bounds("day", utc(2026, 9, 6, 12), "America/Santiago")
    assert start == utc(2026, 9, 6, 4)
    assert window_bounds("day", start - timedelta(seconds=1), "America/Santiago")[1] == start


@pytest.mark.parametrize("window", ["hour", "day", "week", "month"])
@pytest.mark.parametrize(
    "zone", ["UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Asia/Kathmandu"]
)
def test_windows_tile_time__each_moment_in_exactly_one(window: str, zone: str) -> None:
    moment = utc(2026, 1, 1)
    start, end = window_bounds(window, moment, zone)
    for _ in range(60):
        assert start <= moment < end
        following = window_bounds(window, end, zone)
        assert following[0] == end  # no gap, no overlap
        start, end = following
        moment = start + (end - start) / 2


def test_unknown_zone_is_utc_and_naive_moment_refused() -> None:
    assert window_bounds("day", utc(2026, 12, 5, 7), "Not/AZone") == (
        utc(2026, 12, 5),
        utc(2026, 12, 6),
    )
    with pytest.raises(ValueError):
        window_bounds("day", datetime(2026, 12, 5), "UTC")
    with pytest.raises(ValueError):
        window_bounds("fortnight", utc(2026, 12, 5), "UTC")
