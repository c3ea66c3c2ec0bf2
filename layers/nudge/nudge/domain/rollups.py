"""Account rollups applied off the user's write: the deltas a stream batch carries, summed per
account and cut into transactions (pure; nudge.services.rollups applies them).

A user's write stores the rollup delta it implies on the user's item (`rd`); the table's stream
delivers each write once, in order per shard, and the rollup consumer sums a batch's deltas per
account so a busy account gets one update per batch, not one per user write.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from nudge.model.state import RollupDelta


@dataclass(frozen=True)
class StreamDelta:
    """One stream record's rollup delta, the record's sequence number (a decimal string, ordered
    within its shard) and its eventID (unique in the stream: AWS documents sequence numbers as
    ordered within a shard, not as unique across shards)."""

    sequence: str
    delta: RollupDelta
    event_id: str = ""

    @property
    def position(self) -> int:
        return position(self.sequence)

    @property
    def run_key(self) -> str:
        """What names a run that starts with this record: its eventID (its sequence number when the
        record has none, as in tests that build records by hand)."""
        return self.event_id or self.sequence


def position(sequence: str) -> int:
    """A stream sequence number as a number (they are decimal strings, ordered within a shard)."""
    if not sequence.isdigit():
        raise ValueError(f"stream sequence number {sequence!r} is not a decimal number")
    return int(sequence)


def summed(records: Iterable[StreamDelta]) -> list[RollupDelta]:
    """The records' deltas added up per account (sorted by account), counts that sum to 0 left out
    and accounts left with nothing dropped."""
    totals: dict[str, RollupDelta] = {}
    for record in records:
        delta = record.delta
        total = totals.setdefault(delta.account_id, RollupDelta(account_id=delta.account_id))
        for mine, theirs in (
            (total.week_users, delta.week_users),
            (total.week_sessions, delta.week_sessions),
            (total.feature_adopters, delta.feature_adopters),
        ):
            for key, n in theirs.items():
                mine[key] = mine.get(key, 0) + n
    out: list[RollupDelta] = []
    for account in sorted(totals):
        total = totals[account]
        cleaned = RollupDelta(
            account_id=account,
            week_users={k: n for k, n in sorted(total.week_users.items()) if n},
            week_sessions={k: n for k, n in sorted(total.week_sessions.items()) if n},
            feature_adopters={k: n for k, n in sorted(total.feature_adopters.items()) if n},
        )
        if not cleaned.is_empty():
            out.append(cleaned)
    return out


def chunks(records: Sequence[StreamDelta], max_accounts: int) -> list[list[StreamDelta]]:
    """Consecutive runs of `records` touching at most `max_accounts` accounts each, cut greedily from
    the first record: a batch retried with more records appended is cut the same way up to its old
    end, so every run keeps its first record (which names its idempotency marker)."""
    if max_accounts < 1:
        raise ValueError("a rollup transaction must hold at least one account")
    runs: list[list[StreamDelta]] = []
    accounts: set[str] = set()
    for record in records:
        account = record.delta.account_id
        if not runs or (account not in accounts and len(accounts) == max_accounts):
            runs.append([])
            accounts = set()
        runs[-1].append(record)
        accounts.add(account)
    return runs


def after(records: Sequence[StreamDelta], applied_through: str) -> list[StreamDelta]:
    """The records past `applied_through` (a run's marker says its records up to there are applied)."""
    mark = position(applied_through)
    return [r for r in records if r.position > mark]
