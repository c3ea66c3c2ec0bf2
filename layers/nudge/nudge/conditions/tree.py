"""The marketer's condition language as a small tree of tests on named facts (nudge.rulebook.conditions
parses it from YAML; nudge.conditions.facts holds the facts).

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

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal, ParamSpec

from nudge.conditions import features as F
from nudge.model.decisions import Value
from nudge.model.properties import PropertySpec
from nudge.model.state import UserState

Op = Literal["eq", "neq", "gte", "lte", "gt", "lt"]
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
    memo: dict[Any, Any] = field(default_factory=dict, init=False, compare=False, repr=False)
    # What facts derive from `now` alone (today, the complete weeks): one per instant.
    instant: F.Instant = field(init=False, compare=False, repr=False)

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
        memo: dict[Any, Any] | None = None,
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
            instant=F.instant_at(now),
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
class Subject:
    """The event a fact is about, and the values of one of its properties it is limited to
    (`where:`): what a decision's `trigger` is made of (nudge.domain.trigger)."""

    event: str
    where: tuple[str, frozenset[str]] | None = None


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
    # The event the fact is about, when the user doing it is what the fact tests (a count, a
    # recency, a sum, a last value; not an absence).
    subject: Subject | None = None
    # True when `changes_at` tries coming instants one by one (a week close at a time): next_check
    # asks it last, with the soonest instant found so far in the memo (HORIZON), past which it
    # need not look.
    scans: bool = False

    # The factory call that made the fact (`rebuildable`): a fact's functions are closures, so it
    # pickles (the rule set's snapshot, nudge.rulebook.snapshot) as that call, made again on load.
    # Not an init field: a fact changed with dataclasses.replace is no longer that call's, and
    # then fails to pickle rather than coming back as the original.
    made_by: tuple[Callable[..., Fact], tuple[Any, ...], dict[str, Any]] | None = field(
        default=None, init=False, compare=False, repr=False
    )

    def __reduce__(self) -> str | tuple[Any, ...]:
        if self.made_by is None:
            return super().__reduce__()  # module-level functions pickle; a closure fails loudly
        return (_remake, self.made_by)


def _remake(factory: Callable[..., Fact], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Fact:
    return factory(*args, **kwargs)


P = ParamSpec("P")


def rebuildable(factory: Callable[P, Fact]) -> Callable[P, Fact]:
    """A fact factory whose facts remember the call that made them (its arguments picklable), so
    they pickle as that call."""

    @functools.wraps(factory)
    def make(*args: P.args, **kwargs: P.kwargs) -> Fact:
        fact = factory(*args, **kwargs)
        object.__setattr__(fact, "made_by", (make, args, kwargs))
        return fact

    return make


# ctx.memo key: how far from ctx.now next_check's soonest candidate is (a timedelta) while it asks
# a scanning fact: a change after it would not be the next check.
HORIZON = "next check horizon"


def anchored(
    key: str,
    describe: str,
    compute: Callable[[Context], Value],
    anchor: Callable[[Context], datetime | None],
    after: Callable[[Op, Value], timedelta | None],
    by_threshold: bool = True,
    subject: Subject | None = None,
) -> Fact:
    def changes_at(ctx: Context, op: Op, value: Value) -> datetime | None:
        at = anchor(ctx)
        if at is None:
            return None
        wait = after(op, value)
        return at + wait if wait is not None else None

    return Fact(key, describe, compute, changes_at, by_threshold, anchor, after, subject)


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


@dataclass(frozen=True)
class NamedCondition:
    """A rule's condition under the name its match is reported by (a segment, trigger or signal)."""

    name: str
    condition: Node


@dataclass(frozen=True, eq=False)
class ConditionGroup:
    """Conditions matched together, in order: one durable_rules ruleset once compiled
    (domain.engine.compiled, on first use: functions that never evaluate never compile).
    Compared and hashed by identity, so a compiled engine can be cached per group."""

    label: str
    rules: list[NamedCondition]


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


def subjects_in(node: Node) -> list[Subject]:
    """The events a condition says the user did (outside `not:`), in the order written."""
    if isinstance(node, Check):
        return [node.fact.subject] if node.fact.subject is not None else []
    if isinstance(node, Not):
        return []
    return [s for n in node.items for s in subjects_in(n)]


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
    # Declared properties per event (the tracking plan's), for `where:`, `sum:` and `last:`.
    properties: dict[str, dict[str, PropertySpec]] = field(default_factory=dict, compare=False, hash=False)


# ---------------------------------------------------------------------------------------------
# Facts


# ---------------------------------------------------------------------------------------------
# Parsing
