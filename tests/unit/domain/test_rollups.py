"""Rollup deltas off the stream, pure: summed per account, cut into runs that keep their first record."""

from __future__ import annotations

import pytest

from nudge.domain.rollups import StreamDelta, after, chunks, summed
from nudge.model.state import RollupDelta


def d(seq: int, account: str, users: int = 0, sessions: int = 0, **features: int) -> StreamDelta:
    week_users = {"2026-W50": users} if users else {}
    week_sessions = {"2026-W50": sessions} if sessions else {}
    return StreamDelta(
        str(seq),
        RollupDelta(
            account_id=account, week_users=week_users, week_sessions=week_sessions, feature_adopters=features
        ),
    )


def test_deltas_are_summed_per_account_and_what_cancels_out_is_left_out() -> None:
    records = [
        d(1, "b", users=1, sessions=2, projects=1),
        d(2, "a", sessions=1),
        d(3, "b", sessions=3, projects=-1),
    ]
    assert summed(records) == [
        RollupDelta(account_id="a", week_sessions={"2026-W50": 1}),
        RollupDelta(account_id="b", week_users={"2026-W50": 1}, week_sessions={"2026-W50": 5}),
    ]


def test_an_account_whose_deltas_cancel_out_gets_no_update() -> None:
    assert summed([d(1, "a", users=1), d(2, "a", users=-1)]) == []


def test_runs_hold_at_most_the_accounts_a_transaction_takes() -> None:
    records = [d(i, f"acct-{i % 7}", users=1) for i in range(1, 30)]
    runs = chunks(records, max_accounts=3)
    assert [r for run in runs for r in run] == records
    assert all(len({r.delta.account_id for r in run}) <= 3 for run in runs)
    assert len(runs) > 1


def test_a_batch_retried_with_more_records_is_cut_the_same_way_up_to_its_old_end() -> None:
    records = [d(i, f"acct-{i % 5}", users=1) for i in range(1, 40)]
    first = chunks(records[:23], max_accounts=4)
    again = chunks(records, max_accounts=4)
    # every run of the first try starts where a run of the retry starts (its marker's key)
    assert [run[0].sequence for run in first] == [run[0].sequence for run in again][: len(first)]
    assert [run for run in first[:-1]] == again[: len(first) - 1]


def test_after_keeps_the_records_past_a_marker_by_number_not_text() -> None:
    records = [d(9, "a", users=1), d(10, "a", users=1), d(11, "a", users=1)]
    assert [r.sequence for r in after(records, "9")] == ["10", "11"]


def test_a_sequence_number_that_is_not_a_number_is_refused() -> None:
    with pytest.raises(ValueError, match="not a decimal number"):
        after([d(1, "a", users=1)], "shard-1")
