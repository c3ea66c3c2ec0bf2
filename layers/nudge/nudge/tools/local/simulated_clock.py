"""The local stack's simulated clock: real time that can jump forward, and the one reading type.

``LocalStack`` installs a ``SimulatedClock`` as ``nudge.clock`` for the handlers; the pumps read
it (a ``Now``) to date what they deliver and dead-letter.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

# A reading of the simulated clock (SimulatedClock.now, or a fixed time in tests).
Now = Callable[[], datetime]


class ClockError(ValueError):
    """The simulated clock was asked to go backwards, or given a naive time."""


class SimulatedClock:
    """Simulated time for the local stack.

    It starts at the real time and runs at real speed, so a product app pointed at
    ``nudge serve`` sends timestamps the ingest API accepts; ``advance_to`` jumps it
    forward (the demo replays 90 days in minutes). It never goes backwards: state already
    folded at a later "now" (dedupe windows, kept weeks) would not make sense again.
    """

    def __init__(self, start: datetime | None = None) -> None:
        start = start if start is not None else datetime.now(UTC)
        require_aware(start)
        self._lock = threading.Lock()
        self._base = start.astimezone(UTC)
        self._anchor = time.monotonic()

    def now(self) -> datetime:
        with self._lock:
            return self._base + timedelta(seconds=time.monotonic() - self._anchor)

    __call__ = now

    def advance_to(self, when: datetime) -> datetime:
        """Jump to `when` (timezone-aware, not before now) and return it."""
        require_aware(when)
        with self._lock:
            current = self._base + timedelta(seconds=time.monotonic() - self._anchor)
            if when < current:
                raise ClockError(
                    f"the simulated clock only moves forward: it is {current.isoformat()}, "
                    f"{when.isoformat()} is earlier"
                )
            self._base = when.astimezone(UTC)
            self._anchor = time.monotonic()
            return self._base


def require_aware(when: datetime) -> None:
    """ClockError unless `when` has a timezone: a naive time can't be placed on the clock."""
    if when.tzinfo is None or when.utcoffset() is None:
        raise ClockError(f"{when.isoformat()} has no timezone; give one (e.g. 2026-01-05T09:00:00Z)")
