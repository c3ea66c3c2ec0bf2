"""In-memory RollupLedger: the rollup consumer's ledger as a readable specification (markers by
run, deltas applied with them all at once), with a knob to fail the next write after it commits."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import datetime

from nudge.model.errors import StateConflict, StoreUnavailable
from nudge.model.state import AccountRollup, RollupDelta, WeekRollup


class CrashAfterCommit(StoreUnavailable):
    """The write was made, and the caller is told it failed (a timeout, a lost answer)."""


class MemoryRollupLedger:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.markers: dict[str, str] = {}
        self.rollups: dict[str, AccountRollup] = {}
        self.writes = 0
        # The next this many applies commit, then raise CrashAfterCommit.
        self.crash_after_commit = 0

    def apply(
        self,
        run: str,
        through: str,
        deltas: Sequence[RollupDelta],
        now: datetime,
        applied_through: str | None = None,
    ) -> str | None:
        with self._lock:
            held = self.markers.get(run)
            if held != applied_through:
                if held is None:
                    raise StateConflict(f"rollup run {run} has no marker")  # as DynamoDB's condition fails
                return held
            self.markers[run] = through
            for delta in deltas:
                add(self.rollups.setdefault(delta.account_id, AccountRollup()), delta)
            self.writes += 1
            if self.crash_after_commit:
                self.crash_after_commit -= 1
                raise CrashAfterCommit("the rollup write committed, then its answer was lost")
            return None


def add(rollup: AccountRollup, delta: RollupDelta) -> None:
    """`delta` added to `rollup` (as DynamoDB's ADD does to the rollup shard)."""
    for week, users in delta.week_users.items():
        rollup.weeks.setdefault(week, WeekRollup()).active_users += users
    for week, sessions in delta.week_sessions.items():
        rollup.weeks.setdefault(week, WeekRollup()).sessions += sessions
    for feature, adopters in delta.feature_adopters.items():
        rollup.feature_adopters[feature] = rollup.feature_adopters.get(feature, 0) + adopters
