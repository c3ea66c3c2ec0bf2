"""The pure fold of Segment messages into usage state.

Order-independent and idempotent by construction: counts skip messageIds already seen in the
dedupe window; first/last are min/max; traits and account membership are last-writer-wins on
(timestamp, messageId); sessions are kept as merged intervals, so the same events in any order
give the same sessions; milestones and weekly figures are derived afresh at the end.
"""

from __future__ import annotations

import bisect
import json
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from typing import Any

from nudge.domain.bounds import cap_unplanned
from nudge.domain.fold_parts import DIGEST_BYTES as DIGEST_BYTES  # identity merges the digests
from nudge.domain.fold_parts import (
    Seen,
    built,
    digest,
    keep_properties,
    private_copy,
    trim_props,
)
from nudge.model.calendar import week_key
from nudge.model.limits import (
    CONTEXT_VALUE_BYTES,
    SEEN_KEPT,
    UNPLANNED_EVENTS_KEPT,
)
from nudge.model.messages import Alias, Group, Identify, Message, event_name, event_properties
from nudge.model.state import (
    CONTEXT_FALLBACKS,
    CONTEXT_KEPT,
    AccountState,
    EventStats,
    FeatureStats,
    PropertyStats,
    RollupDelta,
    Stamped,
    UserState,
    WeekStats,
)
from nudge.rulebook.plan import TrackingPlan

_CONTEXT_KEYS = frozenset(CONTEXT_KEPT)
_ZERO = timedelta(0)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_ORDINAL = _EPOCH.date().toordinal()


@dataclass(frozen=True)
class FoldWindow:
    """How much history the state keeps; both bounds are judged against `now`."""

    dedupe_days: int = 7
    weeks_kept: int = 12
    # limits.SEEN_KEPT: a user past it within the window (a bot, a runaway loop) loses the oldest
    # days of dedupe first, never a write.
    max_seen: int = SEEN_KEPT


def horizon_start(now: datetime, weeks_kept: int) -> datetime:
    """Midnight UTC on the Monday that opens the oldest kept ISO week."""
    today = now.astimezone(UTC).date()
    monday = today - timedelta(days=today.weekday()) - timedelta(weeks=weeks_kept - 1)
    return datetime(monday.year, monday.month, monday.day, tzinfo=UTC)


@lru_cache(maxsize=64)
def _bounds(now: datetime, weeks_kept: int) -> tuple[datetime, int, int, int]:
    """(horizon, its first day, its epoch second, today) for one `now`: the same for every user of
    a request."""
    horizon = horizon_start(now, weeks_kept)
    return horizon, horizon.toordinal(), int(horizon.timestamp()), now.astimezone(UTC).toordinal()


# Won stamps, per key: (at, messageId, value), made into Stamped models once, at the end.
_Won = dict[str, tuple[datetime, str, Any]]


def fold(
    state: UserState | None,
    user_id: str,
    messages: Iterable[Message],
    plan: TrackingPlan,
    now: datetime,
    window: FoldWindow = FoldWindow(),
) -> UserState:
    """Return the new state of one user after `messages` (all about that user), received at `now`.

    Every message must carry a timestamp (the ingest service fills a missing one with `now`).
    """
    # One pass over the messages into local tallies; the state's models are made once at the end,
    # one per event, feature, trait or week this fold changed: `state` stays untouched and the fold
    # costs what the messages touch, not what the user has accumulated.
    old = UserState(user_id=user_id).__dict__ if state is None else state.__dict__
    horizon, first_day, horizon_epoch, today = _bounds(now, window.weeks_kept)
    seen = Seen(old["seen"], today, window.dedupe_days)
    old_events: dict[str, EventStats] = old["events"]
    kept_of, feature_of, meaningful = plan.kept_of, plan.feature_of, plan.meaningful
    first_seen, last_seen, last_meaningful = old["first_seen"], old["last_seen"], old["last_meaningful"]
    # event or feature -> [count, first, last, {day: count} or {day}] of this fold's occurrences
    tallies: dict[str, list[Any]] = {}
    uses: dict[str, list[Any]] = {}
    props: dict[str, PropertyStats] = {}  # private copies, per event whose plan keeps properties
    owned: set[int] = set()
    traits: _Won = {}
    context: _Won = {}
    account: tuple[datetime, str, Any] | None = None
    new_days: set[int] = set()
    starts: list[int] = []
    for message in messages:
        mid = message.messageId or message.dedupe_key()
        if not seen.add(digest(mid)):
            continue
        at = message.timestamp or now
        if at.tzinfo is not UTC and at.utcoffset() == _ZERO:
            # Pydantic gives each parsed time a tzinfo of its own, and two aware times with
            # different tzinfo objects compare through both offsets (ten times the cost): the
            # fold compares each time several times, so it takes it in UTC once (the same instant).
            at = at.replace(tzinfo=UTC)
        if first_seen is None or at < first_seen:
            first_seen = at
        if last_seen is None or at > last_seen:
            last_seen = at
        if message.context and not _CONTEXT_KEYS.isdisjoint(message.context):
            _win(context, old["context"], _kept_context(message.context), at, mid)
        if isinstance(message, Identify):
            _win(traits, old["traits"], message.traits.model_dump(exclude_unset=True), at, mid)
            continue
        if isinstance(message, Group):
            if account is None:
                best = old["account"]
                newer = best is None or (at, mid) > (best.at, best.mid)
            else:
                newer = (at, mid) > (account[0], account[1])
            if newer:
                account = (at, mid, message.groupId)
            continue
        if isinstance(message, Alias):
            continue  # seen, like an identify without traits; the merge it asks for is the ingest's
        name = event_name(message)
        seconds = at.timestamp()
        day = int(seconds // 86400) + _EPOCH_ORDINAL
        recent = at >= horizon
        tally = tallies.get(name)
        if tally is None:
            tally = tallies[name] = [1, at, at, {}]
        else:
            tally[0] += 1
            if at < tally[1]:
                tally[1] = at
            if at > tally[2]:
                tally[2] = at
        if recent:
            daily = tally[3]
            daily[day] = daily.get(day, 0) + 1
        kept = kept_of.get(name)
        if kept is not None:  # the one lookup an event whose plan keeps no property costs
            kept_props = props.get(name)
            if kept_props is None:
                before = old_events.get(name)
                kept_props = props[name] = private_copy(before.props if before is not None else None)
            keep_properties(
                kept_props, kept, event_properties(message), at, day if recent else None, mid, owned
            )
        feature = feature_of.get(name)
        if feature is not None:
            use = uses.get(feature)
            if use is None:
                use = uses[feature] = [1, at, at, set()]
            else:
                use[0] += 1
                if at < use[1]:
                    use[1] = at
                if at > use[2]:
                    use[2] = at
            if recent:
                use[3].add(day)
        if name in meaningful:
            if last_meaningful is None or at > last_meaningful:
                last_meaningful = at
            if recent:
                new_days.add(day)
                starts.append(int(seconds))
    events = _counted(old_events, tallies, props)
    features = _used(old["features"], uses)
    # The horizon moves once a week: only then can a daily count have fallen out of the kept weeks.
    if old["kept_from"] < first_day:
        _trim(events, features, first_day)
    # One comparison for nearly every user: only one with this many events can be over the bound.
    if len(events) > UNPLANNED_EVENTS_KEPT:
        cap_unplanned(events, plan)
    sessions = old["sessions"]
    if starts:
        sessions = list(sessions)
        gap = int(plan.session_gap.total_seconds())
        for start in starts:
            insert_session(sessions, start, gap)
    sessions = sessions[bisect.bisect_left(sessions, horizon_epoch, key=_end) :]
    active_days = old["active_days"]
    if not new_days.issubset(active_days):
        active_days = sorted(new_days.union(active_days))
    active_days = active_days[bisect.bisect_left(active_days, first_day) :]
    # The weeks follow from active days and session starts alone: unchanged, they are kept.
    weeks = old["weeks"]
    if not (
        state is not None
        and active_days == old["active_days"]
        and len(sessions) == len(old["sessions"])
        and all(a[0] == b[0] for a, b in zip(sessions, old["sessions"], strict=True))
    ):
        weeks = _weeks(active_days, sessions, weeks)
    fields = dict(old)
    fields.update(
        first_seen=first_seen,
        last_seen=last_seen,
        last_meaningful=last_meaningful,
        events=events,
        features=features,
        milestones=_milestones(events, plan),
        traits=_stamped(old["traits"], traits),
        context=_stamped(old["context"], context),
        account=old["account"]
        if account is None
        else built(Stamped, {"v": account[2], "at": account[0], "mid": account[1]}),
        sessions=sessions,
        active_days=active_days,
        weeks=weeks,
        kept_from=first_day,
        seen=seen.dump(window.max_seen),
    )
    return built(UserState, fields)


def _counted(
    old: dict[str, EventStats], tallies: dict[str, list[Any]], props: dict[str, PropertyStats]
) -> dict[str, EventStats]:
    """The events with this fold's tallies added (the stats of events it did not see are shared)."""
    events = dict(old)
    for name, (count, first, last, daily) in tallies.items():
        before = old.get(name)
        if before is None:
            fields = {"count": count, "first": first, "last": last, "daily": daily, "props": props.get(name)}
        else:
            total = dict(before.daily)
            for day, n in daily.items():
                total[day] = total.get(day, 0) + n
            fields = {
                "count": before.count + count,
                "first": min(before.first, first),
                "last": max(before.last, last),
                "daily": total,
                "props": props.get(name, before.props),
            }
        events[name] = built(EventStats, fields)
    return events


def _used(old: dict[str, FeatureStats], uses: dict[str, list[Any]]) -> dict[str, FeatureStats]:
    """The features with this fold's uses added; a feature's days of use stay sorted and distinct."""
    features = dict(old)
    for feature, (count, first, last, days) in uses.items():
        before = old.get(feature)
        if before is None:
            fields = {"first": first, "last": last, "count": count, "days": sorted(days)}
        else:
            fields = {
                "first": min(before.first, first),
                "last": max(before.last, last),
                "count": before.count + count,
                "days": list(before.days) if days.issubset(before.days) else sorted(days.union(before.days)),
            }
        features[feature] = built(FeatureStats, fields)
    return features


def _trim(events: dict[str, EventStats], features: dict[str, FeatureStats], first_day: int) -> None:
    """Drop (in the fold's own dicts) the daily counts and days of use before `first_day`."""
    for name, stats in events.items():
        if stats.daily and min(stats.daily) < first_day:
            daily = {d: n for d, n in stats.daily.items() if d >= first_day}
            stats = events[name] = stats.model_copy(update={"daily": daily})
        if stats.props is not None:
            trimmed = trim_props(stats.props, first_day)
            if trimmed is not None:
                events[name] = stats.model_copy(update={"props": trimmed})
    for feature, fstats in features.items():
        if fstats.days and fstats.days[0] < first_day:
            days = [d for d in fstats.days if d >= first_day]
            features[feature] = fstats.model_copy(update={"days": days})


def _kept_context(context: dict[str, Any]) -> dict[str, Any]:
    """What of a message's context the user keeps (CONTEXT_KEPT): text for timezone and locale,
    objects for the rest, none over CONTEXT_VALUE_BYTES."""
    kept: dict[str, Any] = {}
    for key in CONTEXT_KEPT:
        value = context.get(key)
        wanted = str if key in CONTEXT_FALLBACKS else dict
        if isinstance(value, wanted) and value and len(json.dumps(value, default=str)) <= CONTEXT_VALUE_BYTES:
            kept[key] = value
    return kept


def _win(won: _Won, kept: dict[str, Stamped], values: dict[str, Any], at: datetime, mid: str) -> None:
    """Each value where it is newer than the one kept (or won earlier in this fold): traits and
    context, in any order."""
    for key, value in values.items():
        best = won.get(key)
        if best is None:
            stamped = kept.get(key)
            newer = stamped is None or (at, mid) > (stamped.at, stamped.mid)
        else:
            newer = (at, mid) > (best[0], best[1])
        if newer:
            won[key] = (at, mid, value)


def _set_latest(kept: dict[str, Stamped], values: dict[str, Any], at: datetime, mid: str) -> None:
    """Each value where it is newer than the one kept (account traits, folded per group call)."""
    for key, value in values.items():
        stamped = Stamped(v=value, at=at, mid=mid)
        if stamped.newer_than(kept.get(key)):
            kept[key] = stamped


def _stamped(kept: dict[str, Stamped], won: _Won) -> dict[str, Stamped]:
    if not won:
        return dict(kept)
    out = dict(kept)
    for key, (at, mid, value) in won.items():
        out[key] = built(Stamped, {"v": value, "at": at, "mid": mid})
    return out


def add_to_sessions(sessions: list[tuple[int, int]], at: int, gap: int) -> list[tuple[int, int]]:
    """Insert one event time into sorted, merged session intervals (a new list).

    An event within `gap` seconds of a session joins it, and may bridge two sessions into one;
    so the result depends only on the set of event times, never on their order.
    """
    out = list(sessions)
    insert_session(out, at, gap)
    return out


def _end(session: tuple[int, int]) -> int:
    return session[1]


def insert_session(sessions: list[tuple[int, int]], at: int, gap: int) -> None:
    """`add_to_sessions` in place, found by bisection: the sessions are disjoint and sorted, so
    their ends are sorted too, and the ones within `gap` of `at` are a run of neighbours. A scan
    of every session per event made a request of many events of one user cost their square."""
    first = bisect.bisect_left(sessions, at - gap, key=_end)  # the first that ends late enough
    after = bisect.bisect_right(sessions, (at + gap, sys.maxsize))  # the first that starts too late
    if first < after:
        joined = (min(at, sessions[first][0]), max(at, sessions[after - 1][1]))
        sessions[first:after] = [joined]
    else:
        sessions.insert(first, (at, at))


def milestones_of(state: UserState, plan: TrackingPlan) -> dict[str, datetime]:
    return _milestones(state.events, plan)


def _milestones(events: dict[str, EventStats], plan: TrackingPlan) -> dict[str, datetime]:
    reached: dict[str, datetime] = {}
    for name, spec in plan.milestones.items():
        firsts = [events[e].first for e in spec.all if e in events]
        if len(firsts) == len(spec.all):
            reached[name] = max(firsts)
    return reached


@lru_cache(maxsize=8192)
def _week_of_day(day: int) -> str:
    return week_key(date.fromordinal(day))


def weeks_of(state: UserState) -> dict[str, WeekStats]:
    return _weeks(state.active_days, state.sessions, {})


# Past this many weeks between a history's first and last day, counting day by day costs less than
# bisecting week by week (a kept history spans FoldWindow.weeks_kept; only future timestamps go further).
_WEEKS_BISECTED = 64


def _weeks(
    active_days: list[int], sessions: list[tuple[int, int]], previous: dict[str, WeekStats]
) -> dict[str, WeekStats]:
    """Active days and session starts per ISO week, each week's found by bisection of the sorted
    days and sessions (a few lookups a week, whatever the history holds): `previous` weeks whose
    figures did not change are kept as they are (only a changed week makes a model)."""
    if not active_days and not sessions:
        return {}
    firsts = [active_days[0]] if active_days else []
    lasts = [active_days[-1]] if active_days else []
    if sessions:
        firsts.append(sessions[0][0] // 86400 + _EPOCH_ORDINAL)
        lasts.append(sessions[-1][0] // 86400 + _EPOCH_ORDINAL)
    monday, last = min(firsts), max(lasts)
    monday -= (monday - 1) % 7  # day ordinal 1 is a Monday
    if last - monday > 7 * _WEEKS_BISECTED:
        return _weeks_counted(active_days, sessions, previous)
    weeks: dict[str, WeekStats] = {}
    day_at = session_at = 0
    while monday <= last:
        monday += 7
        day_end = bisect.bisect_left(active_days, monday, day_at)
        session_end = bisect.bisect_left(sessions, ((monday - _EPOCH_ORDINAL) * 86400,), session_at)
        if day_end > day_at or session_end > session_at:
            _week(weeks, _week_of_day(monday - 7), session_end - session_at, day_end - day_at, previous)
        day_at, session_at = day_end, session_end
    return weeks


def _weeks_counted(
    active_days: list[int], sessions: list[tuple[int, int]], previous: dict[str, WeekStats]
) -> dict[str, WeekStats]:
    """`_weeks` day by day and session by session, for a history spanning many weeks."""
    days: dict[str, int] = {}
    starts: dict[str, int] = {}
    for day in active_days:
        week = _week_of_day(day)
        days[week] = days.get(week, 0) + 1
    for start, _end in sessions:
        week = _week_of_day(start // 86400 + _EPOCH_ORDINAL)
        starts[week] = starts.get(week, 0) + 1
    weeks: dict[str, WeekStats] = {}
    for week in sorted(days.keys() | starts.keys()):
        _week(weeks, week, starts.get(week, 0), days.get(week, 0), previous)
    return weeks


def _week(
    weeks: dict[str, WeekStats], week: str, sessions: int, active_days: int, previous: dict[str, WeekStats]
) -> None:
    before = previous.get(week)
    if before is None or before.sessions != sessions or before.active_days != active_days:
        before = built(WeekStats, {"sessions": sessions, "active_days": active_days})
    weeks[week] = before


def fold_account(state: AccountState | None, account_id: str, groups: Sequence[Group]) -> AccountState:
    """Account traits from group calls: last writer wins per trait, in any order."""
    new = state.model_copy(deep=True) if state is not None else AccountState(account_id=account_id)
    for group in groups:
        values = group.traits.model_dump(exclude_unset=True)
        _set_latest(new.traits, values, group.timestamp or _EPOCH, group.dedupe_key())
    return new


def rollup_delta(
    old: UserState | None, new: UserState, absorbed: Sequence[UserState] = ()
) -> RollupDelta | None:
    """What the user's change adds to their account's weekly users, sessions and feature adopters.

    Computed from the old and new state of one versioned write, so it applies exactly once.
    Weeks that fall out of the user's kept history are not subtracted: the account keeps them.
    `absorbed`: profiles of other userIds merged into this one by the same write; what they had
    counted in this account is taken back, so the person counts once (anonymous profiles count
    in no rollup, and are not passed here).
    """
    account = new.account_id
    if account is None:
        return None
    before = [s for s in (old, *absorbed) if s is not None and s.account_id == account]
    delta = RollupDelta(account_id=account)
    for week, stats in new.weeks.items():
        olds = [s.weeks[week] for s in before if week in s.weeks]
        # A week that lost its active days to the horizon takes nothing back (weeks are kept).
        users = 1 - sum(1 for w in olds if w.active_days) if stats.active_days else 0
        if users:
            delta.week_users[week] = users
        change = stats.sessions - sum(w.sessions for w in olds)
        if change:
            delta.week_sessions[week] = change
    for feature in sorted(new.features):
        adopters = 1 - sum(1 for s in before if feature in s.features)
        if adopters:
            delta.feature_adopters[feature] = adopters
    return None if delta.is_empty() else delta
