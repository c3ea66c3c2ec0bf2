"""Time in the sample history: epoch-second units, UTC ISO weeks, local days, ISO timestamps.

Weeks here are ISO weeks in UTC, as the usage state counts them (nudge.domain.fold). Everything
is pure: no clock, no randomness.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

DAY = 86_400
WEEK = 7 * DAY
HOUR = 3_600
MINUTE = 60
# 1970-01-05 was a Monday, so UTC ISO weeks start at MONDAY0 + k * WEEK.
MONDAY0 = 4 * DAY

_DAY_PREFIX: dict[int, str] = {}


def iso(ms: int) -> str:
    """ISO 8601 UTC with milliseconds and a Z, as Segment libraries send; cached per day for speed."""
    day, rest = divmod(ms, DAY * 1000)
    prefix = _DAY_PREFIX.get(day)
    if prefix is None:
        prefix = _DAY_PREFIX[day] = datetime.fromtimestamp(day * DAY, UTC).strftime("%Y-%m-%dT")
    seconds, millis = divmod(rest, 1000)
    hours, seconds = divmod(seconds, 3600)
    minutes, seconds = divmod(seconds, 60)
    return f"{prefix}{hours:02d}:{minutes:02d}:{seconds:02d}.{millis:03d}Z"


def utc_datetime(ts: int) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def local_day(zone: ZoneInfo, ts: int) -> date:
    return datetime.fromtimestamp(ts, zone).date()


def monday_after(ts: int) -> int:
    """The first UTC Monday midnight strictly after ts."""
    return MONDAY0 + ((ts - MONDAY0) // WEEK + 1) * WEEK


def monday_on_or_after(ts: int) -> int:
    return MONDAY0 + -((MONDAY0 - ts) // WEEK) * WEEK


def monday_on_or_before(ts: int) -> int:
    return MONDAY0 + ((ts - MONDAY0) // WEEK) * WEEK
