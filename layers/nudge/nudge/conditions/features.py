"""Derived usage features: pure functions of state and `now`, shared by rules, explain and reports."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Literal

from nudge.model.calendar import week_key
from nudge.model.state import AccountRollup, UserState

FeatureStatus = Literal["never", "tried", "habitual"]
FrequencyBand = Literal["light", "medium", "heavy"]
Metric = Literal["sessions", "active_days"]
DAY = timedelta(days=1)
NEVER = 10**9  # days since something that never happened: larger than any threshold

# A feature used on this many distinct days in the last 28 is a habit; fewer is "tried".
HABIT_DAYS_28D = 3
# Mean meaningful sessions per complete week over the last 4: heavy from 5, medium from 2.
HEAVY_SESSIONS, MEDIUM_SESSIONS = 5.0, 2.0


def days_between(earlier: datetime, later: datetime) -> float:
    return (later - earlier).total_seconds() / 86400


def signed_up_at(state: UserState) -> datetime | None:
    stats = state.events.get("signed_up")
    return stats.first if stats else state.first_seen


def age_days(state: UserState, now: datetime) -> float:
    """Days since the user signed up (or was first seen): 0 for a user we know nothing of."""
    start = signed_up_at(state)
    return max(0.0, days_between(start, now)) if start else 0.0


def days_since_event(state: UserState, event: str, now: datetime) -> float:
    """Days since the last `event` ("any" = any meaningful use); NEVER if it never happened."""
    last = state.last_meaningful if event == "any" else (s.last if (s := state.events.get(event)) else None)
    return days_between(last, now) if last else float(NEVER)


def days_without(state: UserState, event: str, now: datetime) -> float:
    """Days the user has gone without `event`: since its last occurrence, or since signup if never.

    So "has not done X in N days" never matches a user younger than N days.
    """
    since = days_since_event(state, event, now)
    return since if since < NEVER else age_days(state, now)


def days_since_milestone(state: UserState, milestone: str, now: datetime) -> float:
    at = state.milestones.get(milestone)
    return days_between(at, now) if at else float(NEVER)


def count_within(state: UserState, event: str, days: int, now: datetime) -> int:
    stats = state.events.get(event)
    if stats is None:
        return 0
    first_day = (now.astimezone(UTC).date() - timedelta(days=days - 1)).toordinal()
    return stats.count_since(first_day)


def active_days_within(state: UserState, days: int, now: datetime) -> int:
    first_day = (now.astimezone(UTC).date() - timedelta(days=days - 1)).toordinal()
    return sum(1 for d in state.active_days if d >= first_day)


def feature_status(state: UserState, feature: str, now: datetime) -> FeatureStatus:
    stats = state.features.get(feature)
    if stats is None:
        return "never"
    first_day = (now.astimezone(UTC).date() - timedelta(days=27)).toordinal()
    recent = sum(1 for d in stats.days if d >= first_day)
    return "habitual" if recent >= HABIT_DAYS_28D else "tried"


def monday(day: date) -> date:
    return day - timedelta(days=day.weekday())


def complete_weeks(now: datetime, count: int) -> list[str]:
    """The last `count` complete ISO weeks before `now`, newest first."""
    this_monday = monday(now.astimezone(UTC).date())
    return [week_key(this_monday - timedelta(weeks=i)) for i in range(1, count + 1)]


def week_metric(state: UserState, week: str, metric: Metric) -> int:
    stats = state.weeks.get(week)
    if stats is None:
        return 0
    return stats.sessions if metric == "sessions" else stats.active_days


def weeks_below(state: UserState, metric: Metric, threshold: int, now: datetime, limit: int = 12) -> int:
    """Consecutive complete weeks, newest first, with `metric` below `threshold`.

    Only weeks the user had fully lived count: a user who signed up mid-week has not "declined"
    in that week.
    """
    start = signed_up_at(state)
    run = 0
    this_monday = monday(now.astimezone(UTC).date())
    for i in range(1, limit + 1):
        week_start = this_monday - timedelta(weeks=i)
        if start is None or datetime(week_start.year, week_start.month, week_start.day, tzinfo=UTC) < start:
            break
        if week_metric(state, week_key(week_start), metric) >= threshold:
            break
        run += 1
    return run


def trend_percent(state: UserState, metric: Metric, now: datetime) -> float:
    """Week-over-week change of `metric`, last complete week against the one before, in percent."""
    last, before = (week_metric(state, w, metric) for w in complete_weeks(now, 2))
    if before == 0:
        return 100.0 if last > 0 else 0.0
    return round((last - before) * 100.0 / before, 1)


def sessions_per_week(state: UserState, now: datetime, weeks: int = 4) -> float:
    return sum(week_metric(state, w, "sessions") for w in complete_weeks(now, weeks)) / weeks


def frequency_band(state: UserState, now: datetime) -> FrequencyBand:
    mean = sessions_per_week(state, now)
    if mean >= HEAVY_SESSIONS:
        return "heavy"
    return "medium" if mean >= MEDIUM_SESSIONS else "light"


def did_but_not_within(state: UserState, did: str, not_: str, within: timedelta, now: datetime) -> bool:
    """True once `within` has passed since the user first did `did` without doing `not_` by then."""
    first = state.events.get(did)
    if first is None:
        return False
    deadline = first.first + within
    if now < deadline:
        return False
    other = state.events.get(not_)
    return other is None or other.first > deadline


def window_exit(days_used: list[int], window: int, now: datetime, keep: int | None = None) -> datetime | None:
    """When a count over the last `window` UTC days next falls, with no new event.

    `days_used` are date ordinals; a day leaves the window at midnight. With `keep`, when the
    number of distinct days falls below `keep` (the keep-th most recent day leaves); without it,
    the next time the count falls at all (the oldest counted day leaves).
    """
    first_day = (now.astimezone(UTC).date() - timedelta(days=window - 1)).toordinal()
    recent = sorted((d for d in days_used if d >= first_day), reverse=True)
    if not recent or (keep is not None and len(recent) < keep):
        return None
    leaving = recent[-1] if keep is None else recent[keep - 1]
    leaves = date.fromordinal(leaving + window)
    return datetime(leaves.year, leaves.month, leaves.day, tzinfo=UTC)


def next_week_start(now: datetime) -> datetime:
    next_monday = monday(now.astimezone(UTC).date()) + timedelta(weeks=1)
    return datetime(next_monday.year, next_monday.month, next_monday.day, tzinfo=UTC)


@dataclass(frozen=True)
class AccountFacts:
    """What rules may ask of a user's account."""

    traits: dict[str, object]
    rollup: AccountRollup

    def active_users(self, week: str) -> int:
        stats = self.rollup.weeks.get(week)
        return stats.active_users if stats else 0

    def active_users_trend(self, now: datetime) -> float:
        last, before = (self.active_users(w) for w in complete_weeks(now, 2))
        if before == 0:
            return 100.0 if last > 0 else 0.0
        return round((last - before) * 100.0 / before, 1)

    def active_users_trend_at(self, instant: Instant) -> float:
        last, before = self.active_users(instant.weeks[0]), self.active_users(instant.weeks[1])
        if before == 0:
            return 100.0 if last > 0 else 0.0
        return round((last - before) * 100.0 / before, 1)


# ---------------------------------------------------------------------------------------------
# The same features at one instant, for the rule engine: what derives from `now` alone (today,
# the complete weeks, their keys) is computed once per instant, not once per feature and user.
# Each `*_at` function returns exactly what its namesake above returns for `instant.now`.

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
WEEKS_KEPT = 12  # weeks_below's limit: the weeks of history kept


@dataclass(frozen=True)
class Instant:
    """What every feature derives from `now` alone."""

    now: datetime
    today: int  # UTC date ordinal
    weeks: tuple[str, ...]  # the last WEEKS_KEPT complete ISO weeks, newest first
    # Their Mondays (midnight UTC) as time since EPOCH: exact, and compared much faster than
    # datetimes whose tzinfo is not `datetime.UTC` (as pydantic parses them).
    week_starts: tuple[timedelta, ...]
    next_week: datetime  # next_week_start(now)
    since: timedelta  # now - EPOCH
    # Midnight UTC of a date ordinal, as window_exit_at has made them (windows end at midnight).
    midnights: dict[int, datetime] = field(default_factory=dict, compare=False, repr=False)


def instant_at(now: datetime) -> Instant:
    """`now`, derived once; the last one is kept, since a sweep evaluates its users at one instant."""
    global _last_instant
    last = _last_instant
    if last is not None and last.now == now:
        return last
    # The week closes a re-check tries (conditions.facts._week_closes) are the same for every user
    # of a batch: kept apart, so they do not push out the instant being evaluated.
    closing = _week_close_instants.get(now)
    if closing is not None:
        return closing
    this_monday = monday(now.astimezone(UTC).date())
    mondays = [this_monday - timedelta(weeks=i) for i in range(1, WEEKS_KEPT + 1)]
    instant = Instant(
        now=now,
        today=now.astimezone(UTC).date().toordinal(),
        weeks=tuple(week_key(day) for day in mondays),
        week_starts=tuple(datetime(d.year, d.month, d.day, tzinfo=UTC) - EPOCH for d in mondays),
        next_week=next_week_start(now),
        since=now - EPOCH,
    )
    if now == this_monday_start(now):
        if len(_week_close_instants) >= 64:
            _week_close_instants.clear()
        _week_close_instants[now] = instant
    else:
        _last_instant = instant
    return instant


def this_monday_start(now: datetime) -> datetime:
    day = monday(now.astimezone(UTC).date())
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


_last_instant: Instant | None = None
_week_close_instants: dict[datetime, Instant] = {}


def count_within_at(state: UserState, event: str, days: int, instant: Instant) -> int:
    stats = state.events.get(event)
    return stats.count_since(instant.today - days + 1) if stats is not None else 0


def active_days_within_at(state: UserState, days: int, instant: Instant) -> int:
    first_day = instant.today - days + 1
    return sum(1 for d in state.active_days if d >= first_day)


def week_metric_at(state: UserState, index: int, metric: Metric, instant: Instant) -> int:
    """`metric` in the index-th complete week before now (0 = the last one)."""
    stats = state.weeks.get(instant.weeks[index])
    if stats is None:
        return 0
    return stats.sessions if metric == "sessions" else stats.active_days


def weeks_below_at(
    state: UserState, metric: Metric, threshold: int, instant: Instant, started: timedelta | None
) -> int:
    """weeks_below with the default limit (WEEKS_KEPT); `started` is signed_up_at(state) - EPOCH."""
    if started is None:
        return 0
    run = 0
    get = state.weeks.get
    sessions = metric == "sessions"
    for key, week_start in zip(instant.weeks, instant.week_starts, strict=True):
        if week_start < started:
            break
        stats = get(key)
        if stats is not None and (stats.sessions if sessions else stats.active_days) >= threshold:
            break
        run += 1
    return run


def trend_percent_at(state: UserState, metric: Metric, instant: Instant) -> float:
    last, before = week_metric_at(state, 0, metric, instant), week_metric_at(state, 1, metric, instant)
    if before == 0:
        return 100.0 if last > 0 else 0.0
    return round((last - before) * 100.0 / before, 1)


def frequency_band_at(state: UserState, instant: Instant) -> FrequencyBand:
    weeks = state.weeks
    total = 0
    for key in instant.weeks[:4]:
        stats = weeks.get(key)
        if stats is not None:
            total += stats.sessions
    mean = total / 4
    if mean >= HEAVY_SESSIONS:
        return "heavy"
    return "medium" if mean >= MEDIUM_SESSIONS else "light"


def window_exit_at(
    days_used: Iterable[int], window: int, instant: Instant, keep: int | None = None
) -> datetime | None:
    """window_exit at `instant.now`."""
    first_day = instant.today - window + 1
    recent = sorted([d for d in days_used if d >= first_day], reverse=True)
    if not recent or (keep is not None and len(recent) < keep):
        return None
    leaving = (recent[-1] if keep is None else recent[keep - 1]) + window
    at = instant.midnights.get(leaving)
    if at is None:
        leaves = date.fromordinal(leaving)
        at = instant.midnights[leaving] = datetime(leaves.year, leaves.month, leaves.day, tzinfo=UTC)
    return at
