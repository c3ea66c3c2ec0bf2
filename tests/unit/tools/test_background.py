"""The local stack's background loop (`nudge serve`): a failing step is printed and the loop goes on."""

from __future__ import annotations

import threading

import pytest

from nudge.tools.local.background import Background


def test_a_failing_step_is_printed_and_the_next_one_still_runs(capsys: pytest.CaptureFixture[str]) -> None:
    # Given a step that fails the first time and counts the later ones
    calls: list[int] = []
    third = threading.Event()

    def step() -> None:
        calls.append(len(calls))
        if len(calls) == 1:
            raise RuntimeError("the stack itself failed")
        if len(calls) == 3:
            third.set()

    loop = Background("test-loop")
    # When it runs in the background until it has been called three times
    loop.start(step, 0.001)
    loop.start(step, 0.001)  # a second start changes nothing: one thread
    assert third.wait(30)
    loop.stop()

    # Then the failure was printed with its traceback, the loop went on, and it stopped
    assert "RuntimeError: the stack itself failed" in capsys.readouterr().err
    assert not loop.running
    assert [t.name for t in threading.enumerate()].count("test-loop") == 0
    assert len(calls) >= 3
