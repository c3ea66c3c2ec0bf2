"""Apply a stream batch's account-rollup deltas exactly once (the rollup consumer's use case).

The batch's records are cut into runs of at most ROLLUP_ACCOUNTS_PER_TRANSACTION accounts; each
run's deltas, summed per account, go to the ledger in one atomic write with the run's marker. A
retried batch (Lambda retries a failed stream batch whole, from the same first record) finds its
runs' markers and applies only the records past them: none when it is the same batch, the
appended ones when the retry brought more.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from nudge.backoff import CONTENTION, Backoff
from nudge.domain.rollups import StreamDelta, after, chunks, summed
from nudge.model.errors import StateConflict
from nudge.model.limits import ROLLUP_ACCOUNTS_PER_TRANSACTION
from nudge.ports import RollupLedger


@dataclass
class RollupOutcome:
    """What one batch did: records whose deltas were added now, records found already applied (a
    retried batch), the atomic writes made and the account updates in them."""

    applied: int = 0
    replayed: int = 0
    transactions: int = 0
    accounts: int = 0


def apply_rollups(
    records: Sequence[StreamDelta],
    ledger: RollupLedger,
    now: datetime,
    *,
    max_accounts: int = ROLLUP_ACCOUNTS_PER_TRANSACTION,
    attempts: Backoff = CONTENTION,
) -> RollupOutcome:
    """Every record's delta added once to its account, whatever was applied by an earlier try of
    this batch. StateConflict when a run stayed contended (the batch is then retried whole)."""
    outcome = RollupOutcome()
    # One shard's records, each once and in stream order, whatever the delivery: Lambda's batches
    # are so already; a record delivered twice within a batch (a test's doubling pump) counts once.
    unique = {r.sequence: r for r in records}
    ordered = sorted(unique.values(), key=lambda r: r.position)
    outcome.replayed += len(records) - len(ordered)
    for run in chunks(ordered, max_accounts):
        key = run[0].run_key
        pending, marker = list(run), None
        for _ in attempts.tries():
            deltas = summed(pending)
            if not deltas:
                # Nothing to add (the run's deltas cancel out): nothing to mark either.
                outcome.applied += len(pending)
                break
            try:
                held = ledger.apply(key, pending[-1].sequence, deltas, now, marker)
            except StateConflict:
                continue  # another batch's transaction on one of these accounts: try again
            if held is None:
                outcome.applied += len(pending)
                outcome.transactions += 1
                outcome.accounts += len(deltas)
                break
            # An earlier try of this batch applied the run up to `held`: only what follows is new.
            marker = held
            rest = after(run, held)
            outcome.replayed += len(pending) - len(rest)
            pending = rest
            if not pending:
                break
        else:
            raise StateConflict(f"rollup run {key} stayed contended")
    return outcome
