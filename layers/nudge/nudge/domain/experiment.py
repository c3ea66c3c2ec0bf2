"""Experiment statistics, pure: does one arm convert at a different rate from another?

    compare(a, b) -> Comparison: a's rate minus b's, with a 95% always-valid interval, a direction
    (higher / lower / no difference seen / can't say yet) and warnings
    against(arms, baseline) -> each other arm compared with the baseline (a holdout, variant A)

The arms are anything that assigns users at random and counts who converted: a rule's treated
users against its holdout (domain/lift.py), a journey's variants or split paths against each
other or against its holdout. Users are counted once each, in the arm they were first assigned to.

Why an always-valid interval. The report is opened whenever someone likes, every day of a test:
with a fixed-sample (Wald) interval, looking again and again until it excludes zero finds an
"effect" far more often than 5% of the time when there is none (about a quarter of null tests
over 20 looks; tests/unit/domain/test_experiment.py measures it). A confidence sequence holds
for every look at once: the chance that it EVER excludes the true difference, however often and
whenever it is looked at, stays within 5%. So it can be read at any time and a test stopped as
soon as it is clear.

The method: the mixture sequential probability ratio test (mSPRT) of Johari, Pekelis and Walsh
("Always valid inference", Operations Research 2022; what Optimizely's Stats Engine runs), on
the difference of the two rates, whose estimate is approximately normal with variance
V = p_a(1-p_a)/n_a + p_b(1-p_b)/n_b. Mixing the likelihood ratio over a normal prior
N(theta0, tau^2) on the difference gives the statistic

    L(theta0) = sqrt(V / (V + tau^2)) * exp(tau^2 (d - theta0)^2 / (2 V (V + tau^2)))

and the 95% interval is every theta0 with L(theta0) < 1/alpha:

    d +- sqrt(2 V (V + tau^2) / tau^2 * (log(1/alpha) + log((V + tau^2) / V) / 2))

tau is the scale of effect the mixture is tuned for: 10 percentage points. A fixed choice (tuning
it to the data seen would break the guarantee); at a conversion rate near 20% it keeps the interval
within 1.55-1.8x the width of a Wald interval from 40 to 10,000 users per arm (5 points would cost
2.6x at 40 users, 20 points 1.85x at 10,000): the price of validity at every look.

The rates in V are smoothed ((x+1)/(n+2)) so an arm with no conversions yet does not claim zero
variance. The normal approximation needs enough users:
below MIN_ARM per arm, or MIN_OUTCOMES conversions (or non-conversions) in either, nothing is
concluded ("too few"). Several arms against one baseline split alpha among them (Bonferroni), so
the chance of any false "higher" stays within 5%.

"Looked at early" is a separate warning: the interval is valid however early it is read, but an
effect measured over less than a full week has not seen every weekday, and one measured while
most users' conversion windows are still open may change as they close.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

ALPHA = 0.05
# The scale of effect the mixture is tuned for (a difference of 10 percentage points).
TAU = 0.1
# Below this many users in an arm, or this many conversions (or non-conversions) in either, the
# normal approximation behind the interval is not to be trusted: say so rather than conclude.
MIN_ARM = 30
MIN_OUTCOMES = 5
# Less than this between the first assignment and the look: not every weekday has been seen.
FULL_WEEK = timedelta(days=7)

Direction = Literal["higher", "lower", "no difference seen", "can't say yet"]


@dataclass(frozen=True)
class Arm:
    """One randomly assigned group: how many users, how many of them converted."""

    name: str
    users: int
    converted: int

    @property
    def rate(self) -> float | None:
        return self.converted / self.users if self.users else None


@dataclass(frozen=True)
class Comparison:
    a: Arm
    b: Arm
    difference: float | None  # a's rate minus b's
    interval: tuple[float, float] | None  # always-valid, at 1 - alpha
    alpha: float
    too_small: str  # why nothing can be concluded yet; "" when the sample is large enough
    early: str  # why the look is early; "" when it is not (or nothing is known of when)

    @property
    def warnings(self) -> tuple[str, ...]:
        return tuple(w for w in (self.too_small, self.early) if w)

    @property
    def direction(self) -> Direction:
        if self.too_small or self.interval is None:
            return "can't say yet"
        low, high = self.interval
        if low > 0:
            return "higher"
        if high < 0:
            return "lower"
        return "no difference seen"


def _smoothed(arm: Arm) -> float:
    return (arm.converted + 1) / (arm.users + 2)


def variance(a: Arm, b: Arm) -> float:
    """The variance of the difference of the two rates (smoothed rates, so never zero)."""
    pa, pb = _smoothed(a), _smoothed(b)
    return pa * (1 - pa) / a.users + pb * (1 - pb) / b.users


def half_width(v: float, alpha: float = ALPHA, tau: float = TAU) -> float:
    """The mSPRT interval's half width for an estimate of variance `v` (see the module's doc)."""
    t2 = tau * tau
    return math.sqrt(2 * v * (v + t2) / t2 * (math.log(1 / alpha) + math.log((v + t2) / v) / 2))


def always_valid_interval(
    a: Arm, b: Arm, alpha: float = ALPHA, tau: float = TAU
) -> tuple[float, float] | None:
    """The 1 - alpha confidence sequence of a's rate minus b's at this look (None: an arm is empty)."""
    if a.users <= 0 or b.users <= 0:
        return None
    d = a.converted / a.users - b.converted / b.users
    h = half_width(variance(a, b), alpha, tau)
    return d - h, d + h


def too_small(a: Arm, b: Arm) -> str:
    if a.users < MIN_ARM or b.users < MIN_ARM:
        return (
            f"too few users to say ({a.name} {a.users}, {b.name} {b.users}; "
            f"at least {MIN_ARM} each are needed)"
        )
    for arm in (a, b):
        if min(arm.converted, arm.users - arm.converted) < MIN_OUTCOMES:
            return f"too few outcomes to say ({arm.name}: {arm.converted} of {arm.users} converted)"
    return ""


def looked_early(started: datetime | None, now: datetime | None, pending: int, counted: int) -> str:
    """Why a look at `now` is early for a test whose first user was assigned at `started`."""
    if started is not None and now is not None and now - started < FULL_WEEK:
        days = (now - started).total_seconds() / 86400
        return (
            f"looked at early: {days:.1f} days since the first user was assigned; "
            "wait a full week so every weekday counts"
        )
    if pending > counted:
        return (
            f"looked at early: {pending} users' conversion windows are still open "
            f"({counted} closed); the difference may move as they close"
        )
    return ""


def compare(
    a: Arm,
    b: Arm,
    *,
    alpha: float = ALPHA,
    tau: float = TAU,
    started: datetime | None = None,
    now: datetime | None = None,
    pending: int = 0,
) -> Comparison:
    """a against b at this look. started/now/pending (users whose window is still open) feed the
    "looked at early" warning only; the interval does not need them."""
    difference = a.rate - b.rate if a.rate is not None and b.rate is not None else None
    return Comparison(
        a=a,
        b=b,
        difference=difference,
        interval=always_valid_interval(a, b, alpha, tau),
        alpha=alpha,
        too_small=too_small(a, b),
        early=looked_early(started, now, pending, a.users + b.users),
    )


def against(
    arms: Sequence[Arm],
    baseline: str,
    *,
    alpha: float = ALPHA,
    tau: float = TAU,
    started: datetime | None = None,
    now: datetime | None = None,
    pending: int = 0,
) -> list[Comparison]:
    """Each arm other than `baseline` against it (a journey's variants or paths against its
    holdout, or against variant A); alpha is split among them so the family stays at `alpha`."""
    base = next((arm for arm in arms if arm.name == baseline), None)
    if base is None:
        raise ValueError(f"no arm named {baseline!r} among {[arm.name for arm in arms]}")
    others = [arm for arm in arms if arm.name != baseline]
    each = alpha / max(1, len(others))
    return [
        compare(arm, base, alpha=each, tau=tau, started=started, now=now, pending=pending) for arm in others
    ]
