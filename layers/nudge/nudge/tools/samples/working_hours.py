"""When people use the product: weekday and hour weights, and the draws of a moment in someone's
local working hours.

Each draw takes the generator's one random.Random, so the caller decides the order of draws.
"""

from __future__ import annotations

import random
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from nudge.tools.samples.timeutil import local_day

# When sessions happen: weekdays (Mon..Sun) and local hours, weekdays heavier than weekends.
DAY_WEIGHTS = (1.0, 1.05, 1.05, 1.0, 0.85, 0.18, 0.12)
WEEKDAY_HOURS = {7: 2, 8: 6, 9: 10, 10: 10, 11: 9, 12: 5, 13: 8, 14: 10, 15: 9, 16: 8, 17: 5,
                 18: 2.5, 19: 1.5, 20: 1.5, 21: 1}  # fmt: skip
WEEKEND_HOURS = {9: 3, 10: 6, 11: 7, 12: 6, 13: 6, 14: 6, 15: 6, 16: 5, 17: 4, 18: 3, 19: 3, 20: 3, 21: 2}


def session_hours(rng: random.Random, k: int, *, weekend: bool) -> list[int]:
    """k local hours for sessions on one day, two hours apart at least."""
    table = WEEKEND_HOURS if weekend else WEEKDAY_HOURS
    picked: list[int] = []
    for _ in range(k):
        options = [h for h in table if all(abs(h - p) >= 2 for p in picked)]
        if not options:
            break
        picked.append(rng.choices(options, [table[h] for h in options])[0])
    return picked


def local_moment(rng: random.Random, zone: ZoneInfo, day: date, hour: int) -> int:
    """A random minute and second of `hour` on the local `day`, as epoch seconds."""
    minute, second = rng.randrange(60), rng.randrange(60)
    return int(datetime(day.year, day.month, day.day, hour, minute, second, tzinfo=zone).timestamp())


def working_time(rng: random.Random, zone: ZoneInfo, not_before: int) -> int:
    """A working-hours moment on the local day of `not_before` or soon after (weekdays likelier)."""
    day = local_day(zone, not_before)
    for _ in range(5):
        weekend = day.weekday() >= 5
        if not weekend or rng.random() < 0.3:
            ts = local_moment(rng, zone, day, session_hours(rng, 1, weekend=weekend)[0])
            if ts >= not_before:
                return ts
        day += timedelta(days=1)
    return not_before
