"""A small bounded load run against the session's local stack: concurrent clients, many users, a
few hot accounts; no errors, and every accepted event is in state exactly once. No timings here:
bench/load.py (`python -m bench --only load`) reports those."""

from __future__ import annotations

from typing import TYPE_CHECKING

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


def test_sixteen_concurrent_writers_on_one_account_lose_no_rollup_update(api: Api, uid: str) -> None:
    import uuid
    from concurrent.futures import ThreadPoolExecutor
    from datetime import timedelta

    # Given 16 clients, each posting a session for 5 users of their own, all of one account
    account = f"hot-{uid}"
    now = api.stack.clock.now() - timedelta(minutes=5)

    def client(n: int) -> int:
        batch = []
        for u in range(5):
            user = f"{uid}-{n}-{u}"
            batch.append(
                {
                    "type": "group",
                    "userId": user,
                    "groupId": account,
                    "messageId": str(uuid.uuid4()),
                    "timestamp": now.isoformat(),
                }
            )
            batch.append(
                {
                    "type": "track",
                    "userId": user,
                    "event": "project_created",
                    "messageId": str(uuid.uuid4()),
                    "timestamp": (now + timedelta(seconds=1)).isoformat(),
                }
            )
        return int(api.post("/v1/batch", {"batch": batch}).status_code)

    with ThreadPoolExecutor(max_workers=16) as pool:
        statuses = list(pool.map(client, range(16)))
    # Then every request was taken, and the account's rollup counts all 80 users active this week
    assert statuses == [200] * 16
    week = (now + timedelta(seconds=1)).isocalendar()  # the week the events fell in
    key = f"{week.year}-W{week.week:02d}"
    rollup = api.account(account)["rollup"]
    assert rollup["weeks"][key]["active_users"] == 80
