"""Calendar windows in a tenant's time zone: where the hour, day, week (ISO, from Monday) or
month containing a moment starts and ends, as aware UTC datetimes.

Boundaries are local wall-clock times resolved with the IANA database (``zoneinfo``, PEP 495):
a day across a daylight-saving change lasts 23 or 25 hours; in the repeated hour of a
fall-back each of the two local hours is its own hour window (``fold`` kept); a local
midnight that does not exist (a zone that springs forward at 00:00) resolves to the first
instant after the gap."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

WINDOWS = ("hour", "day", "week", "month")


def zone(name: str) -> ZoneInfo:
    """The tenant's zone; UTC for a name the database does not know (never raises)."""
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def _at(tz: ZoneInfo, year: int, month: int, day: int) -> datetime:
    local = datetime(year, month, day, tzinfo=tz)
    # In a gap (no such wall time), fold=0 maps with the offset before the change: an instant
    # that is after the gap once expressed in the new offset, as PEP 495 specifies.
    return local.astimezone(UTC)


def window_bounds(window: str, moment: datetime, time_zone: str) -> tuple[datetime, datetime]:
    """``(start, end)`` in UTC of the ``window`` (one of ``WINDOWS``) that contains ``moment``
    (aware) in ``time_zone``; ``start <= moment < end``. Raises ``ValueError`` for an unknown
    window or a naive moment."""
    if moment.tzinfo is None:
        raise ValueError("window_bounds needs an aware moment")
    tz = zone(time_zone)
    local = moment.astimezone(tz)
    if window == "hour":
        # Whole-hour offsets (and the fold of a repeated hour) are kept by astimezone; the
        # hour is 3600 s of absolute time from its local start.
        start = local.replace(minute=0, second=0, microsecond=0).astimezone(UTC)
        if start > moment:  # a zone with a half-hour offset change inside this hour
            start -= timedelta(hours=1)
        return start, start + timedelta(hours=1)
    if window == "day":
        start = _at(tz, local.year, local.month, local.day)
        following = local.date() + timedelta(days=1)
        end = _at(tz, following.year, following.month, following.day)
    elif window == "week":
        monday = local.date() - timedelta(days=local.weekday())
        start = _at(tz, monday.year, monday.month, monday.day)
        following = monday + timedelta(days=7)
        end = _at(tz, following.year, following.month, following.day)
    elif window == "month":
        start = _at(tz, local.year, local.month, 1)
        year, month = (local.year + 1, 1) if local.month == 12 else (local.year, local.month + 1)
        end = _at(tz, year, month, 1)
    else:
        raise ValueError(f"unknown window {window!r}")
    if start > moment:  # a moment inside a gap at the boundary belongs to the window before
        return window_bounds(window, start - timedelta(microseconds=1), time_zone)
    return start, end
