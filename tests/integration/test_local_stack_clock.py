"""The local stack's simulated clock holds inside the handlers it invokes and nowhere else, so a test
(or anything) sharing the process keeps its own clock, whatever ran before it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from nudge import clock
from nudge.tools.local.simulated_clock import SimulatedClock
from nudge.tools.local.stack import LocalStack

MONTH_AHEAD = datetime.now(UTC).replace(microsecond=0) + timedelta(days=30)


@pytest.mark.parametrize("containers", [0, 1])
def test_handlers_read_the_stack_clock_and_the_process_keeps_its_own(containers: int) -> None:
    # Given a local stack whose clock is a month ahead (in this process, or in a worker)
    with LocalStack(clock=SimulatedClock(MONTH_AHEAD), containers=containers, log_level="WARNING") as stack:
        # When the sweep function runs (it reports the day it swept through)
        summary = stack.invoke_function("SweepFunction", {})
        # Then the handler read the stack's clock: its watermark is a month ahead
        assert datetime.fromisoformat(summary["watermark"]) >= MONTH_AHEAD - timedelta(days=1)
        # ...while this process, stack running, still reads the wall clock
        assert clock.now() < MONTH_AHEAD - timedelta(days=29)
    # ...and after it stopped
    assert clock.now() < MONTH_AHEAD - timedelta(days=29)
