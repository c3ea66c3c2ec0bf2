"""The pure fold of Segment messages into usage state.

Order-independent and idempotent by construction: counts skip messageIds already seen in the
dedupe window; first/last are min/max; traits and account membership are last-writer-wins on
(timestamp, messageId); sessions are kept as merged intervals, so the same events in any order
give the same sessions; milestones and weekly figures are derived afresh at the end.
"""

from __future__ import annotations

import base64
import bisect
import hashlib
import json
import struct
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from typing import Any

from nudge.domain.bounds import cap_unplanned
from nudge.model.calendar import week_key
from nudge.model.limits import (
    CONTEXT_VALUE_BYTES,
    DIMENSION_VALUES_KEPT,
    SEEN_KEPT,
    UNPLANNED_EVENTS_KEPT,
    VALUE_CHARS_KEPT,
)
from nudge.model.messages import Alias, Group, Identify, Message, UsageEvent, event_name, event_properties
from nudge.model.properties import PropertySpec, accepts, canonical
from nudge.model.state import (
    CONTEXT_FALLBACKS,
    CONTEXT_KEPT,
    AccountState,
    EventStats,
    FeatureStats,
    PropertyStats,
    RollupDelta,
    Stamped,
    SumStats,
    UserState,
    ValueStats,
    WeekStats,
    cap_values,
)
from nudge.rulebook.plan import TrackingPlan

DIGEST_BYTES = 8
_CONTEXT_KEYS = frozenset(CONTEXT_KEPT)
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


def digest(key: str) -> bytes:
    return hashlib.blake2b(key.encode(), digest_size=DIGEST_BYTES).digest()


def horizon_start(now: datetime, weeks_kept: int) -> datetime:
    """Midnight UTC on the Monday that opens the oldest kept ISO week."""
    today = now.astimezone(UTC).date()
    monday = today - timedelta(days=today.weekday()) - timedelta(weeks=weeks_kept - 1)
    return datetime(monday.year, monday.month, monday.day, tzinfo=UTC)


class _Seen:
    """Digests of messageIds by UTC day received; days older than the window are dropped.

    Held as big-endian integers (unpacked in C, read on every fold): sorted, they pack back to
    the digests in byte order, as stored."""

    def __init__(self, stored: dict[int, str], today: int, window_days: int) -> None:
        self.today = today
        self.days: dict[int, set[int]] = {}
        for day, blob in stored.items():
            if day > today - window_days - 1:
                raw = base64.b64decode(blob)
                self.days[day] = set(struct.unpack(f">{len(raw) // DIGEST_BYTES}Q", raw))

    def add(self, key: bytes) -> bool:
        """Record a digest; False when it was already seen."""
        value = int.from_bytes(key, "big")
        if any(value in keys for keys in self.days.values()):
            return False
        self.days.setdefault(self.today, set()).add(value)
        return True

    def dump(self, max_seen: int) -> dict[int, str]:
        total = sum(len(keys) for keys in self.days.values())
        for day in sorted(self.days):
            if total <= max_seen or day == self.today:
                break
            total -= len(self.days.pop(day))
        return {
            day: base64.b64encode(struct.pack(f">{len(keys)}Q", *sorted(keys))).decode()
            for day, keys in sorted(self.days.items())
        }


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
    # Copy on write: only what this fold changes is copied, so `state` stays untouched and the
    # fold costs what the messages touch, not what the user has accumulated.
    if state is None:
        new = UserState(user_id=user_id)
    else:
        new = state.model_copy()
        new.events, new.features, new.traits = dict(state.events), dict(state.features), dict(state.traits)
        new.context = dict(state.context)
    seen = _Seen(new.seen, now.astimezone(UTC).toordinal(), window.dedupe_days)
    horizon = horizon_start(now, window.weeks_kept)
    counter = _Counter(new, plan, horizon)
    first_seen, last_seen = new.first_seen, new.last_seen
    for message in messages:
        mid = message.dedupe_key()
        if not seen.add(digest(mid)):
            continue
        at = message.timestamp or now
        if first_seen is None or at < first_seen:
            first_seen = at
        if last_seen is None or at > last_seen:
            last_seen = at
        if message.context and not _CONTEXT_KEYS.isdisjoint(message.context):
            _set_latest(new.context, _kept_context(message.context), at, mid)
        if isinstance(message, Identify):
            _set_latest(new.traits, message.traits.model_dump(exclude_unset=True), at, mid)
        elif isinstance(message, Group):
            stamped = Stamped(v=message.groupId, at=at, mid=mid)
            if stamped.newer_than(new.account):
                new.account = stamped
        elif isinstance(message, Alias):
            pass  # seen, like an identify without traits; the merge it asks for is the ingest's
        else:
            counter.count(message, at, mid)
    new.first_seen, new.last_seen = first_seen, last_seen
    first_day = horizon.toordinal()
    new.active_days = sorted(d for d in counter.days if d >= first_day)
    # The horizon moves once a week: only then can a daily count have fallen out of the kept weeks.
    if new.kept_from < first_day:
        for name, stats in new.events.items():
            if stats.daily and min(stats.daily) < first_day:
                daily = {d: n for d, n in stats.daily.items() if d >= first_day}
                stats = new.events[name] = stats.model_copy(update={"daily": daily})
            if stats.props is not None:
                trimmed = _trim_props(stats.props, first_day)
                if trimmed is not None:
                    new.events[name] = stats.model_copy(update={"props": trimmed})
        for feature, fstats in new.features.items():
            if fstats.days and fstats.days[0] < first_day:
                days = [d for d in fstats.days if d >= first_day]
                new.features[feature] = fstats.model_copy(update={"days": days})
    new.kept_from = first_day
    # One comparison for nearly every user: only one with this many events can be over the bound.
    if len(new.events) > UNPLANNED_EVENTS_KEPT:
        cap_unplanned(new.events, plan)
    horizon_epoch = int(horizon.timestamp())
    new.sessions = [s for s in counter.sessions if s[1] >= horizon_epoch]
    new.milestones = milestones_of(new, plan)
    # The weeks follow from active days and session starts alone: unchanged, they are kept.
    unchanged = (
        state is not None
        and new.active_days == state.active_days
        and len(new.sessions) == len(state.sessions)
        and all(a[0] == b[0] for a, b in zip(new.sessions, state.sessions, strict=True))
    )
    new.weeks = state.weeks if unchanged and state is not None else weeks_of(new)
    new.seen = seen.dump(window.max_seen)
    return new


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


def _set_latest(kept: dict[str, Stamped], values: dict[str, Any], at: datetime, mid: str) -> None:
    """Each value where it is newer than the one kept: traits and context, in any order."""
    for key, value in values.items():
        stamped = Stamped(v=value, at=at, mid=mid)
        if stamped.newer_than(kept.get(key)):
            kept[key] = stamped


class _Counter:
    """Counts usage events into a state whose events/features dicts are already private copies."""

    def __init__(self, state: UserState, plan: TrackingPlan, horizon: datetime) -> None:
        self.state = state
        self.plan = plan
        self.horizon = horizon
        self.gap = int(plan.session_gap.total_seconds())
        self.days = set(state.active_days)
        self.sessions = list(state.sessions)
        self.copied_events: set[str] = set()
        self.copied_features: set[str] = set()
        self.copied_props: set[str] = set()
        # ids of the sum stats and value dailies this fold made or copied (so may change in place)
        self.owned: set[int] = set()

    def count(self, message: UsageEvent, at: datetime, mid: str) -> None:
        state = self.state
        name = event_name(message)
        day = at.astimezone(UTC).toordinal()
        recent = at >= self.horizon
        stats = state.events.get(name)
        if stats is None:
            stats = state.events[name] = EventStats(count=0, first=at, last=at)
            self.copied_events.add(name)
        elif name not in self.copied_events:
            stats = state.events[name] = stats.model_copy(update={"daily": dict(stats.daily)})
            self.copied_events.add(name)
        _one_more(stats, at)
        if recent:
            stats.daily[day] = stats.daily.get(day, 0) + 1
        kept = self.plan.kept_of.get(name)
        if kept is not None:  # the one lookup an event whose plan keeps no property costs
            if name not in self.copied_props:
                stats.props = _private_copy(stats.props) if stats.props else PropertyStats()
                self.copied_props.add(name)
            assert stats.props is not None
            values = event_properties(message)
            _keep_properties(stats.props, kept, values, at, day if recent else None, mid, self.owned)
        feature = self.plan.feature_of.get(name)
        if feature is not None:
            self._use_feature(feature, at, day if recent else None)
        if name not in self.plan.meaningful:
            return
        if state.last_meaningful is None or at > state.last_meaningful:
            state.last_meaningful = at
        if recent:
            self.days.add(day)
            insert_session(self.sessions, int(at.timestamp()), self.gap)

    def _use_feature(self, feature: str, at: datetime, day: int | None) -> None:
        """One more use of `feature`; `day` (None: older than the kept weeks) joins its days of use."""
        features = self.state.features
        fstats = features.get(feature)
        if fstats is None:
            features[feature] = FeatureStats(first=at, last=at, count=1, days=[] if day is None else [day])
            self.copied_features.add(feature)
            return
        if feature not in self.copied_features:
            fstats = features[feature] = fstats.model_copy(update={"days": list(fstats.days)})
            self.copied_features.add(feature)
        _one_more(fstats, at)
        if day is None:
            return
        index = bisect.bisect_left(fstats.days, day)
        if index == len(fstats.days) or fstats.days[index] != day:
            fstats.days.insert(index, day)


def _one_more(stats: EventStats | FeatureStats, at: datetime) -> None:
    """One more occurrence at `at`, on the fold's own copy, changed through its __dict__ (the hot
    path: pydantic's __setattr__ costs more than the rest of counting an event; no validation on
    assignment is lost)."""
    fields = stats.__dict__
    fields["count"] += 1
    if at < fields["first"]:
        fields["first"] = at
    if at > fields["last"]:
        fields["last"] = at


# A number beyond this is no amount a rule could mean: not summed (and the sum stays a small integer).
SUM_LIMIT = 10**15


def _keep_properties(
    props: PropertyStats,
    kept: dict[str, PropertySpec],
    values: dict[str, Any],
    at: datetime,
    day: int | None,
    mid: str,
    owned: set[int],
) -> None:
    """One event's declared properties into its PropertyStats (whose dicts are private copies; the
    sum stats and value dailies in them are copied on first change, unless their id is in `owned`).
    A value of the wrong type, or text over VALUE_CHARS_KEPT, is not kept: ingest refused or
    flagged it already. `day` is None for an event older than the kept weeks (counted in totals,
    not per day)."""
    for prop, spec in kept.items():
        value = values.get(prop)
        if value is None or not accepts(spec.type, value):
            continue
        if isinstance(value, str) and len(value) > VALUE_CHARS_KEPT:
            continue
        if spec.dimension:
            key = canonical(value)
            dim = props.values.setdefault(prop, {})
            vstats = dim.get(key)
            if vstats is None:
                daily: dict[int, int] = {}
                vstats = ValueStats(0, at, at, daily)
            else:
                daily = vstats.daily
                if id(daily) not in owned:  # shared with the state folded from: copied once
                    daily = dict(daily)
            owned.add(id(daily))
            if day is not None:
                daily[day] = daily.get(day, 0) + 1
            dim[key] = ValueStats(vstats.count + 1, min(vstats.first, at), max(vstats.last, at), daily)
            if len(dim) > DIMENSION_VALUES_KEPT:
                props.values[prop] = cap_values(dim)
        if spec.sum and abs(value) < SUM_LIMIT:
            micros = round(value * 1_000_000)
            sums = props.sums.get(prop)
            if sums is None or id(sums) not in owned:
                sums = props.sums[prop] = (
                    sums.model_copy(update={"daily": dict(sums.daily)}) if sums is not None else SumStats()
                )
                owned.add(id(sums))
            sums.micros += micros
            if day is not None:
                sums.daily[day] = sums.daily.get(day, 0) + micros
        if spec.last:
            stamped = Stamped(v=value, at=at, mid=mid)
            if stamped.newer_than(props.last.get(prop)):
                props.last[prop] = stamped


def _private_copy(props: PropertyStats) -> PropertyStats:
    """A copy whose dicts may change; the stats in them are shared until _keep_properties copies them."""
    return props.model_copy(
        update={
            "values": {dim: dict(by_value) for dim, by_value in props.values.items()},
            "sums": dict(props.sums),
            "last": dict(props.last),
        }
    )


def _trim_props(props: PropertyStats, first_day: int) -> PropertyStats | None:
    """`props` without the days before the kept weeks (None: nothing to drop)."""
    old = any(
        min(s.daily, default=first_day) < first_day for dim in props.values.values() for s in dim.values()
    )
    old = old or any(min(s.daily, default=first_day) < first_day for s in props.sums.values())
    if not old:
        return None
    values = {
        dim: {
            v: s._replace(daily={d: n for d, n in s.daily.items() if d >= first_day})
            for v, s in by_value.items()
        }
        for dim, by_value in props.values.items()
    }
    sums = {
        prop: s.model_copy(update={"daily": {d: n for d, n in s.daily.items() if d >= first_day}})
        for prop, s in props.sums.items()
    }
    return props.model_copy(update={"values": values, "sums": sums})


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
    reached: dict[str, datetime] = {}
    for name, spec in plan.milestones.items():
        firsts = [state.events[e].first for e in spec.all if e in state.events]
        if len(firsts) == len(spec.all):
            reached[name] = max(firsts)
    return reached


@lru_cache(maxsize=8192)
def _week_of_day(day: int) -> str:
    return week_key(date.fromordinal(day))


def weeks_of(state: UserState) -> dict[str, WeekStats]:
    # Counted in plain dicts, one WeekStats per week at the end: the fold's hot path.
    days: dict[str, int] = {}
    sessions: dict[str, int] = {}
    for day in state.active_days:
        week = _week_of_day(day)
        days[week] = days.get(week, 0) + 1
    for start, _end in state.sessions:
        week = _week_of_day(start // 86400 + _EPOCH_ORDINAL)
        sessions[week] = sessions.get(week, 0) + 1
    return {
        week: WeekStats(sessions=sessions.get(week, 0), active_days=days.get(week, 0))
        for week in sorted(days.keys() | sessions.keys())
    }


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
