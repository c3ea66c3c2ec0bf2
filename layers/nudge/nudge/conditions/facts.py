"""The facts a condition may test: each a key, a description, a compute over the Context and, for
the time-based ones, when its value could next change with no new event (for the sweep)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from nudge.conditions import features as F
from nudge.conditions.tree import HORIZON, Context, Fact, Op, Subject, anchored, compare, rebuildable
from nudge.model.decisions import Value
from nudge.model.durations import format_duration
from nudge.model.limits import ROLLUP_SETTLE_SECONDS
from nudge.model.numbers import trait_number_in_range


def fact_key(*parts: object) -> str:
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
    return max(0.0, (ctx.instant.since - started).total_seconds() / 86400) if started is not None else 0.0


def _last(ctx: Context, event: str, where: Where = None) -> datetime | None:
    if event == "any":
        return ctx.user.last_meaningful
    stats = ctx.user.events.get(event)
    if stats is None or where is None:
        return stats.last if stats else None
    # The last time with one of the `where:` values: the newest of theirs.
    prop, values = where
    seen = stats.props.values.get(prop, {}) if stats.props else {}
    return max((seen[v].last for v in values if v in seen), default=None)


Where = tuple[str, frozenset[str]] | None


def last_done(ctx: Context, event: str, where: Where = None) -> datetime | None:
    """When the user last did `event` ('any': anything meaningful), with one of `where:`'s values."""
    return _last(ctx, event, where)


def where_key(where: Where) -> tuple[str, ...]:
    """A `where:` as key parts: the property, and a digest of the exact values (keys keep only
    [a-z0-9_], so "Pricing" and "pricing" would otherwise meet)."""
    if where is None:
        return ()
    prop, values = where
    digest = hashlib.blake2b("\x00".join(sorted(values)).encode(), digest_size=4).hexdigest()
    return ("where", prop, digest)


def where_words(where: Where) -> str:
    if where is None:
        return ""
    prop, values = where
    return f" with {prop} {' or '.join(sorted(values))}"


def _days_since(ctx: Context, event: str, key: str, where: Where = None) -> float:
    """F.days_since_event, unrounded; `key` names it in the memo (days_since and days_without share it)."""
    memo = ctx.memo
    since: float | None = memo.get(key)
    if since is None:
        last = _last(ctx, event, where)
        # F.days_between(last, now): now - last is the same timedelta, from the times since EPOCH.
        since = memo[key] = (
            (ctx.instant.since - ctx.since_epoch(last)).total_seconds() / 86400 if last else float(F.NEVER)
        )
    return since


@rebuildable
def days_without_fact(event: str, where: Where = None) -> Fact:
    memo_key = f"since:{event}:{where}"

    def compute(ctx: Context) -> Value:
        since = _days_since(ctx, event, memo_key, where)  # F.days_without
        return round(since if since < F.NEVER else _age(ctx), 4)

    def anchor(ctx: Context) -> datetime | None:
        return _last(ctx, event, where) or _signed_up(ctx)

    return anchored(
        fact_key("days_without", event, *where_key(where)),
        f"days without {_event_words(event)}{where_words(where)}",
        compute,
        anchor,
        _crossing,
    )


@rebuildable
def days_since_fact(event: str, where: Where = None) -> Fact:
    memo_key = f"since:{event}:{where}"

    def compute(ctx: Context) -> Value:
        return round(_days_since(ctx, event, memo_key, where), 4)

    def anchor(ctx: Context) -> datetime | None:
        return _last(ctx, event, where)

    return anchored(
        fact_key("days_since", event, *where_key(where)),
        f"days since last {_event_words(event)}{where_words(where)}",
        compute,
        anchor,
        _crossing,
        subject=Subject(event, where) if event != "any" else None,
    )


def _event_words(event: str) -> str:
    return "meaningful event (any)" if event == "any" else event


@rebuildable
def milestone_days_fact(milestone: str) -> Fact:
    def compute(ctx: Context) -> Value:
        at = ctx.user.milestones.get(milestone)  # F.days_since_milestone, as in _days_since
        return round(
            (ctx.instant.since - ctx.since_epoch(at)).total_seconds() / 86400 if at else float(F.NEVER), 4
        )

    def anchor(ctx: Context) -> datetime | None:
        return ctx.user.milestones.get(milestone)

    return anchored(
        fact_key("milestone_days", milestone), f"days since milestone {milestone}", compute, anchor, _crossing
    )


@rebuildable
def age_fact() -> Fact:
    def compute(ctx: Context) -> Value:
        return round(_age(ctx), 4)

    return anchored("age_days", "days since signup", compute, _signed_up, _crossing)


_WEEK = timedelta(weeks=1)
# Coming closes tried per re-check (each computes the fact again): a test that flips at none of
# them is re-checked at the next one, so a settled user is looked at every few weeks, not weekly,
# and an evaluation computes the fact at most this many times more.
_WEEKS_TRIED = 4


def _after_week_close(ctx: Context, op: Op, value: Value) -> datetime | None:
    """The next week close once the account's rollups have settled: ROLLUP_SETTLE_SECONDS after
    it, so the closed week's last deltas are in (this week's, when that is still to come)."""
    settle = timedelta(seconds=ROLLUP_SETTLE_SECONDS)
    this_week = ctx.instant.next_week - _WEEK + settle
    return this_week if this_week > ctx.instant.now else ctx.instant.next_week + settle


def _week_closes(compute: Callable[[Context], Value]) -> Callable[[Context, Op, Value], datetime | None]:
    """changes_at of a fact read from complete weeks: the first week start at which its test
    flips, not every week start. Such a value moves only when a week closes, so trying each close
    in turn finds the exact instant; after _WEEKS_TRIED closes with no flip, the next close is
    the answer (a look then, which tries the following ones: never later than the flip). Values
    at a close are kept in the context's memo, shared by the fact's tests."""

    def changes_at(ctx: Context, op: Op, value: Value) -> datetime | None:
        holds = compare(compute(ctx), op, value)
        at = ctx.instant.next_week
        memo = ctx.memo
        horizon = memo.get(HORIZON)
        last = ctx.now + horizon if horizon is not None else None
        for week in range(_WEEKS_TRIED):
            if last is not None and at >= last:
                return None  # a flip from here on would not be the next check
            key = (id(compute), week)
            later = memo.get(key)
            if later is None:
                # One context per coming close, shared by the facts tried there (and their memo).
                closed = memo.get(("week close", week))
                if closed is None:
                    closed = memo[("week close", week)] = Context(ctx.user, at, ctx.account)
                later = memo[key] = (compute(closed),)
            if compare(later[0], op, value) != holds:
                return at
            at += _WEEK
        return at  # not flipped yet: look again then

    return changes_at


@rebuildable
def count_fact(event: str, days: int) -> Fact:
    def compute(ctx: Context) -> Value:
        return F.count_within_at(ctx.user, event, days, ctx.instant)

    def changes_at(ctx: Context, op: Op, value: Value) -> datetime | None:
        # With no new event the count only falls, when its oldest counted day leaves the window.
        stats = ctx.user.events.get(event)
        return F.window_exit_at(stats.daily, days, ctx.instant) if stats else None

    return Fact(
        fact_key("count", event, f"{days}d"),
        f"{event} in the last {days} days",
        compute,
        changes_at,
        by_threshold=False,
        subject=Subject(event),
    )


@rebuildable
def active_days_fact(days: int) -> Fact:
    def compute(ctx: Context) -> Value:
        return F.active_days_within_at(ctx.user, days, ctx.instant)

    def changes_at(ctx: Context, op: Op, value: Value) -> datetime | None:
        return F.window_exit_at(ctx.user.active_days, days, ctx.instant)

    return Fact(
        fact_key("active_days", f"{days}d"),
        f"active days in the last {days} days",
        compute,
        changes_at,
        by_threshold=False,
    )


@rebuildable
def feature_fact(feature: str) -> Fact:
    memo_key = f"feature:{feature}"

    def compute(ctx: Context) -> Value:
        memo = ctx.memo
        status: str | None = memo.get(memo_key)
        if status is None:  # F.feature_status, with the instant's today
            stats = ctx.user.features.get(feature)
            if stats is None:
                status = "never"
            else:
                first_day = ctx.instant.today - 27
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
        return F.window_exit_at(stats.days, 28, ctx.instant, keep=F.HABIT_DAYS_28D)

    return Fact(
        fact_key("feature", feature), f"status of feature {feature}", compute, changes_at, by_threshold=False
    )


@rebuildable
def weeks_below_fact(metric: F.Metric, threshold: int) -> Fact:
    def compute(ctx: Context) -> Value:
        return F.weeks_below_at(ctx.user, metric, threshold, ctx.instant, _signed_up_since(ctx))

    return Fact(
        fact_key("weeks_below", metric, threshold),
        f"complete weeks in a row with fewer than {threshold} {metric.replace('_', ' ')}",
        compute,
        _week_closes(compute),
        scans=True,
    )


@rebuildable
def trend_fact(metric: F.Metric) -> Fact:
    def compute(ctx: Context) -> Value:
        return F.trend_percent_at(ctx.user, metric, ctx.instant)

    return Fact(
        fact_key("trend", metric),
        f"week-over-week change of {metric} (%)",
        compute,
        _week_closes(compute),
        scans=True,
    )


@rebuildable
def frequency_fact() -> Fact:
    def compute(ctx: Context) -> Value:
        return F.frequency_band_at(ctx.user, ctx.instant)

    return Fact(
        "frequency", "frequency band (light/medium/heavy)", compute, _week_closes(compute), scans=True
    )


@rebuildable
def did_not_fact(did: str, not_: str, within: timedelta) -> Fact:
    def compute(ctx: Context) -> Value:
        # F.did_but_not_within, on times since EPOCH (an event's first time is shared by the
        # did facts that chain on it, and by age when it is signed_up).
        events = ctx.user.events
        first = events.get(did)
        if first is None:
            return 0
        deadline = ctx.since_epoch(first.first) + within
        if ctx.instant.since < deadline:
            return 0
        other = events.get(not_)
        return 1 if other is None or ctx.since_epoch(other.first) > deadline else 0

    def anchor(ctx: Context) -> datetime | None:
        stats = ctx.user.events.get(did)
        return stats.first if stats else None

    def after(op: Op, value: Value) -> timedelta:
        return within

    hours = int(within.total_seconds() // 3600)
    return anchored(
        fact_key("did", did, "not", not_, f"{hours}h"),
        f"did {did} but not {not_} within {format_duration(within)}",
        compute,
        anchor,
        after,
        by_threshold=False,
        subject=Subject(did),
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
# Context.memo's list of the facts whose stored value was out of range (nudge.model.numbers: stored
# before the bounds existed, or slipped through), treated as missing; evaluate reports them.
IGNORED = "ignored"


def ignore(ctx: Context, key: str) -> None:
    """Note that fact `key` read a value out of range and answered as if it were missing."""
    ctx.memo.setdefault(IGNORED, []).append(key)


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


def _trait(ctx: Context, name: str, account: bool) -> Any:
    if account:
        return ctx.account.traits.get(name) if ctx.account else None
    return _user_trait(ctx, name)


@rebuildable
def trait_number_fact(name: str, account: bool = False) -> Fact:
    """A trait as a number: durable_rules must never compare a number with a string. A value out of
    a numeric trait's range (an mrr of 1e19, "NaN") is missing: no rule acts on it."""
    key = fact_key("account_trait_number" if account else "trait_number", name)

    def compute(ctx: Context) -> Value:
        number = _number(_trait(ctx, name, account))
        if not trait_number_in_range(number):
            ignore(ctx, key)
            return MISSING_NUMBER
        return number

    return Fact(key, f"{'account ' if account else ''}trait {name} (number)", compute)


@rebuildable
def _trait_fact(name: str, account: bool) -> Fact:
    key = fact_key("account_trait" if account else "trait", name)

    def compute(ctx: Context) -> Value:
        value = _trait(ctx, name, account)
        if not trait_number_in_range(value):
            ignore(ctx, key)
            return ""  # as if missing
        return _trait_value(value)

    return Fact(key, f"{'account ' if account else ''}trait {name}", compute)


@rebuildable
def trait_fact(name: str) -> Fact:
    return _trait_fact(name, account=False)


@rebuildable
def account_trait_fact(name: str) -> Fact:
    return _trait_fact(name, account=True)


@rebuildable
def account_metric_fact(metric: str) -> Fact:
    def compute(ctx: Context) -> Value:
        if metric == "score":
            return ctx.account_score
        if ctx.account is None:
            return 0
        if metric == "active_users_trend":
            return ctx.account.active_users_trend_at(ctx.instant)
        return ctx.account.active_users(ctx.instant.weeks[0])

    # Re-checked at every week close (once its rollups settled), not at the close the figure now
    # predicts a flip: an account's figures move with its other users' activity, which
    # re-evaluates none of this user's rules, so a prediction from the rollup as it is now can be
    # weeks late (and the score is known only after the scoring pass: a context at a later close
    # has none).
    return Fact(
        fact_key("account", metric),
        "account score" if metric == "score" else f"account {metric.replace('_', ' ')}",
        compute,
        _after_week_close,
        by_threshold=False,
    )


def _segment(ctx: Context) -> Value:
    return ctx.segment


# Named functions, not lambdas: a fact pickles with them (nudge.rulebook.snapshot).
SEGMENT_FACT = Fact("segment", "lifecycle segment", _segment)


# Facts known only after the scoring pass.
SCORE_FACT_KEYS = frozenset({"score", "band", "account_band", fact_key("account", "score")})


def _score(ctx: Context) -> Value:
    return ctx.score


SCORE_FACT = Fact("score", "user score", _score)


def _band(ctx: Context) -> Value:
    return ctx.band


BAND_FACT = Fact("band", "user score band", _band)


def _account_band(ctx: Context) -> Value:
    return ctx.account_band


ACCOUNT_BAND_FACT = Fact("account_band", "account score band", _account_band)
