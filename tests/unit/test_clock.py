"""clock.installed: a clock for a block, and the one before it back after, even on an error."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from nudge import clock

THEN = datetime(2026, 1, 5, 9, tzinfo=UTC)
LATER = datetime(2026, 2, 1, tzinfo=UTC)


def test_installed_clocks_nest_and_the_previous_one_comes_back() -> None:
    before = clock.now()
    with clock.installed(lambda: THEN):
        assert clock.now() == THEN
        with clock.installed(lambda: LATER):
            assert clock.now() == LATER
        assert clock.now() == THEN
    # The wall clock again: not THEN, and not before the block started.
    assert clock.now() >= before


def test_the_previous_clock_comes_back_when_the_block_fails() -> None:
    with pytest.raises(RuntimeError), clock.installed(lambda: THEN):
        raise RuntimeError("boom")
    assert clock.now() != THEN


def test_use_clock_holds_for_the_test(use_clock: Callable[[clock.Source], None]) -> None:
    use_clock(lambda: LATER)
    assert clock.now() == LATER
