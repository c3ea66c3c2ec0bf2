"""The usage table's item layout (nudge.adapters.dynamo.usage, codec), on moto with the table from
template.yaml: items a deployed table holds in the layout before this one (zlib state blobs,
WEEK#/FEATURES# rollup items) are read and added to; rollups land exactly once whatever is
posted again; a write carries one rollup item, and weeks past the kept ones leave it."""

from __future__ import annotations

import zlib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest

from nudge.adapters.dynamo.usage import ROLLUP, DynamoUsageStore, account_key, shard_of, user_key
from nudge.model.limits import ROLLUP_WEEKS_KEPT
from nudge.model.messages import Group, Message, Track
from nudge.model.state import UserState
from nudge.rulebook.plan import load_plan
from nudge.services.ingest import ingest
from nudge.settings import Settings
from nudge.tools.local.aws import create_usage_resources

PLAN = load_plan(Path("rules"))
NOW = datetime(2026, 12, 9, 9, 0, tzinfo=UTC)  # a Wednesday of 2026-W50
SETTINGS = Settings(usage_table="usage-layout", keys_path="/nudge/layout/keys")
TABLE = SETTINGS.usage_table


@pytest.fixture
def client(aws: None) -> Any:
    dynamodb = boto3.client("dynamodb")
    create_usage_resources(dynamodb, boto3.client("ssm"), Path("template.yaml"), SETTINGS, ["k"])
    return dynamodb


def messages(user: str, prefix: str, at: datetime) -> list[Message]:
    return [
        Group(userId=user, groupId="acme", timestamp=at, messageId=f"{prefix}-g"),
        Track(
            userId=user, event="project_created", timestamp=at + timedelta(minutes=1), messageId=f"{prefix}-p"
        ),
    ]


def old_layout(client: Any, store: DynamoUsageStore) -> None:
    """What the previous Nudge wrote for one user of account acme in 2026-W49: a zlib state blob
    and rollup items per week and for features."""
    state = UserState(user_id="old-user", first_seen=NOW - timedelta(days=7))
    client.put_item(
        TableName=TABLE,
        Item={
            **user_key("old-user"),
            "v": {"N": "3"},
            "updated_at": {"S": (NOW - timedelta(days=7)).isoformat()},
            "state": {"B": zlib.compress(state.model_dump_json().encode(), 6)},
        },
    )
    shard = shard_of("old-user", store.shards)
    for sort, attributes in [
        (f"WEEK#2026-W49#{shard:02d}", {"active_users": "1", "sessions": "2"}),
        (f"FEATURES#{shard:02d}", {"adopters:projects": "1"}),
    ]:
        client.put_item(
            TableName=TABLE,
            Item={**account_key("acme", sort), **{k: {"N": v} for k, v in attributes.items()}},
        )


def test_a_user_item_in_the_old_layout_loads_and_takes_the_next_write(client: Any) -> None:
    store = DynamoUsageStore(client, TABLE)
    old_layout(client, store)
    assert store.load_users(["old-user"])["old-user"].version == 3

    ingest([(0, m) for m in messages("old-user", "a", NOW)], PLAN, store, NOW)

    stored = store.load_users(["old-user"])["old-user"]
    assert stored.version == 4
    assert stored.value.account_id == "acme"
    assert client.get_item(TableName=TABLE, Key=user_key("old-user"))["Item"]["state"]["B"][0] == 0x01


def test_rollups_in_both_layouts_add_up(client: Any) -> None:
    store = DynamoUsageStore(client, TABLE)
    old_layout(client, store)

    ingest([(0, m) for m in messages("new-user", "b", NOW)], PLAN, store, NOW)

    rollup = store.load_rollup("acme")
    assert {w: (r.active_users, r.sessions) for w, r in rollup.weeks.items()} == {
        "2026-W49": (1, 2),
        "2026-W50": (1, 1),
    }
    assert rollup.feature_adopters == {"projects": 2}


def test_a_request_posted_again_or_redelivered_counts_once(client: Any) -> None:
    store = DynamoUsageStore(client, TABLE)
    batch = [(0, m) for m in messages("u1", "c", NOW)]
    for _ in range(3):  # the SDK's retry, and the same messages in a later request
        ingest(batch, PLAN, store, NOW + timedelta(seconds=10))
    ingest([(0, m) for m in messages("u1", "c", NOW)][::-1], PLAN, store, NOW + timedelta(minutes=5))

    rollup = store.load_rollup("acme")
    assert rollup.weeks["2026-W50"].active_users == 1
    assert rollup.weeks["2026-W50"].sessions == 1
    assert rollup.feature_adopters == {"projects": 1}


def test_a_write_updates_one_rollup_item_in_its_transaction(client: Any) -> None:
    store = DynamoUsageStore(client, TABLE)
    sent: list[dict[str, Any]] = []
    client.meta.events.register(
        "provide-client-params.dynamodb.TransactWriteItems", lambda params, **_: sent.append(params)
    )

    ingest([(0, m) for m in messages("u2", "d", NOW)], PLAN, store, NOW)

    (transaction,) = sent
    keys = [
        next(iter(entry.values()))["Key" if "Update" in entry else "Item"]
        for entry in transaction["TransactItems"]
    ]
    assert [k["sk"]["S"] for k in keys] == ["STATE", f"{ROLLUP}{shard_of('u2', store.shards):02d}"]


def test_weeks_past_the_kept_ones_leave_the_rollup(client: Any) -> None:
    store = DynamoUsageStore(client, TABLE, rollup_shards=1)
    long_ago = NOW - timedelta(weeks=ROLLUP_WEEKS_KEPT + 1)
    ingest([(0, m) for m in messages("u3", "e", long_ago)], PLAN, store, long_ago)
    assert len(store.load_rollup("acme").weeks) == 1

    ingest([(0, m) for m in messages("u4", "f", NOW)], PLAN, store, NOW)

    item = client.get_item(TableName=TABLE, Key=account_key("acme", f"{ROLLUP}00"))["Item"]
    assert sorted(name for name in item if name.startswith(("u:", "s:"))) == ["s:2026-W50", "u:2026-W50"]
    assert list(store.load_rollup("acme").weeks) == ["2026-W50"]
