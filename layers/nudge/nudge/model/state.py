"""Usage state kept per user and per account: plain values, folded by nudge.domain.fold."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, NamedTuple

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializationInfo,
    SerializerFunctionWrapHandler,
    WrapSerializer,
)

from nudge.model.limits import DIMENSION_VALUES_KEPT


class _State(BaseModel):
    model_config = ConfigDict(extra="ignore")


# --- Times in a stored blob ---------------------------------------------------------------------
# Dumped with `context={EPOCH_MS: True}` (the DynamoDB codec's format 2), a time is written as epoch
# milliseconds when that is exact: 13 digits instead of a 27-character ISO string, read back as the
# same instant by pydantic (an integer past 2e10 is milliseconds). Anything else (microseconds, an
# offset other than UTC, before mid-1970) stays ISO. Without the context nothing changes.
EPOCH_MS = "epoch_ms"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
_MS_FROM = 2 * 10**10  # pydantic reads a smaller integer as seconds


def _compact(value: datetime) -> int | datetime:
    if value.microsecond % 1000 or value.utcoffset() != timedelta(0):
        return value
    ms = (value - _EPOCH) // _MS
    return ms if ms > _MS_FROM else value


def _time_json(value: datetime, handler: SerializerFunctionWrapHandler, info: SerializationInfo) -> Any:
    if info.context and info.context.get(EPOCH_MS):
        compact = _compact(value)
        if isinstance(compact, int):
            return compact
    return handler(value)


# A time of the state: ISO in JSON, epoch milliseconds in a format-2 blob.
Time = Annotated[datetime, WrapSerializer(_time_json, when_used="json")]


class EventStats(_State):
    count: int = 0
    first: Time
    last: Time
    # Occurrences per UTC day (date ordinal) within the kept weeks: "N times in the last 7 days".
    daily: dict[int, int] = Field(default_factory=dict)
    # What the plan keeps of this event's properties (None: it keeps none, the common case).
    props: PropertyStats | None = None

    def count_since(self, day: int) -> int:
        return sum(n for d, n in self.daily.items() if d >= day)

    def merged(self, other: EventStats) -> EventStats:
        """One person's stats of this event from two profiles' (identity merge): counts add up,
        first and last are the earliest and latest. A field added here is merged here too."""
        return EventStats(
            count=self.count + other.count,
            first=min(self.first, other.first),
            last=max(self.last, other.last),
            daily=_add_daily(self.daily, other.daily),
            props=self.props.merged(other.props) if self.props and other.props else self.props or other.props,
        )


class FeatureStats(_State):
    first: Time
    last: Time
    count: int = 0
    days: list[int] = Field(default_factory=list, description="Distinct UTC days of use (date ordinals).")

    @property
    def distinct_days(self) -> int:
        return len(self.days)

    def merged(self, other: FeatureStats) -> FeatureStats:
        """As EventStats.merged; the days of use are a union (distinct days, not a sum)."""
        return FeatureStats(
            first=min(self.first, other.first),
            last=max(self.last, other.last),
            count=self.count + other.count,
            days=sorted(set(self.days) | set(other.days)),
        )


class Stamped(_State):
    """A value with the time and message that set it: the latest timestamp wins, in any order."""

    v: Any
    at: Time
    mid: str

    def newer_than(self, other: Stamped | None) -> bool:
        return other is None or (self.at, self.mid) > (other.at, other.mid)


# --- Event properties (declared in the tracking plan as dimension, sum or last) -----------------
# Each class merges with another of its kind (`merged`): the anonymous -> user merge of two
# histories, as order-independent as the fold. Bounded per user: DIMENSION_VALUES_KEPT values
# per dimension (the least recently seen dropped), text values of at most VALUE_CHARS_KEPT
# characters, daily figures within the kept weeks.


def _add_daily(a: dict[int, int], b: dict[int, int]) -> dict[int, int]:
    total = dict(a)
    for day, n in b.items():
        total[day] = total.get(day, 0) + n
    return total


class ValueStats(NamedTuple):
    """One value of a dimension: how often, first and last time, occurrences per UTC day.

    A tuple, not a model: a user keeps one per value seen (up to DIMENSION_VALUES_KEPT per
    dimension) and the fold makes a new one per change, so they must cost little to make, and
    nothing to the garbage collector (a tuple of atomic values and a dict of ints is untracked).
    Stored as a JSON array [count, first, last, daily]."""

    count: int  # type: ignore[assignment]  # the field, over tuple.count (a tuple keeps the fold cheap)
    first: Time
    last: Time
    daily: dict[int, int]

    def count_since(self, day: int) -> int:
        return sum(n for d, n in self.daily.items() if d >= day)

    def merged(self, other: ValueStats) -> ValueStats:
        return ValueStats(
            count=self.count + other.count,
            first=min(self.first, other.first),
            last=max(self.last, other.last),
            daily=_add_daily(self.daily, other.daily),
        )


def cap_values(values: dict[str, ValueStats], cap: int = DIMENSION_VALUES_KEPT) -> dict[str, ValueStats]:
    """At most `cap` values: the most recently seen (ties by value), so which values are kept
    does not depend on the order events arrived in."""
    if len(values) <= cap:
        return values
    newest = sorted(values, key=lambda v: (values[v].last, v), reverse=True)[:cap]
    return {v: values[v] for v in sorted(newest)}


def _value_stats_json(
    value: ValueStats, handler: SerializerFunctionWrapHandler, info: SerializationInfo
) -> Any:
    # pydantic leaves a NamedTuple's own field annotations out of its serializer: compact it here.
    if info.context and info.context.get(EPOCH_MS):
        return [value.count, _compact(value.first), _compact(value.last), value.daily]
    return handler(value)


StoredValueStats = Annotated[ValueStats, WrapSerializer(_value_stats_json, when_used="json")]


class SumStats(_State):
    """A summed property: in millionths, as integers, because integers add up the same in any
    order and floats do not (0.1 + 0.2 + 0.3 depends on which pair is added first)."""

    micros: int = 0
    daily: dict[int, int] = Field(default_factory=dict, description="UTC day -> millionths, kept weeks.")

    @property
    def total(self) -> float:
        return self.micros / 1_000_000

    def total_since(self, day: int) -> float:
        return sum(n for d, n in self.daily.items() if d >= day) / 1_000_000

    def merged(self, other: SumStats) -> SumStats:
        return SumStats(micros=self.micros + other.micros, daily=_add_daily(self.daily, other.daily))


class PropertyStats(_State):
    """What is kept of one event's declared properties."""

    values: dict[str, dict[str, StoredValueStats]] = Field(
        default_factory=dict, description="Dimension -> value -> stats (at most DIMENSION_VALUES_KEPT)."
    )
    sums: dict[str, SumStats] = Field(default_factory=dict)
    last: dict[str, Stamped] = Field(default_factory=dict, description="Property -> latest value.")

    def merged(self, other: PropertyStats) -> PropertyStats:
        values: dict[str, dict[str, ValueStats]] = {}
        for dim in sorted(set(self.values) | set(other.values)):
            mine, theirs = self.values.get(dim, {}), other.values.get(dim, {})
            both = {
                v: (mine[v].merged(theirs[v]) if v in mine and v in theirs else mine.get(v) or theirs[v])
                for v in sorted(set(mine) | set(theirs))
            }
            values[dim] = cap_values(both)
        sums = {
            prop: (
                self.sums[prop].merged(other.sums[prop])
                if prop in self.sums and prop in other.sums
                else self.sums.get(prop) or other.sums[prop]
            )
            for prop in sorted(set(self.sums) | set(other.sums))
        }
        last: dict[str, Stamped] = {}
        for prop in sorted(set(self.last) | set(other.last)):
            a, b = self.last.get(prop), other.last.get(prop)
            if a is None or (b is not None and b.newer_than(a)):
                a = b
            if a is not None:
                last[prop] = a
        return PropertyStats(values=values, sums=sums, last=last)

    def newest_value(self, dimension: str, among: frozenset[str] | None = None) -> str | None:
        """The value of `dimension` seen most recently (only `among` these, when given)."""
        seen = self.values.get(dimension, {})
        candidates = [(s.last, v) for v, s in seen.items() if among is None or v in among]
        return max(candidates)[1] if candidates else None


class WeekStats(_State):
    sessions: int = 0
    active_days: int = 0


# What of a message's `context` is kept on the user (the latest value of each, as traits are), and
# which of it stands in for a trait the user has not set (quiet hours, a template's locale).
# A value whose JSON is over limits.CONTEXT_VALUE_BYTES is not kept: a page's URL or a campaign is
# small, and the user's item must stay far below DynamoDB's 400 KB whatever an app sends.
CONTEXT_KEPT = ("timezone", "locale", "app", "device", "os", "page", "campaign")
CONTEXT_FALLBACKS = ("timezone", "locale")

# The key of a profile known only by a device's anonymousId (messages without userId). Nothing is
# ever sent to one; a call carrying both ids, or an alias, merges it into the user's profile.
ANONYMOUS_PREFIX = "anon:"
# `UserState.merged` lists at most limits.MERGED_KEPT ids: a person has a few devices; a sender
# minting a new anonymousId per call must not grow the item without bound. The store's pointers
# (and, in DynamoDB, a back-reference item per merged id) are what keep a merge from happening
# twice and what erasure follows; the list makes the pure merge idempotent on its own.


def is_anonymous(user_id: str) -> bool:
    return user_id.startswith(ANONYMOUS_PREFIX)


class UserState(_State):
    user_id: str
    first_seen: Time | None = None
    last_seen: Time | None = None
    last_meaningful: Time | None = None
    events: dict[str, EventStats] = Field(default_factory=dict)
    features: dict[str, FeatureStats] = Field(default_factory=dict)
    milestones: dict[str, Time] = Field(default_factory=dict)
    traits: dict[str, Stamped] = Field(default_factory=dict)
    context: dict[str, Stamped] = Field(default_factory=dict, description="CONTEXT_KEPT -> latest value.")
    account: Stamped | None = None
    # Meaningful sessions as [start, end] epoch seconds and active UTC days, within the kept weeks.
    sessions: list[tuple[int, int]] = Field(default_factory=list)
    active_days: list[int] = Field(default_factory=list)
    weeks: dict[str, WeekStats] = Field(default_factory=dict, description="ISO week -> activity.")
    # The first UTC day (date ordinal) of the kept weeks when the state was last trimmed: no daily
    # count is older, so while the horizon stays there the fold has nothing to trim.
    kept_from: int = 0
    # messageId digests by UTC day received, for the dedupe window (base64 of sorted 8-byte digests).
    seen: dict[int, str] = Field(default_factory=dict)
    # Identity resolution (nudge.domain.identity): the ids whose history was merged into this
    # profile (latest MERGED_KEPT), and, on the record of an id merged away, the profile it now
    # points to (such a record holds nothing else: its history lives on in that profile).
    merged: list[str] = Field(default_factory=list)
    merged_into: str | None = None

    @property
    def addressable(self) -> bool:
        """A person messages may go to: not an anonymous-only profile, nor an id merged away."""
        return self.merged_into is None and not is_anonymous(self.user_id)

    @property
    def account_id(self) -> str | None:
        return str(self.account.v) if self.account is not None and self.account.v is not None else None

    def trait_values(self) -> dict[str, Any]:
        """The traits, with the context's timezone and locale where the user has not set one."""
        values = {key: stamped.v for key, stamped in self.traits.items()}
        for key in CONTEXT_FALLBACKS:
            if values.get(key) is None and key in self.context:
                values[key] = self.context[key].v
        return values

    def context_values(self) -> dict[str, Any]:
        return {key: stamped.v for key, stamped in self.context.items()}

    @property
    def event_counts(self) -> dict[str, int]:
        return {name: stats.count for name, stats in self.events.items()}


class AccountState(_State):
    account_id: str
    traits: dict[str, Stamped] = Field(default_factory=dict)

    def trait_values(self) -> dict[str, Any]:
        return {key: stamped.v for key, stamped in self.traits.items()}


class AccountRollup(_State):
    """An account's usage, summed over its rollup shards."""

    weeks: dict[str, WeekRollup] = Field(default_factory=dict)
    feature_adopters: dict[str, int] = Field(default_factory=dict)


class WeekRollup(_State):
    active_users: int = 0
    sessions: int = 0


class RollupDelta(_State):
    """What one user's write adds to their account's rollup."""

    account_id: str
    week_users: dict[str, int] = Field(default_factory=dict)
    week_sessions: dict[str, int] = Field(default_factory=dict)
    feature_adopters: dict[str, int] = Field(default_factory=dict)

    def is_empty(self) -> bool:
        return not (self.week_users or self.week_sessions or self.feature_adopters)


AccountRollup.model_rebuild()
EventStats.model_rebuild()
