"""A small bounded load run against the session's local stack: concurrent clients, many users, a
few hot accounts; no errors, and every accepted event is in state exactly once. No timings here:
bench/load.py (`python -m bench --only load`) reports those."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

# bench/ sits at the repository root, which pytest's pythonpath (tests/) leaves out.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.load import run_load, verify

if TYPE_CHECKING:
    from tests.e2e.conftest import Api


def test_concurrent_clients_lose_no_event_and_get_no_error(api: Api) -> None:
    # Given 8 clients with 10 batches each: 50 tracks for random users of 200, and group calls
    # tying users to 3 hot accounts
    result = run_load(
        api.base_url, api.write_key, clients=8, requests_per_client=10, users=200, hot_accounts=3, seed=6
    )

    # Then every batch is answered 200 (contention retried, as an SDK does)
    assert result.requests == 80
    assert dict(result.errors) == {}
    assert result.accepted_events == 80 * 50
    assert result.accepted_messages == 80 * 52

    # And the users hold exactly the events accepted
    verify(api.base_url, result)
    assert result.missing_users == 0
    assert result.counted_events == result.accepted_events
