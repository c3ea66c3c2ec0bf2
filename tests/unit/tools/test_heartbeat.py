"""The demo's plain progress line, for output that is not a terminal (CI logs, `| tee`): at least
one line every 10 s (5 s asked), the latest status each time. A fake ticker stands in for the clock."""

from __future__ import annotations

import io
import threading

import pytest
from rich.console import Console

from nudge.tools.local import demo
from nudge.tools.local.heartbeat import EVERY_SECONDS, Heartbeat, Status


class FakeTicker:
    """Stands for `Event.wait(timeout)`: each call is one tick of `timeout` seconds passing
    (False: not stopped), until `ticks` have passed; then it reports stopped."""

    def __init__(self, ticks: int) -> None:
        self.ticks = ticks
        self.asked: list[float] = []
        self.done = threading.Event()

    def __call__(self, timeout: float) -> bool:
        self.asked.append(timeout)
        if len(self.asked) > self.ticks:
            self.done.set()
            return True
        return False


def test_a_line_with_the_latest_status_at_each_tick_of_at_most_ten_seconds() -> None:
    # Given a status the work moves on, and a heartbeat on a fake ticker
    lines: list[str] = []
    texts = iter(["day 1/90", "day 2/90", "day 3/90"])
    ticker = FakeTicker(ticks=3)
    heartbeat = Heartbeat(lines.append, lambda: next(texts, "done"), wait=ticker)

    # When three ticks pass and the heartbeat stops
    heartbeat.start()
    assert ticker.done.wait(timeout=60)
    heartbeat.stop()

    # Then each tick wrote the status of the moment, and one more line at the end
    assert lines == ["day 1/90", "day 2/90", "day 3/90", "done"]
    # And no tick was longer than half of ten seconds (a loaded machine wakes the thread late)
    assert EVERY_SECONDS <= 5.0
    assert ticker.asked == [EVERY_SECONDS] * 4


def test_nothing_is_written_before_the_first_tick() -> None:
    # Given a heartbeat whose ticker reports it stopped at once
    lines: list[str] = []
    heartbeat = Heartbeat(lines.append, lambda: "starting", wait=FakeTicker(ticks=0))

    # When it starts and stops before a tick passed
    with heartbeat:
        pass

    # Then only the closing line was written
    assert lines == ["starting"]


def test_every_must_be_positive() -> None:
    with pytest.raises(ValueError, match="every must be positive"):
        Heartbeat(print, lambda: "", every=0)


def test_status_says_how_long_the_run_has_taken() -> None:
    # Given a status on a fake clock
    now = [100.0]
    status = Status("starting the local stack", clock=lambda: now[0])

    # When 42 seconds pass and the work moves on
    now[0] += 42
    status.set("day 3.5/90")

    # Then the line gives the elapsed seconds and the latest text
    assert status() == "[   42 s] day 3.5/90"


def test_the_demo_prints_plain_progress_lines_when_its_output_is_not_a_terminal(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a console writing to a file (not a terminal), and a demo whose run reports its status
    out = io.StringIO()
    console = Console(file=out, force_terminal=False, width=200)
    ticked = threading.Event()

    def run(*args: object) -> int:
        alive: Status = args[-1]  # type: ignore[assignment]
        alive.set("day 12.5/90 (2026-12-19): 9,000 messages sent, 300/s")
        assert ticked.wait(timeout=60)  # the heartbeat wrote while the run was busy
        return 0

    def one_tick(write: object, status: object, **_: object) -> Heartbeat:
        ticker = FakeTicker(ticks=1)

        def wait(timeout: float) -> bool:
            stopped = ticker(timeout)
            if len(ticker.asked) == 2:
                ticked.set()
            return stopped

        return Heartbeat(write, status, wait=wait)  # type: ignore[arg-type]

    monkeypatch.setattr(demo, "_run", run)
    monkeypatch.setattr(demo, "Heartbeat", one_tick)

    # When the demo runs
    assert demo.run_demo(console=console) == 0

    # Then its output holds the status line, with the time it was written at
    assert "s] day 12.5/90 (2026-12-19): 9,000 messages sent, 300/s" in out.getvalue()
