"""A step run every few seconds on a thread of its own, as Lambda and EventBridge run what is due on
their own while ``nudge serve`` is up; a failing step is printed and the loop goes on."""

from __future__ import annotations

import sys
import threading
import traceback
from collections.abc import Callable


class Background:
    """`step` every `interval_seconds` from start() until stop()."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    @property
    def running(self) -> bool:
        return self._thread is not None

    def start(self, step: Callable[[], object], interval_seconds: float) -> None:
        if self._thread is not None:
            return
        self._stop.clear()

        def loop() -> None:
            while not self._stop.wait(interval_seconds):
                try:
                    step()
                except Exception:
                    # A failing handler is already retried and dead-lettered by the pumps; this
                    # is the stack itself failing: say so, and keep serving.
                    traceback.print_exc(file=sys.stderr)

        self._thread = threading.Thread(target=loop, name=self.name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        thread, self._thread = self._thread, None
        if thread is not None:
            self._stop.set()
            thread.join()
