"""Facts over the event properties the tracking plan keeps (nudge.model.state.PropertyStats):
counts of a dimension's values within a window (`count: {..., where: {feature: sso}}`), sums
(lifetime or within a window) and last values. Recency filtered by a value (`days_since` with
`where:`) is in nudge.conditions.facts, beside the plain recency it shares its memo with."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from nudge.conditions import features as F
from nudge.conditions.facts import MISSING_NUMBER, Where, fact_key, where_key, where_words
from nudge.conditions.tree import Context, Fact, Op, Subject, rebuildable
from nudge.model.decisions import Value
from nudge.model.properties import canonical
from nudge.model.state import PropertyStats


def _props(ctx: Context, event: str) -> PropertyStats | None:
    stats = ctx.user.events.get(event)
    return stats.props if stats is not None else None


@rebuildable
def count_where_fact(event: str, where: Where, days: int) -> Fact:
    """How often the user did `event` with one of the `where:` values in the last `days` days."""
    assert where is not None
    prop, values = where

    def compute(ctx: Context) -> Value:
        props = _props(ctx, event)
        if props is None:
            return 0
        seen = props.values.get(prop, {})
        first_day = ctx.instant.today - days + 1
        return sum(seen[v].count_since(first_day) for v in values if v in seen)

    def changes_at(ctx: Context, op: Op, value: Value) -> datetime | None:
        # With no new event the count only falls, when its oldest counted day leaves the window.
        props = _props(ctx, event)
        if props is None:
            return None
        seen = props.values.get(prop, {})
        days_used = {d for v in values if v in seen for d in seen[v].daily}
        return F.window_exit_at(days_used, days, ctx.instant)

    return Fact(
        fact_key("count", event, *where_key(where), f"{days}d"),
        f"{event}{where_words(where)} in the last {days} days",
        compute,
        changes_at,
        by_threshold=False,
        subject=Subject(event, where),
    )


@rebuildable
def sum_fact(event: str, prop: str, days: int | None) -> Fact:
    """The sum of `prop` over the user's `event`s: lifetime, or in the last `days` days."""

    def compute(ctx: Context) -> Value:
        props = _props(ctx, event)
        sums = props.sums.get(prop) if props is not None else None
        if sums is None:
            return 0
        total = sums.total if days is None else sums.total_since(ctx.instant.today - days + 1)
        return round(total, 6)

    def changes_at(ctx: Context, op: Op, value: Value) -> datetime | None:
        # A lifetime sum never changes with time alone; a windowed one falls as days leave it.
        props = _props(ctx, event)
        sums = props.sums.get(prop) if props is not None else None
        if days is None or sums is None:
            return None
        return F.window_exit_at(sums.daily, days, ctx.instant)

    window = "lifetime" if days is None else f"{days}d"
    return Fact(
        fact_key("sum", event, prop, window),
        f"sum of {event} {prop} {'ever' if days is None else f'in the last {days} days'}",
        compute,
        changes_at,
        by_threshold=False,
        subject=Subject(event),
    )


def _last_value(ctx: Context, event: str, prop: str) -> Any:
    props = _props(ctx, event)
    stamped = props.last.get(prop) if props is not None else None
    return stamped.v if stamped is not None else None


@rebuildable
def last_fact(event: str, prop: str) -> Fact:
    """The latest value of `prop` on the user's `event`, as text ("" when never seen): what
    equals, in and exists compare (true/false for booleans, 3 for an integral number)."""

    def compute(ctx: Context) -> Value:
        value = _last_value(ctx, event, prop)
        return "" if value is None else canonical(value)

    return Fact(fact_key("last", event, prop), f"last {prop} of {event}", compute, subject=Subject(event))


@rebuildable
def last_number_fact(event: str, prop: str) -> Fact:
    """The latest value as a number, for at_least / at_most (MISSING_NUMBER when never seen)."""

    def compute(ctx: Context) -> Value:
        value = _last_value(ctx, event, prop)
        if isinstance(value, bool) or not isinstance(value, int | float):
            return MISSING_NUMBER
        return value

    return Fact(fact_key("last_number", event, prop), f"last {prop} of {event} (number)", compute)
