"""No test's clock reaches the next (issue 14, 7f): one pytest run, two files in a fixed order, the
first moving nudge.clock 31 days ahead and never putting it back (as a test or fixture that fails
half-way through a clock change would), the second ingesting an event stamped two hours ahead of the
real time, which must be refused as clock skew. Without tests/conftest.py's autouse fixture, the
second saw the moved clock and accepted the event."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

MOVES_THE_CLOCK = """
from datetime import timedelta

from nudge import clock

LEFT_OPEN = []


def test_moves_the_clock_31_days_and_leaves_it_there():
    ahead = clock.now() + timedelta(days=31)
    LEFT_OPEN.append(clock.installed(lambda: ahead))
    LEFT_OPEN[0].__enter__()  # and never left
    assert clock.now() == ahead
"""

CHECKS_THE_REFUSAL = """
from datetime import UTC, datetime, timedelta
from pathlib import Path

from nudge import clock
from nudge.adapters.memory import MemoryUsageStore
from nudge.model.messages import Track
from nudge.rulebook.plan import load_plan
from nudge.services.ingest import ingest


def test_an_event_two_hours_ahead_of_the_real_time_is_refused():
    # As the ingest handler does: judged against clock.now().
    ahead = datetime.now(UTC) + timedelta(hours=2)
    message = Track(userId="u1", event="login", timestamp=ahead, messageId="m1")
    result = ingest([(0, message)], load_plan(Path("{rules}")), MemoryUsageStore(), clock.now())
    assert result.accepted == 0
    assert [(p.field, "future" in p.message) for p in result.errors] == [("timestamp", True)]
"""


def test_a_test_that_leaves_the_clock_moved_does_not_move_it_for_the_next(
    pytester: pytest.Pytester, request: pytest.FixtureRequest
) -> None:
    rules = request.config.rootpath / "rules"
    pytester.makepyfile(
        test_1_moves=MOVES_THE_CLOCK, test_2_checks=CHECKS_THE_REFUSAL.replace("{rules}", str(rules))
    )
    # The repository's tests/conftest.py as a plugin, in the order given, not shuffled.
    result = pytester.runpytest_inprocess(
        "-p",
        "tests.conftest",
        "-p",
        "no:randomly",
        "-p",
        "no:cacheprovider",
        "test_1_moves.py",
        "test_2_checks.py",
    )
    result.assert_outcomes(passed=2)
