"""The usage table's item layout (nudge.adapters.dynamo.usage, codec), on moto with the table from
template.yaml: items a deployed table holds in the layout before this one (zlib state blobs,
WEEK#/FEATURES# rollup items) are read and added to; rollups land exactly once whatever is
posted again or redelivered by the stream; a user's write is one PutItem carrying its delta, which
the rollup consumer applies, and weeks past the kept ones leave the rollup."""

from __future__ import annotations

import zlib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest

from bench.rollup_stream import RollupPump
from nudge.adapters.dynamo import codec
from nudge.adapters.dynamo.rollups import DELTA_ATTRIBUTE, RUN, decode_delta
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


def pump(client: Any, shards: int = 16) -> RollupPump:
    """The rollup function on this table's stream, as Lambda drives it."""
    return RollupPump(client, boto3.client("dynamodbstreams"), TABLE, shards)


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
    assert (
        client.get_item(TableName=TABLE, Key=user_key("old-user"))["Item"]["state"]["B"][0] == codec.FORMAT_2
    )


def test_a_user_item_in_format_1_with_dedupe_digests_loads_dedupes_and_takes_the_next_write(
    client: Any,
) -> None:
    # Given a user written by the Nudge before format 2 (format 1), having seen message a-p
    store = DynamoUsageStore(client, TABLE)
    codec.write_format(1)
    try:
        ingest([(0, m) for m in messages("f1-user", "a", NOW)], PLAN, store, NOW)
    finally:
        codec.write_format(2)
    assert (
        client.get_item(TableName=TABLE, Key=user_key("f1-user"))["Item"]["state"]["B"][0] == codec.FORMAT_1
    )
    before = store.load_users(["f1-user"])["f1-user"]
    # When a-p comes again with a new message
    later = NOW + timedelta(hours=1)
    again = [
        messages("f1-user", "a", NOW)[1],
        Track(userId="f1-user", event="login", timestamp=later, messageId="b-l"),
    ]
    ingest(list(enumerate(again)), PLAN, store, later)
    # Then a-p counts once (its digest, stored in format 1, is still found), and the write is format 2
    after = store.load_users(["f1-user"])["f1-user"]
    assert after.value.events["project_created"].count == before.value.events["project_created"].count == 1
    assert after.value.events["login"].count == 1
    assert (
        client.get_item(TableName=TABLE, Key=user_key("f1-user"))["Item"]["state"]["B"][0] == codec.FORMAT_2
    )


def test_rollups_in_both_layouts_add_up(client: Any) -> None:
    store = DynamoUsageStore(client, TABLE)
    consumer = pump(client)
    old_layout(client, store)

    ingest([(0, m) for m in messages("new-user", "b", NOW)], PLAN, store, NOW)
    consumer.pump()

    rollup = store.load_rollup("acme")
    assert {w: (r.active_users, r.sessions) for w, r in rollup.weeks.items()} == {
        "2026-W49": (1, 2),
        "2026-W50": (1, 1),
    }
    assert rollup.feature_adopters == {"projects": 2}


def test_a_request_posted_again_or_redelivered_counts_once(client: Any) -> None:
    store = DynamoUsageStore(client, TABLE)
    consumer = pump(client)
    batch = [(0, m) for m in messages("u1", "c", NOW)]
    for _ in range(3):  # the SDK's retry, and the same messages in a later request
        ingest(batch, PLAN, store, NOW + timedelta(seconds=10))
    ingest([(0, m) for m in messages("u1", "c", NOW)][::-1], PLAN, store, NOW + timedelta(minutes=5))
    records = consumer.read()
    # The stream batch delivered, then retried whole after its transaction committed.
    for _ in range(2):
        consumer.handler.handle({"Records": records})

    rollup = store.load_rollup("acme")
    assert rollup.weeks["2026-W50"].active_users == 1
    assert rollup.weeks["2026-W50"].sessions == 1
    assert rollup.feature_adopters == {"projects": 1}


def test_a_write_is_one_put_carrying_its_delta_and_the_consumer_one_update_per_account(client: Any) -> None:
    store = DynamoUsageStore(client, TABLE)
    consumer = pump(client)
    sent: list[tuple[str, dict[str, Any]]] = []
    for operation in ("PutItem", "UpdateItem", "TransactWriteItems"):
        client.meta.events.register(
            f"provide-client-params.dynamodb.{operation}",
            lambda params, model, **_: sent.append((model.name, params)),
        )

    ingest([(0, m) for m in messages("u2", "d", NOW)], PLAN, store, NOW)
    ingest([(0, m) for m in messages("u5", "d2", NOW)], PLAN, store, NOW)
    writes = list(sent)
    sent.clear()
    consumer.pump()

    # Then each user's write was one conditional PutItem, its rollup delta on the item
    assert sorted((name, p["Item"]["pk"]["S"]) for name, p in writes) == [
        ("PutItem", "ACCOUNT#acme"),
        ("PutItem", "USER#u2"),
        ("PutItem", "USER#u5"),
    ]
    (u2,) = [p["Item"] for _, p in writes if p["Item"]["pk"]["S"] == "USER#u2"]
    delta = decode_delta(u2[DELTA_ATTRIBUTE]["S"])
    assert (delta.account_id, delta.week_users, delta.feature_adopters) == (
        "acme",
        {"2026-W50": 1},
        {"projects": 1},
    )
    # and the consumer's one transaction holds one Update for the account (both users summed)
    # and the batch's marker
    ((name, transaction),) = sent
    assert name == "TransactWriteItems"
    updates = [e["Update"] for e in transaction["TransactItems"] if "Update" in e]
    (marker,) = [e["Put"] for e in transaction["TransactItems"] if "Put" in e]
    assert [u["Key"]["pk"]["S"] for u in updates] == ["ACCOUNT#acme"]
    assert updates[0]["Key"]["sk"]["S"].startswith(ROLLUP)
    assert ":a0" in updates[0]["ExpressionAttributeValues"]
    assert marker["Item"]["pk"]["S"].startswith(RUN)
    assert marker["ConditionExpression"] == "attribute_not_exists(pk)"
    rollup = store.load_rollup("acme")
    assert rollup.weeks["2026-W50"].active_users == 2
    assert rollup.feature_adopters == {"projects": 2}


def test_weeks_past_the_kept_ones_leave_the_rollup(client: Any) -> None:
    store = DynamoUsageStore(client, TABLE, rollup_shards=1)
    consumer = pump(client, shards=1)
    long_ago = NOW - timedelta(weeks=ROLLUP_WEEKS_KEPT + 1)
    ingest([(0, m) for m in messages("u3", "e", long_ago)], PLAN, store, long_ago)
    consumer.pump()
    assert len(store.load_rollup("acme").weeks) == 1

    ingest([(0, m) for m in messages("u4", "f", NOW)], PLAN, store, NOW)
    consumer.pump()

    item = client.get_item(TableName=TABLE, Key=account_key("acme", f"{ROLLUP}00"))["Item"]
    assert sorted(name for name in item if name.startswith(("u:", "s:"))) == ["s:2026-W50", "u:2026-W50"]
    assert list(store.load_rollup("acme").weeks) == ["2026-W50"]
