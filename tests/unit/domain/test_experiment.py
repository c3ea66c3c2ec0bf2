"""Experiment statistics: the always-valid interval keeps its 95% at every look, where a fixed-sample
interval peeked at does not; warnings for small samples and early looks; several arms split alpha.

The coverage tests simulate with fixed seeds and count outcomes (no timing): each simulated test
streams users into two arms and looks after every 50 per arm; a miss is a test whose interval ever
excluded the true difference at any look."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nudge.domain.experiment import (
    ALPHA,
    MIN_ARM,
    Arm,
    against,
    always_valid_interval,
    compare,
    half_width,
    variance,
)

Z95 = 1.959964
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def _peeking(p_a: float, p_b: float, *, runs: int, users: int, every: int, seed: int) -> tuple[float, float]:
    """The share of simulated tests whose always-valid interval, and whose Wald interval, excluded
    the true difference at some look."""
    rng = random.Random(seed)
    truth = p_a - p_b
    missed_valid = missed_wald = 0
    for _ in range(runs):
        x_a = x_b = 0
        valid_ok = wald_ok = True
        for n in range(1, users + 1):
            x_a += rng.random() < p_a
            x_b += rng.random() < p_b
            if n < MIN_ARM or n % every:
                continue
            interval = always_valid_interval(Arm("a", n, x_a), Arm("b", n, x_b))
            assert interval is not None
            valid_ok = valid_ok and interval[0] <= truth <= interval[1]
            r_a, r_b = x_a / n, x_b / n
            se = math.sqrt(r_a * (1 - r_a) / n + r_b * (1 - r_b) / n)
            wald_ok = wald_ok and abs(r_a - r_b - truth) <= Z95 * se
        missed_valid += not valid_ok
        missed_wald += not wald_ok
    return missed_valid / runs, missed_wald / runs


@pytest.mark.parametrize(
    ("p_a", "p_b", "seed"),
    [(0.2, 0.2, 11), (0.3, 0.2, 12), (0.06, 0.04, 13)],
    ids=["no effect", "10 points", "rare conversions"],
)
def test_the_interval_holds_at_every_look_where_a_peeked_wald_interval_does_not(
    p_a: float, p_b: float, seed: int
) -> None:
    # Given 300 simulated tests of 1,000 users per arm, looked at after every 50
    valid, wald = _peeking(p_a, p_b, runs=300, users=1000, every=50, seed=seed)
    # Then the always-valid interval ever misses the truth in at most 5% of them
    assert valid <= ALPHA
    # ... while the fixed-sample interval, read at each look, misses several times as often
    assert wald > 2 * ALPHA
    assert wald >= 4 * max(valid, 1 / 300)


def test_the_price_of_validity_is_a_bounded_widening() -> None:
    # Against a Wald interval on the same counts, from 40 to 10,000 users per arm near a 20% rate
    ratios = []
    for n in (40, 100, 300, 1000, 3000, 10000):
        a, b = Arm("a", n, round(0.22 * n)), Arm("b", n, round(0.2 * n))
        low, high = always_valid_interval(a, b) or (0.0, 0.0)
        r_a, r_b = a.converted / n, b.converted / n
        wald = 2 * Z95 * math.sqrt(r_a * (1 - r_a) / n + r_b * (1 - r_b) / n)
        ratios.append((high - low) / wald)
    assert all(1.3 < r < 2.0 for r in ratios), ratios


@given(
    n_a=st.integers(1, 5000),
    n_b=st.integers(1, 5000),
    share_a=st.floats(0, 1),
    share_b=st.floats(0, 1),
)
def test_the_interval_is_centred_on_the_observed_difference_and_shrinks_with_more_users(
    n_a: int, n_b: int, share_a: float, share_b: float
) -> None:
    a, b = Arm("a", n_a, round(share_a * n_a)), Arm("b", n_b, round(share_b * n_b))
    interval = always_valid_interval(a, b)
    assert interval is not None
    low, high = interval
    difference = a.converted / n_a - b.converted / n_b
    assert low < difference < high
    assert (low + high) / 2 == pytest.approx(difference)
    # The same rates from four times the users: a narrower interval
    bigger = always_valid_interval(Arm("a", 4 * n_a, 4 * a.converted), Arm("b", 4 * n_b, 4 * b.converted))
    assert bigger is not None
    assert bigger[1] - bigger[0] < high - low


def test_an_arm_with_no_conversions_still_has_a_width() -> None:
    assert variance(Arm("a", 100, 0), Arm("b", 100, 0)) > 0
    low, high = always_valid_interval(Arm("a", 100, 0), Arm("b", 100, 0)) or (0.0, 0.0)
    assert low < 0 < high


def test_an_empty_arm_has_no_interval() -> None:
    assert always_valid_interval(Arm("a", 0, 0), Arm("b", 10, 1)) is None
    assert compare(Arm("a", 0, 0), Arm("b", 10, 1)).direction == "can't say yet"


def test_too_few_users_or_outcomes_concludes_nothing_and_says_why() -> None:
    small = compare(Arm("treated", MIN_ARM - 1, 20), Arm("held out", 400, 40))
    assert "too few users" in small.too_small
    assert small.direction == "can't say yet"
    rare = compare(Arm("treated", 400, 3), Arm("held out", 400, 40))
    assert rare.too_small == "too few outcomes to say (treated: 3 of 400 converted)"
    assert rare.direction == "can't say yet"
    enough = compare(Arm("treated", 400, 120), Arm("held out", 400, 40))
    assert enough.too_small == ""
    assert enough.direction == "higher"
    assert compare(Arm("b", 400, 40), Arm("a", 400, 120)).direction == "lower"
    assert compare(Arm("b", 400, 42), Arm("a", 400, 40)).direction == "no difference seen"


def test_a_look_before_a_full_week_or_with_most_windows_open_is_early() -> None:
    a, b = Arm("treated", 400, 120), Arm("held out", 400, 40)
    days = compare(a, b, started=T0, now=T0 + timedelta(days=3))
    assert days.early.startswith("looked at early: 3.0 days since the first user was assigned")
    # The interval is valid however early: early is a warning, the direction stands
    assert days.direction == "higher"
    assert days.warnings == (days.early,)
    windows = compare(a, b, started=T0, now=T0 + timedelta(days=10), pending=900)
    assert "900 users' conversion windows are still open (800 closed)" in windows.early
    assert compare(a, b, started=T0, now=T0 + timedelta(days=10), pending=100).early == ""


def test_several_arms_against_a_baseline_split_alpha() -> None:
    # Given a journey's holdout and three variants
    arms = [Arm("holdout", 500, 50), Arm("A", 500, 80), Arm("B", 500, 75), Arm("C", 500, 52)]
    # When each variant is compared with the holdout
    comparisons = against(arms, "holdout")
    # Then each at alpha / 3, so the family's chance of a false "higher" stays at 5%
    assert [c.a.name for c in comparisons] == ["A", "B", "C"]
    assert all(c.alpha == pytest.approx(ALPHA / 3) for c in comparisons)
    alone = compare(arms[1], arms[0])
    assert comparisons[0].interval is not None
    assert alone.interval is not None
    assert comparisons[0].interval[1] - comparisons[0].interval[0] > alone.interval[1] - alone.interval[0]
    with pytest.raises(ValueError, match="no arm named 'control'"):
        against(arms, "control")


def test_half_width_matches_the_mixture_formula() -> None:
    # d +- sqrt(2 V (V + tau^2) / tau^2 * (log(1/alpha) + log((V + tau^2) / V) / 2)), by hand
    v, tau = 0.0004, 0.1
    expected = math.sqrt(2 * v * (v + tau**2) / tau**2 * (math.log(20) + math.log((v + tau**2) / v) / 2))
    assert half_width(v, 0.05, tau) == pytest.approx(expected)
    assert half_width(v, 0.05, tau) == pytest.approx(0.06203, abs=1e-4)
