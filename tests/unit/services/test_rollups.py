"""Applying a stream batch's rollup deltas exactly once (nudge.services.rollups) on the in-memory
ledger: retried whole after its write committed, failed before it, retried with more records,
split over several transactions; and, as a property, any mix of those."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nudge.adapters.memory.rollups import CrashAfterCommit, MemoryRollupLedger, add
from nudge.backoff import Backoff
from nudge.domain.rollups import StreamDelta
from nudge.model.errors import StoreUnavailable
from nudge.model.state import AccountRollup, RollupDelta
from nudge.services.rollups import apply_rollups

NOW = datetime(2026, 12, 9, 9, 0, tzinfo=UTC)
NO_WAIT = Backoff(attempts=3, sleep=lambda _: None)


def d(seq: int, account: str, users: int = 1, sessions: int = 1) -> StreamDelta:
    return StreamDelta(
        str(1_000_000 + seq),
        RollupDelta(account_id=account, week_users={"2026-W50": users}, week_sessions={"2026-W50": sessions}),
    )


def expected(records: list[StreamDelta]) -> dict[str, AccountRollup]:
    """Each delta added once, as the in-memory usage store applies them with the write."""
    out: dict[str, AccountRollup] = {}
    for record in records:
        add(out.setdefault(record.delta.account_id, AccountRollup()), record.delta)
    return out


def nonzero(rollups: dict[str, AccountRollup]) -> dict[str, AccountRollup]:
    return {
        a: r
        for a, r in rollups.items()
        if any(w.active_users or w.sessions for w in r.weeks.values()) or any(r.feature_adopters.values())
    }


def test_a_batch_retried_whole_after_its_write_committed_counts_once() -> None:
    ledger = MemoryRollupLedger()
    batch = [d(1, "a"), d(2, "b"), d(3, "a", sessions=2)]
    ledger.crash_after_commit = 1

    # When the write commits but the function fails (timeout, lost answer), and Lambda retries
    with pytest.raises(CrashAfterCommit):
        apply_rollups(batch, ledger, NOW, attempts=NO_WAIT)
    outcome = apply_rollups(batch, ledger, NOW, attempts=NO_WAIT)

    # Then the retry finds the batch's marker and adds nothing
    assert (outcome.applied, outcome.replayed, outcome.transactions) == (0, 3, 0)
    assert ledger.rollups == expected(batch)
    assert ledger.rollups["a"].weeks["2026-W50"].sessions == 3


def test_a_batch_whose_write_fails_applies_nothing_and_its_retry_applies_all() -> None:
    class Down(MemoryRollupLedger):
        def apply(self, *args: object, **kwargs: object) -> str | None:
            raise StoreUnavailable("DynamoDB unreachable")

    batch = [d(1, "a"), d(2, "b")]
    down = Down()
    with pytest.raises(StoreUnavailable):
        apply_rollups(batch, down, NOW, attempts=NO_WAIT)
    assert down.rollups == {}

    ledger = MemoryRollupLedger()
    ledger.markers, ledger.rollups = down.markers, down.rollups
    outcome = apply_rollups(batch, ledger, NOW, attempts=NO_WAIT)
    assert (outcome.applied, outcome.transactions, outcome.accounts) == (2, 1, 2)
    assert ledger.rollups == expected(batch)


def test_a_retry_that_brings_more_records_applies_only_the_new_ones() -> None:
    ledger = MemoryRollupLedger()
    first = [d(1, "a"), d(2, "b")]
    apply_rollups(first, ledger, NOW, attempts=NO_WAIT)

    outcome = apply_rollups([*first, d(3, "a"), d(4, "c")], ledger, NOW, attempts=NO_WAIT)

    assert (outcome.applied, outcome.replayed) == (2, 2)
    assert ledger.rollups == expected([*first, d(3, "a"), d(4, "c")])
    assert ledger.markers == {"1000001": "1000004"}


def test_a_batch_over_the_accounts_of_one_transaction_is_split_each_with_its_marker() -> None:
    ledger = MemoryRollupLedger()
    batch = [d(i, f"acct-{i}") for i in range(1, 251)]
    ledger.crash_after_commit = 1  # the first transaction commits, then the function fails

    with pytest.raises(CrashAfterCommit):
        apply_rollups(batch, ledger, NOW, attempts=NO_WAIT)
    outcome = apply_rollups(batch, ledger, NOW, attempts=NO_WAIT)

    assert outcome.transactions == 2  # 99 accounts each: the first was already applied
    assert len(ledger.markers) == 3
    assert ledger.rollups == expected(batch)


def test_every_record_delivered_twice_in_any_order_counts_once() -> None:
    ledger = MemoryRollupLedger()
    batch = [d(1, "a"), d(2, "b"), d(3, "a", sessions=4)]

    outcome = apply_rollups([*reversed(batch), *batch], ledger, NOW, attempts=NO_WAIT)

    assert (outcome.applied, outcome.replayed) == (3, 3)
    assert ledger.rollups == expected(batch)
    assert ledger.markers == {"1000001": "1000003"}


def test_two_batches_on_one_account_both_count() -> None:
    ledger = MemoryRollupLedger()
    apply_rollups([d(1, "hot"), d(2, "hot")], ledger, NOW, attempts=NO_WAIT)
    apply_rollups([d(3, "hot"), d(4, "hot")], ledger, NOW, attempts=NO_WAIT)
    assert ledger.rollups["hot"].weeks["2026-W50"].active_users == 4


@settings(max_examples=60, deadline=None)
@given(
    accounts=st.lists(st.integers(0, 5), min_size=1, max_size=40),
    cut=st.integers(0, 40),
    crashes=st.lists(st.booleans(), max_size=6),
    max_accounts=st.integers(1, 4),
)
def test_whatever_is_retried_every_delta_counts_once(
    accounts: list[int], cut: int, crashes: list[bool], max_accounts: int
) -> None:
    # Given a stream shard's records, delivered in batches that may be retried after committing
    records = [d(i, f"acct-{a}", users=(i % 3) - 1, sessions=i % 4) for i, a in enumerate(accounts, 1)]
    ledger = MemoryRollupLedger()
    batches = [records[: max(1, cut)], records[max(1, cut) :]]
    tries = iter(crashes)
    for batch in (b for b in batches if b):
        grown = batch
        while True:
            ledger.crash_after_commit = 1 if next(tries, False) else 0
            try:
                apply_rollups(grown, ledger, NOW, max_accounts=max_accounts, attempts=NO_WAIT)
                break
            except CrashAfterCommit:
                continue
    # Then the accounts' rollups are every delta added exactly once
    assert nonzero(ledger.rollups) == nonzero(expected(records))


def test_batches_of_two_shards_starting_at_the_same_sequence_number_are_both_applied() -> None:
    # Sequence numbers are ordered within a shard, not documented unique across shards: a run is
    # named by its first record's eventID, so another shard's batch is never taken for a retry
    ledger = MemoryRollupLedger()
    first = StreamDelta("1000001", d(1, "a").delta, event_id="shard-1-event")
    second = StreamDelta("1000001", d(1, "a").delta, event_id="shard-2-event")
    apply_rollups([first], ledger, NOW, attempts=NO_WAIT)
    outcome = apply_rollups([second], ledger, NOW, attempts=NO_WAIT)
    assert (outcome.applied, outcome.replayed) == (1, 0)
    assert ledger.rollups["a"].weeks["2026-W50"].active_users == 2
