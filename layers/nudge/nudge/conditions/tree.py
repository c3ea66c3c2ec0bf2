"""The marketer's condition language: parsed from YAML into a small tree of tests on named facts.

    when:
      all:
        - segment: not_activated
        - milestone: setup_done
        - not: {milestone: first_project}
        - days_since: {event: setup_completed, at_least: 2}
        - count: {event: project_created, within: 7d, at_least: 3}
        - feature: {name: reporting, is: habitual}
        - trait: {name: plan, in: [free, team]}
        - account: {trait: mrr, at_least: 2000}
        - score: {band: high}
        - weeks_below: {metric: sessions, threshold: 2, weeks: 2}
        - trend: {metric: sessions, direction: down, by_at_least: 50}
        - did: {event: signed_up, but_not: setup_completed, within: 3d}

Each leaf becomes one or more `Check(fact, op, value)`; a `Fact` knows how to compute its value
from a user's state and `now`, and when that value could next change with no new event (for the
sweep). The tree compiles to durable_rules (nudge.domain.engine) and also evaluates in Python for
`nudge rules explain`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from nudge.conditions import features as F
from nudge.model.durations import Duration, format_duration
from nudge.model.state import UserState
from nudge.rulebook.yamlfile import Loc, RuleProblem, YamlDoc, did_you_mean, plain_error

Op = Literal["eq", "neq", "gte", "lte", "gt", "lt"]
Value = float | int | str
NEGATE: dict[Op, Op] = {"eq": "neq", "neq": "eq", "gte": "lt", "lt": "gte", "lte": "gt", "gt": "lte"}


@dataclass(frozen=True, init=False)
class Context:
    """Everything a fact may be computed from, at one instant."""

    user: UserState
    now: datetime
    account: F.AccountFacts | None = None
    segment: str = ""
    score: float = 0.0
    band: str = ""
    account_score: float = 0.0
    account_band: str = ""
    # What several facts of this user at this instant share (the signup time, days since an
    # event, a feature's status; by id, the user's datetimes less EPOCH), computed once by the
    # first fact that needs it. Only values of user, now and account, so `scored` hands it on.
    memo: dict[str | int, Any] = field(default_factory=dict, init=False, compare=False, repr=False)
    # What facts derive from `now` alone (today, the complete weeks): one per instant.
    clock: F.Clock = field(init=False, compare=False, repr=False)

    def __init__(
        self,
        user: UserState,
        now: datetime,
        account: F.AccountFacts | None = None,
        segment: str = "",
        score: float = 0.0,
        band: str = "",
        account_score: float = 0.0,
        account_band: str = "",
        memo: dict[str | int, Any] | None = None,
    ) -> None:
        # Written to __dict__ at once: a frozen dataclass's own __init__ sets each field through
        # object.__setattr__, and a context is made twice per evaluation.
        self.__dict__.update(
            user=user,
            now=now,
            account=account,
            segment=segment,
            score=score,
            band=band,
            account_score=account_score,
            account_band=account_band,
            memo={} if memo is None else memo,
            clock=F.clock_at(now),
        )

    def since_epoch(self, at: datetime) -> timedelta:
        """at - EPOCH, once per datetime (held in the memo, so its id stays its own): every
        comparison and difference of instants is then of plain timedeltas, exact and fast, where
        one of a datetime whose tzinfo is pydantic's with `now` is slow."""
        entry: tuple[datetime, timedelta] | None = self.memo.get(id(at))
        if entry is None:
            entry = self.memo[id(at)] = (at, at - F.EPOCH)
        return entry[1]

    def scored(
        self, segment: str, score: float, band: str, account_score: float, account_band: str
    ) -> Context:
        """This context once the scores and segment are known (same user and instant, same memo)."""
        return Context(
            self.user, self.now, self.account, segment, score, band, account_score, account_band, self.memo
        )


def no_change(ctx: Context, op: Op, value: Value) -> datetime | None:
    """The value of a fact that time alone never changes (a trait, the segment, a score)."""
    return None


@dataclass(frozen=True)
class Fact:
    """A named value of a user at an instant; `changes_at` says when it could next change by time alone."""

    key: str
    describe: str
    compute: Callable[[Context], Value]
    changes_at: Callable[[Context, Op, Value], datetime | None] = no_change
    # False when `changes_at` ignores the threshold (a week closing, a day leaving a window):
    # then one answer serves every check of the fact.
    by_threshold: bool = True
    # Set for a fact that changes a fixed time after an instant of the user's (days since an
    # event crossing a threshold, a deadline passing): that instant, and the time after it for
    # a test (None: that test never flips). changes_at is then anchor + after; the sweep's
    # re-check reads them directly, one subtraction per fact whatever its number of tests.
    anchor: Callable[[Context], datetime | None] | None = None
    after: Callable[[Op, Value], timedelta | None] | None = None


def _anchored(
    key: str,
    describe: str,
    compute: Callable[[Context], Value],
    anchor: Callable[[Context], datetime | None],
    after: Callable[[Op, Value], timedelta | None],
    by_threshold: bool = True,
) -> Fact:
    def changes_at(ctx: Context, op: Op, value: Value) -> datetime | None:
        at = anchor(ctx)
        if at is None:
            return None
        wait = after(op, value)
        return at + wait if wait is not None else None

    return Fact(key, describe, compute, changes_at, by_threshold, anchor, after)


@dataclass(frozen=True)
class Check:
    fact: Fact
    op: Op
    value: Value

    def holds(self, ctx: Context) -> bool:
        return compare(self.fact.compute(ctx), self.op, self.value)


@dataclass(frozen=True)
class All:
    items: tuple[Node, ...]


@dataclass(frozen=True)
class AnyOf:
    items: tuple[Node, ...]


@dataclass(frozen=True)
class Not:
    item: Node


Node = Check | All | AnyOf | Not


def compare(actual: Value, op: Op, expected: Value) -> bool:
    if op == "eq":
        return actual == expected
    if op == "neq":
        return actual != expected
    if isinstance(actual, str) or isinstance(expected, str):
        return False
    if op == "gte":
        return actual >= expected
    if op == "lte":
        return actual <= expected
    if op == "gt":
        return actual > expected
    return actual < expected


def holds(node: Node, ctx: Context) -> bool:
    if isinstance(node, Check):
        return node.holds(ctx)
    if isinstance(node, All):
        return all(holds(n, ctx) for n in node.items)
    if isinstance(node, AnyOf):
        return any(holds(n, ctx) for n in node.items)
    return not holds(node.item, ctx)


def holds_in(node: Node, facts: dict[str, Value]) -> bool:
    """The same condition judged on precomputed facts (what durable_rules sees)."""
    if isinstance(node, Check):
        return compare(facts[node.fact.key], node.op, node.value)
    if isinstance(node, All):
        return all(holds_in(n, facts) for n in node.items)
    if isinstance(node, AnyOf):
        return any(holds_in(n, facts) for n in node.items)
    return not holds_in(node.item, facts)


def checks_in(node: Node) -> list[Check]:
    if isinstance(node, Check):
        return [node]
    if isinstance(node, Not):
        return checks_in(node.item)
    return [t for n in node.items for t in checks_in(n)]


# ---------------------------------------------------------------------------------------------
# Names a condition may refer to


@dataclass(frozen=True)
class Catalog:
    events: frozenset[str]
    features: frozenset[str]
    milestones: frozenset[str]
    segments: tuple[str, ...]
    user_traits: frozenset[str]
    account_traits: frozenset[str]
    allow_segment: bool = True
    allow_score: bool = True


# ---------------------------------------------------------------------------------------------
# Facts


def _key(*parts: object) -> str:
    return "__".join(re.sub(r"[^a-z0-9_]", "_", str(p).lower()) for p in parts)


def _crossing(op: Op, value: Value) -> timedelta | None:
    """How long after its start a days-since value crosses `value` (days)."""
    if isinstance(value, str) or value >= F.NEVER:
        return None
    key = (op in ("gt", "lte"), value)
    wait = _CROSSINGS.get(key)
    if wait is None:
        wait = timedelta(days=float(value))
        wait = _CROSSINGS[key] = wait + timedelta(seconds=1) if key[0] else wait
    return wait


# The crossings of a rule set's thresholds: a few, asked for every user.
_CROSSINGS: dict[tuple[bool, float | int], timedelta] = {}


def _signed_up(ctx: Context) -> datetime | None:
    memo = ctx.memo
    if "signed_up" not in memo:
        memo["signed_up"] = F.signed_up_at(ctx.user)
    at: datetime | None = memo["signed_up"]
    return at


def _signed_up_since(ctx: Context) -> timedelta | None:
    """signed_up_at - EPOCH."""
    signed_up = _signed_up(ctx)
    return ctx.since_epoch(signed_up) if signed_up is not None else None


def _age(ctx: Context) -> float:
    """F.age_days, unrounded."""
    started = _signed_up_since(ctx)
    return max(0.0, (ctx.clock.since - started).total_seconds() / 86400) if started is not None else 0.0


def _last(ctx: Context, event: str) -> datetime | None:
    if event == "any":
        return ctx.user.last_meaningful
    stats = ctx.user.events.get(event)
    return stats.last if stats else None


def _days_since(ctx: Context, event: str, key: str) -> float:
    """F.days_since_event, unrounded; `key` names it in the memo (days_since and days_without share it)."""
    memo = ctx.memo
    since: float | None = memo.get(key)
    if since is None:
        last = _last(ctx, event)
        # F.days_between(last, now): now - last is the same timedelta, from the times since EPOCH.
        since = memo[key] = (
            (ctx.clock.since - ctx.since_epoch(last)).total_seconds() / 86400 if last else float(F.NEVER)
        )
    return since


def days_without_fact(event: str) -> Fact:
    memo_key = f"since:{event}"

    def compute(ctx: Context) -> Value:
        since = _days_since(ctx, event, memo_key)  # F.days_without
        return round(since if since < F.NEVER else _age(ctx), 4)

    def anchor(ctx: Context) -> datetime | None:
        return _last(ctx, event) or _signed_up(ctx)

    return _anchored(
        _key("days_without", event), f"days without {_event_words(event)}", compute, anchor, _crossing
    )


def days_since_fact(event: str) -> Fact:
    memo_key = f"since:{event}"

    def compute(ctx: Context) -> Value:
        return round(_days_since(ctx, event, memo_key), 4)

    def anchor(ctx: Context) -> datetime | None:
        return _last(ctx, event)

    return _anchored(
        _key("days_since", event), f"days since last {_event_words(event)}", compute, anchor, _crossing
    )


def _event_words(event: str) -> str:
    return "meaningful event (any)" if event == "any" else event


def milestone_days_fact(milestone: str) -> Fact:
    def compute(ctx: Context) -> Value:
        at = ctx.user.milestones.get(milestone)  # F.days_since_milestone, as in _days_since
        return round(
            (ctx.clock.since - ctx.since_epoch(at)).total_seconds() / 86400 if at else float(F.NEVER), 4
        )

    def anchor(ctx: Context) -> datetime | None:
        return ctx.user.milestones.get(milestone)

    return _anchored(
        _key("milestone_days", milestone), f"days since milestone {milestone}", compute, anchor, _crossing
    )


def age_fact() -> Fact:
    def compute(ctx: Context) -> Value:
        return round(_age(ctx), 4)

    return _anchored("age_days", "days since signup", compute, _signed_up, _crossing)


def _at_week_start(ctx: Context, op: Op, value: Value) -> datetime | None:
    return ctx.clock.next_week


def count_fact(event: str, days: int) -> Fact:
    def compute(ctx: Context) -> Value:
        return F.count_within_at(ctx.user, event, days, ctx.clock)

    def changes_at(ctx: Context, op: Op, value: Value) -> datetime | None:
        # With no new event the count only falls, when its oldest counted day leaves the window.
        stats = ctx.user.events.get(event)
        return F.window_exit_at(stats.daily, days, ctx.clock) if stats else None

    return Fact(
        _key("count", event, f"{days}d"),
        f"{event} in the last {days} days",
        compute,
        changes_at,
        by_threshold=False,
    )


def active_days_fact(days: int) -> Fact:
    def compute(ctx: Context) -> Value:
        return F.active_days_within_at(ctx.user, days, ctx.clock)

    def changes_at(ctx: Context, op: Op, value: Value) -> datetime | None:
        return F.window_exit_at(ctx.user.active_days, days, ctx.clock)

    return Fact(
        _key("active_days", f"{days}d"),
        f"active days in the last {days} days",
        compute,
        changes_at,
        by_threshold=False,
    )


def feature_fact(feature: str) -> Fact:
    memo_key = f"feature:{feature}"

    def compute(ctx: Context) -> Value:
        memo = ctx.memo
        status: str | None = memo.get(memo_key)
        if status is None:  # F.feature_status, with the clock's today
            stats = ctx.user.features.get(feature)
            if stats is None:
                status = "never"
            else:
                first_day = ctx.clock.today - 27
                recent = sum(1 for d in stats.days if d >= first_day)
                status = "habitual" if recent >= F.HABIT_DAYS_28D else "tried"
            memo[memo_key] = status
        return status

    def changes_at(ctx: Context, op: Op, value: Value) -> datetime | None:
        # Only "habitual" can lapse with time alone (to "tried"): when fewer than HABIT_DAYS_28D
        # of its days remain in the last 28.
        stats = ctx.user.features.get(feature)
        if stats is None or compute(ctx) != "habitual":
            return None
        return F.window_exit_at(stats.days, 28, ctx.clock, keep=F.HABIT_DAYS_28D)

    return Fact(
        _key("feature", feature), f"status of feature {feature}", compute, changes_at, by_threshold=False
    )


def weeks_below_fact(metric: F.Metric, threshold: int) -> Fact:
    def compute(ctx: Context) -> Value:
        return F.weeks_below_at(ctx.user, metric, threshold, ctx.clock, _signed_up_since(ctx))

    return Fact(
        _key("weeks_below", metric, threshold),
        f"complete weeks in a row with fewer than {threshold} {metric.replace('_', ' ')}",
        compute,
        _at_week_start,
        by_threshold=False,
    )


def trend_fact(metric: F.Metric) -> Fact:
    def compute(ctx: Context) -> Value:
        return F.trend_percent_at(ctx.user, metric, ctx.clock)

    return Fact(
        _key("trend", metric),
        f"week-over-week change of {metric} (%)",
        compute,
        _at_week_start,
        by_threshold=False,
    )


def frequency_fact() -> Fact:
    def compute(ctx: Context) -> Value:
        return F.frequency_band_at(ctx.user, ctx.clock)

    return Fact(
        "frequency", "frequency band (light/medium/heavy)", compute, _at_week_start, by_threshold=False
    )


def did_not_fact(did: str, not_: str, within: timedelta) -> Fact:
    def compute(ctx: Context) -> Value:
        # F.did_but_not_within, on times since EPOCH (an event's first time is shared by the
        # did facts that chain on it, and by age when it is signed_up).
        events = ctx.user.events
        first = events.get(did)
        if first is None:
            return 0
        deadline = ctx.since_epoch(first.first) + within
        if ctx.clock.since < deadline:
            return 0
        other = events.get(not_)
        return 1 if other is None or ctx.since_epoch(other.first) > deadline else 0

    def anchor(ctx: Context) -> datetime | None:
        stats = ctx.user.events.get(did)
        return stats.first if stats else None

    def after(op: Op, value: Value) -> timedelta:
        return within

    hours = int(within.total_seconds() // 3600)
    return _anchored(
        _key("did", did, "not", not_, f"{hours}h"),
        f"did {did} but not {not_} within {format_duration(within)}",
        compute,
        anchor,
        after,
        by_threshold=False,
    )


def _trait_value(value: Any) -> Value:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | str):
        return value
    return str(value)


MISSING_NUMBER = -(10**9)  # a missing or non-numeric trait (plain int: durable_rules rejects 1e18 notation)


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        try:
            return float(value) if isinstance(value, str) and value.strip() else MISSING_NUMBER
        except ValueError:
            return MISSING_NUMBER
    return float(value)


def _user_trait(ctx: Context, name: str) -> Any:
    """ctx.user.trait_values().get(name), without copying every trait."""
    stamped = ctx.user.traits.get(name)
    return stamped.v if stamped is not None else None


def trait_number_fact(name: str, account: bool = False) -> Fact:
    """A trait as a number: durable_rules must never compare a number with a string."""

    def compute(ctx: Context) -> Value:
        if account:
            return _number(ctx.account.traits.get(name) if ctx.account else None)
        return _number(_user_trait(ctx, name))

    prefix = "account_trait_number" if account else "trait_number"
    return Fact(_key(prefix, name), f"{'account ' if account else ''}trait {name} (number)", compute)


def trait_fact(name: str) -> Fact:
    def compute(ctx: Context) -> Value:
        return _trait_value(_user_trait(ctx, name))

    return Fact(_key("trait", name), f"trait {name}", compute)


def account_trait_fact(name: str) -> Fact:
    def compute(ctx: Context) -> Value:
        return _trait_value(ctx.account.traits.get(name) if ctx.account else None)

    return Fact(_key("account_trait", name), f"account trait {name}", compute)


def account_metric_fact(metric: str) -> Fact:
    def compute(ctx: Context) -> Value:
        if metric == "score":
            return ctx.account_score
        if ctx.account is None:
            return 0
        if metric == "active_users_trend":
            return ctx.account.active_users_trend_at(ctx.clock)
        return ctx.account.active_users(ctx.clock.weeks[0])

    return Fact(
        _key("account", metric),
        f"account {metric.replace('_', ' ')}",
        compute,
        _at_week_start,
        by_threshold=False,
    )


SEGMENT_FACT = Fact("segment", "lifecycle segment", lambda ctx: ctx.segment)
# Facts known only after the scoring pass.
SCORE_FACT_KEYS = frozenset({"score", "band", "account_band", _key("account", "score")})
SCORE_FACT = Fact("score", "user score", lambda ctx: ctx.score)
BAND_FACT = Fact("band", "user score band", lambda ctx: ctx.band)
ACCOUNT_BAND_FACT = Fact("account_band", "account score band", lambda ctx: ctx.account_band)


# ---------------------------------------------------------------------------------------------
# Parsing


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Bounds(_Spec):
    at_least: float | None = None
    at_most: float | None = None

    @model_validator(mode="after")
    def _window(self) -> Bounds:
        if self.at_least is None and self.at_most is None:
            raise ValueError("give at_least, at_most or both")
        if self.at_least is not None and self.at_most is not None and self.at_least > self.at_most:
            raise ValueError(
                f"impossible window: at_least {self.at_least:g} is above at_most {self.at_most:g}"
            )
        if (self.at_least or 0) < 0 or (self.at_most or 0) < 0:
            raise ValueError("bounds cannot be negative")
        return self


class DaysSinceSpec(Bounds):
    event: str | None = None
    milestone: str | None = None

    @model_validator(mode="after")
    def _one_subject(self) -> DaysSinceSpec:
        if (self.event is None) == (self.milestone is None):
            raise ValueError("name exactly one of event or milestone")
        return self


class CountSpec(Bounds):
    event: str
    within: Duration


class ActiveDaysSpec(Bounds):
    within: Duration


class FeatureSpec(_Spec):
    name: str
    is_: Literal["never", "tried", "habitual"] | list[Literal["never", "tried", "habitual"]]

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    def __init__(self, **data: Any) -> None:
        if "is" in data:
            data["is_"] = data.pop("is")
        super().__init__(**data)


class ValueSpec(_Spec):
    equals: str | float | bool | None = None
    in_: list[str | float] | None = None
    not_equals: str | float | bool | None = None
    at_least: float | None = None
    at_most: float | None = None
    exists: bool | None = None

    def __init__(self, **data: Any) -> None:
        if "in" in data:
            data["in_"] = data.pop("in")
        super().__init__(**data)

    @model_validator(mode="after")
    def _something(self) -> ValueSpec:
        given = [
            k
            for k in ("equals", "in_", "not_equals", "at_least", "at_most", "exists")
            if getattr(self, k) is not None
        ]
        if not given:
            raise ValueError("say what to compare: equals, in, not_equals, at_least, at_most or exists")
        if self.at_least is not None and self.at_most is not None and self.at_least > self.at_most:
            raise ValueError(
                f"impossible window: at_least {self.at_least:g} is above at_most {self.at_most:g}"
            )
        return self


class TraitSpec(ValueSpec):
    name: str


class AccountSpec(ValueSpec):
    trait: str | None = None
    metric: Literal["active_users", "active_users_trend", "score"] | None = None
    band: str | list[str] | None = None

    @model_validator(mode="after")
    def _one_subject(self) -> AccountSpec:
        if sum(x is not None for x in (self.trait, self.metric, self.band)) != 1:
            raise ValueError("name exactly one of trait, metric or band")
        return self

    @model_validator(mode="before")
    @classmethod
    def _band_needs_no_comparison(cls, data: Any) -> Any:
        if isinstance(data, dict) and "band" in data and len(data) == 1:
            return {**data, "exists": True}
        return data


class ScoreSpec(_Spec):
    band: str | list[str] | None = None
    at_least: float | None = None
    at_most: float | None = None

    @model_validator(mode="after")
    def _something(self) -> ScoreSpec:
        if self.band is None and self.at_least is None and self.at_most is None:
            raise ValueError("give band, at_least or at_most")
        return self


class WeeksBelowSpec(_Spec):
    metric: Literal["sessions", "active_days"]
    threshold: int
    weeks: int

    @model_validator(mode="after")
    def _sane(self) -> WeeksBelowSpec:
        if self.threshold < 1:
            raise ValueError("threshold must be at least 1 (nothing is below 0)")
        if not 1 <= self.weeks <= 12:
            raise ValueError("weeks must be between 1 and 12 (the weeks of history kept)")
        return self


class TrendSpec(_Spec):
    metric: Literal["sessions", "active_days"]
    direction: Literal["down", "up"]
    by_at_least: float

    @model_validator(mode="before")
    @classmethod
    def _percent(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("by_at_least"), str):
            return {**data, "by_at_least": data["by_at_least"].strip().rstrip("%")}
        return data

    @model_validator(mode="after")
    def _sane(self) -> TrendSpec:
        if not 0 < self.by_at_least <= (100 if self.direction == "down" else 10_000):
            raise ValueError("by_at_least is a percentage: above 0, and at most 100 for down")
        return self


class DidSpec(_Spec):
    event: str
    but_not: str
    within: Duration


LEAVES = (
    "segment",
    "milestone",
    "days_since",
    "count",
    "active_days",
    "feature",
    "trait",
    "account",
    "score",
    "weeks_below",
    "trend",
    "did",
    "age",
    "frequency",
)
COMBINATORS = ("all", "any", "not")


class Parser:
    """Turn YAML condition data into a Node, collecting problems with file:line."""

    def __init__(self, doc: YamlDoc, catalog: Catalog, problems: list[RuleProblem]) -> None:
        self.doc = doc
        self.catalog = catalog
        self.problems = problems

    def fail(self, loc: Loc, message: str) -> None:
        self.problems.append(self.doc.problem(loc, message))

    def parse(self, data: Any, loc: Loc) -> Node | None:
        if not isinstance(data, dict) or len(data) != 1:
            self.fail(
                loc,
                "a condition is one key such as all:, any:, not:, segment:, days_since: ...; "
                "put several under all: or any:",
            )
            return None
        ((kind, body),) = data.items()
        here = (*loc, kind)
        if kind in ("all", "any"):
            if not isinstance(body, list) or not body:
                self.fail(here, f"{kind}: takes a list of conditions")
                return None
            items = [self.parse(item, (*here, i)) for i, item in enumerate(body)]
            if any(item is None for item in items):
                return None
            nodes = tuple(i for i in items if i is not None)
            return All(nodes) if kind == "all" else AnyOf(nodes)
        if kind == "not":
            inner = self.parse(body, here)
            return Not(inner) if inner is not None else None
        method = getattr(self, f"_{kind}", None)
        if kind not in LEAVES or method is None:
            self.fail(here, f"unknown condition '{kind}'{did_you_mean(str(kind), (*LEAVES, *COMBINATORS))}")
            return None
        node: Node | None = method(body, here)
        return node

    def spec(self, model: type[_Spec], body: Any, loc: Loc) -> Any:
        if not isinstance(body, dict):
            self.fail(loc, f"{loc[-1]}: expects a mapping, e.g. {_EXAMPLES.get(str(loc[-1]), '{...}')}")
            return None
        try:
            return model(**body)
        except ValidationError as exc:
            said: set[str | int] = set()
            for err in exc.errors():
                # Only the key matters: deeper parts are pydantic's union members (literal[...]),
                # and a value that fits no member of a union would otherwise be reported per member.
                path = tuple(p for p in err["loc"] if isinstance(p, str | int))[:1]
                path = tuple(_SPELLED.get(p, p) if isinstance(p, str) else p for p in path)
                if path and path[0] in said:
                    continue
                said.update(path)
                message = plain_error(err)
                if err["type"] == "extra_forbidden":
                    keys = [_SPELLED.get(k, k) for k in model.model_fields]
                    hint = did_you_mean(str(path[-1]), keys)
                    message = f"unknown key '{path[-1]}'{hint or '; remove it or check its spelling'}"
                elif err["type"] == "missing":
                    message = f"'{path[-1]}' is required"
                elif path:
                    message = f"{path[-1]}: {message}"
                self.fail((*loc, *path), f"{loc[-1]}: {message}")
            return None
        except TypeError as exc:  # unexpected keyword in the aliasing constructors
            self.fail(loc, f"{loc[-1]}: {exc}")
            return None

    def name(
        self,
        kind: str,
        value: Any,
        known: frozenset[str] | tuple[str, ...],
        loc: Loc,
        extra: Sequence[str] = (),
    ) -> bool:
        if not isinstance(value, str):
            self.fail(loc, f"{kind} name must be text")
            return False
        if value in known or value in extra:
            return True
        hint = did_you_mean(value, (*known, *extra))
        self.fail(loc, f"unknown {kind} '{value}'{hint}")
        return False

    def bounds(self, fact: Fact, spec: Bounds | ValueSpec) -> Node:
        tests: list[Node] = []
        if spec.at_least is not None:
            tests.append(Check(fact, "gte", spec.at_least))
        if spec.at_most is not None:
            tests.append(Check(fact, "lte", spec.at_most))
        return tests[0] if len(tests) == 1 else All(tuple(tests))

    def one_of(self, fact: Fact, values: Sequence[Value]) -> Node:
        tests = tuple(Check(fact, "eq", v) for v in values)
        return tests[0] if len(tests) == 1 else AnyOf(tests)

    def _segment(self, body: Any, loc: Loc) -> Node | None:
        if not self.catalog.allow_segment:
            self.fail(loc, "segments cannot depend on segments; use the conditions themselves")
            return None
        names = body if isinstance(body, list) else [body]
        ok = all(
            self.name("segment", n, self.catalog.segments, (*loc, i) if isinstance(body, list) else loc)
            for i, n in enumerate(names)
        )
        return self.one_of(SEGMENT_FACT, names) if ok else None

    def _milestone(self, body: Any, loc: Loc) -> Node | None:
        if not self.name("milestone", body, self.catalog.milestones, loc):
            return None
        return Check(milestone_days_fact(body), "lt", F.NEVER)

    def _days_since(self, body: Any, loc: Loc) -> Node | None:
        spec = self.spec(DaysSinceSpec, body, loc)
        if spec is None:
            return None
        if spec.milestone is not None:
            if not self.name("milestone", spec.milestone, self.catalog.milestones, (*loc, "milestone")):
                return None
            return self.bounds(milestone_days_fact(spec.milestone), spec)
        if not self.name("event", spec.event, self.catalog.events, (*loc, "event"), extra=("any",)):
            return None
        nodes: list[Node] = []
        if spec.at_least is not None:  # "has not done X in N days": never matches users younger than N
            nodes.append(Check(days_without_fact(spec.event), "gte", spec.at_least))
        if spec.at_most is not None:  # "did X in the last N days": never done does not match
            nodes.append(Check(days_since_fact(spec.event), "lte", spec.at_most))
        return nodes[0] if len(nodes) == 1 else All(tuple(nodes))

    def _window_days(self, within: timedelta, loc: Loc) -> int | None:
        days = within.total_seconds() / 86400
        if days != int(days) or not 1 <= days <= 84:
            self.fail(loc, "within must be whole days between 1d and 12w (the history kept), e.g. 7d")
            return None
        return int(days)

    def _count(self, body: Any, loc: Loc) -> Node | None:
        spec = self.spec(CountSpec, body, loc)
        if spec is None or not self.name("event", spec.event, self.catalog.events, (*loc, "event")):
            return None
        days = self._window_days(spec.within, (*loc, "within"))
        return self.bounds(count_fact(spec.event, days), spec) if days else None

    def _active_days(self, body: Any, loc: Loc) -> Node | None:
        spec = self.spec(ActiveDaysSpec, body, loc)
        if spec is None:
            return None
        days = self._window_days(spec.within, (*loc, "within"))
        return self.bounds(active_days_fact(days), spec) if days else None

    def _feature(self, body: Any, loc: Loc) -> Node | None:
        spec = self.spec(FeatureSpec, body, loc)
        if spec is None or not self.name("feature", spec.name, self.catalog.features, (*loc, "name")):
            return None
        statuses = spec.is_ if isinstance(spec.is_, list) else [spec.is_]
        return self.one_of(feature_fact(spec.name), statuses)

    def _compare(self, fact: Fact, spec: ValueSpec, number: Fact | None = None) -> Node:
        nodes: list[Node] = []
        if spec.exists is not None:
            nodes.append(Check(fact, "neq" if spec.exists else "eq", ""))
        if spec.equals is not None:
            nodes.append(Check(fact, "eq", _scalar(spec.equals)))
        if spec.not_equals is not None:
            nodes.append(Check(fact, "neq", _scalar(spec.not_equals)))
        if spec.in_ is not None:
            nodes.append(self.one_of(fact, [_scalar(v) for v in spec.in_]))
        if spec.at_least is not None or spec.at_most is not None:
            numeric = number or fact
            if number is not None:  # a missing trait is below every at_least and must fail at_most too
                nodes.append(Check(numeric, "gt", MISSING_NUMBER))
            nodes.append(self.bounds(numeric, spec))
        return nodes[0] if len(nodes) == 1 else All(tuple(nodes))

    def _trait(self, body: Any, loc: Loc) -> Node | None:
        spec = self.spec(TraitSpec, body, loc)
        if spec is None or not self.name("trait", spec.name, self.catalog.user_traits, (*loc, "name")):
            return None
        return self._compare(trait_fact(spec.name), spec, trait_number_fact(spec.name))

    def _account(self, body: Any, loc: Loc) -> Node | None:
        spec = self.spec(AccountSpec, body, loc)
        if spec is None:
            return None
        if (spec.band is not None or spec.metric == "score") and not self.catalog.allow_score:
            self.fail(loc, "scoring signals cannot depend on a score; use the account's traits or metrics")
            return None
        if spec.band is not None:
            bands = self.bands(spec.band, (*loc, "band"))
            return self.one_of(ACCOUNT_BAND_FACT, bands) if bands else None
        if spec.metric is not None:
            return self._compare(account_metric_fact(spec.metric), spec)
        if not self.name("account trait", spec.trait, self.catalog.account_traits, (*loc, "trait")):
            return None
        trait = str(spec.trait)
        return self._compare(account_trait_fact(trait), spec, trait_number_fact(trait, account=True))

    def _score(self, body: Any, loc: Loc) -> Node | None:
        if not self.catalog.allow_score:
            self.fail(loc, "scoring signals cannot depend on the score itself")
            return None
        spec = self.spec(ScoreSpec, body, loc)
        if spec is None:
            return None
        nodes: list[Node] = []
        if spec.band is not None:
            bands = self.bands(spec.band, (*loc, "band"))
            if not bands:
                return None
            nodes.append(self.one_of(BAND_FACT, bands))
        if spec.at_least is not None:
            nodes.append(Check(SCORE_FACT, "gte", spec.at_least))
        if spec.at_most is not None:
            nodes.append(Check(SCORE_FACT, "lte", spec.at_most))
        return nodes[0] if len(nodes) == 1 else All(tuple(nodes))

    def bands(self, value: str | list[str], loc: Loc) -> list[Value] | None:
        """Band names are fixed words: a typo would otherwise never match, silently."""
        names = value if isinstance(value, list) else [value]
        ok = all(self.name("band", n, ("high", "mid", "low"), loc) for n in names)
        return list(names) if ok and names else None

    def _weeks_below(self, body: Any, loc: Loc) -> Node | None:
        spec = self.spec(WeeksBelowSpec, body, loc)
        return Check(weeks_below_fact(spec.metric, spec.threshold), "gte", spec.weeks) if spec else None

    def _trend(self, body: Any, loc: Loc) -> Node | None:
        spec = self.spec(TrendSpec, body, loc)
        if spec is None:
            return None
        if spec.direction == "down":
            return Check(trend_fact(spec.metric), "lte", -spec.by_at_least)
        return Check(trend_fact(spec.metric), "gte", spec.by_at_least)

    def _did(self, body: Any, loc: Loc) -> Node | None:
        spec = self.spec(DidSpec, body, loc)
        if spec is None:
            return None
        ok = self.name("event", spec.event, self.catalog.events, (*loc, "event"))
        ok = self.name("event", spec.but_not, self.catalog.events, (*loc, "but_not")) and ok
        if ok and spec.event == spec.but_not:
            self.fail(loc, "did: event and but_not are the same event; name two different events")
            return None
        return Check(did_not_fact(spec.event, spec.but_not, spec.within), "eq", 1) if ok else None

    def _age(self, body: Any, loc: Loc) -> Node | None:
        spec = self.spec(Bounds, body, loc)
        return self.bounds(age_fact(), spec) if spec else None

    def _frequency(self, body: Any, loc: Loc) -> Node | None:
        values = body if isinstance(body, list) else [body]
        for i, v in enumerate(values):
            if v not in ("light", "medium", "heavy"):
                self.fail(
                    (*loc, i) if isinstance(body, list) else loc,
                    f"frequency is light, medium or heavy, not {v!r}",
                )
                return None
        return self.one_of(frequency_fact(), values)


# The spec models spell `is` and `in` (Python keywords) with an underscore.
_SPELLED = {"is_": "is", "in_": "in"}


def _scalar(value: str | float | bool) -> Value:
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


_EXAMPLES = {
    "days_since": "{event: project_created, at_least: 14}",
    "count": "{event: report_exported, within: 7d, at_least: 3}",
    "feature": "{name: reporting, is: habitual}",
    "trait": "{name: plan, equals: free}",
    "account": "{trait: mrr, at_least: 2000}",
    "score": "{band: high}",
    "weeks_below": "{metric: sessions, threshold: 2, weeks: 2}",
    "trend": "{metric: sessions, direction: down, by_at_least: 50}",
    "did": "{event: signed_up, but_not: setup_completed, within: 3d}",
    "age": "{at_least: 7}",
    "active_days": "{within: 7d, at_least: 3}",
}
