"""A plain progress line at least every few seconds, for output that is not a terminal.

rich's progress bar redraws itself only on a terminal: in a CI log or through ``| tee`` the demo
printed nothing between its first line and its summary, for minutes. ``Heartbeat`` prints the
latest status as one plain line every ``every`` seconds from a thread of its own, so a step that
takes long (a busy day, the report) still shows the run is alive and how far it got.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Self

# A reader of a CI log should wait no more than 10 s for a sign of life. Half that, because on a
# loaded machine the thread wakes late: at load 28 on 2 cores, lines meant 10 s apart came 15 s apart.
EVERY_SECONDS = 5.0


class Heartbeat:
    """Writes `status()` every `every` seconds until stopped (and once more when stopped).

    `wait(timeout)` waits for the stop signal or the timeout, True when stopped: a test passes
    one that returns at once, so it sees each line without waiting for real time.
    """

    def __init__(
        self,
        write: Callable[[str], None],
        status: Callable[[], str],
        *,
        every: float = EVERY_SECONDS,
        wait: Callable[[float], bool] | None = None,
    ) -> None:
        if every <= 0:
            raise ValueError("every must be positive")
        self._write = write
        self._status = status
        self.every = every
        self._stopped = threading.Event()
        self._wait = wait or self._stopped.wait
        self._thread: threading.Thread | None = None

    def start(self) -> Self:
        self._thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._wait(self.every) and not self._stopped.is_set():
            self._write(self._status())

    def stop(self) -> None:
        self._stopped.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join()
            self._write(self._status())

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class Status:
    """The latest status line, set by the work and read by the heartbeat: `status()`."""

    def __init__(self, text: str = "", *, clock: Callable[[], float] | None = None) -> None:
        self._text = text
        self._clock = clock or time.monotonic
        self._began = self._clock()

    def set(self, text: str) -> None:
        self._text = text

    def __call__(self) -> str:
        return f"[{self._clock() - self._began:5.0f} s] {self._text}"
