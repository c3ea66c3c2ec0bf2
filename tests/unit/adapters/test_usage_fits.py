"""`fits` measures a user's item as `save_user` would write it, the rollup delta (`rd`) included:
a request back-filling many weeks and features carries over a kilobyte of delta, and an item that
`fits` let through must never be refused by the write (the request would then lose everything of
that person, bench section 3 and the bounded-state guarantee)."""

from __future__ import annotations

from datetime import UTC, datetime

import boto3

from nudge.adapters.dynamo import codec
from nudge.adapters.dynamo.usage import DynamoUsageStore
from nudge.model.state import RollupDelta, UserState

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def test_fits_counts_the_rollup_delta_the_write_will_carry() -> None:
    # Given a store whose bound leaves a user's item 300 bytes of room (no AWS call is made)
    client = boto3.client(
        "dynamodb", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    state = UserState(user_id="u1", account_id="acme")
    probe = DynamoUsageStore(client, "usage", max_item_bytes=10**6)
    size = codec.item_bytes(probe._state_item(state, 0, NOW, "req-1"))
    store = DynamoUsageStore(client, "usage", max_item_bytes=size + 64 + 300)
    # and a delta back-filling 26 weeks and 20 features (about 1.2 KB encoded)
    weeks = {f"2026-W{w:02d}": 1 for w in range(1, 27)}
    delta = RollupDelta(
        account_id="acme",
        week_users=weeks,
        week_sessions=weeks,
        feature_adopters={f"feature_number_{n:02d}": 1 for n in range(20)},
    )
    # Then the state fits alone, and not with the delta its write would carry
    assert store.fits(state, "req-1")
    assert not store.fits(state, "req-1", delta)
