"""Account rollups applied off the user's write, on moto: the real ingest service on
DynamoUsageStore, the table's stream, and the rollup function's real handler fed as Lambda feeds
it (bench.rollup_stream: the template's FilterCriteria and BatchSize, Lambda's record shape). The
in-memory store, which applies each delta with its write, is the reference."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto.dynamodb.models import DynamoDBBackend

from bench.rollup_stream import RollupPump
from bench.sample import batches, sample_messages
from nudge.adapters.dynamo.usage import DynamoUsageStore
from nudge.adapters.memory import MemoryUsageStore
from nudge.model.errors import StoreUnavailable
from nudge.model.messages import Batch, InvalidMessage, Message
from nudge.model.state import AccountRollup
from nudge.rulebook.plan import load_plan
from nudge.services.ingest import ingest
from nudge.settings import Settings
from nudge.tools.local import moto_transactions
from nudge.tools.local.aws import create_usage_resources

PLAN = load_plan(Path("rules"))
SETTINGS = Settings(usage_table="usage-rollups", keys_path="/nudge/rollups/keys")
TABLE = SETTINGS.usage_table


@pytest.fixture
def client(aws: None, monkeypatch: pytest.MonkeyPatch) -> Any:
    # A cancelled transaction in moto restores a deep copy of the table, stream included, so a
    # stream reader's iterator would see nothing written after it; the local stack's all-or-nothing
    # transactions check every condition first and copy nothing (in-process moto: one request at a time).
    monkeypatch.setattr(DynamoDBBackend, "transact_write_items", moto_transactions.transact_write_items)
    dynamodb = boto3.client("dynamodb")
    create_usage_resources(dynamodb, boto3.client("ssm"), Path("template.yaml"), SETTINGS, ["k"])
    return dynamodb


def sample(limit: int) -> list[tuple[Any, list[tuple[int, Message]]]]:
    """The sample product's first `limit` messages as the requests an SDK posts (identities merge)."""
    out = []
    for body in batches(sample_messages(limit)):
        batch = Batch.model_validate(json.loads(body.json))
        out.append(
            (body.received, [(i, m) for i, m in enumerate(batch.batch) if not isinstance(m, InvalidMessage)])
        )
    return out


def rollups(store: Any, accounts: set[str]) -> dict[str, AccountRollup]:
    return {a: store.load_rollup(a) for a in sorted(accounts)}


def test_every_batch_delivered_twice_leaves_the_rollups_the_in_memory_store_applies(client: Any) -> None:
    # Given the sample's requests, ingested on DynamoDB and, for reference, in memory
    store, memory = DynamoUsageStore(client, TABLE), MemoryUsageStore()
    pump = RollupPump(client, boto3.client("dynamodbstreams"), TABLE)
    for received, messages in sample(1_000):
        ingest(messages, PLAN, store, received)
        ingest(messages, PLAN, memory, received)
        # When each request's stream batch reaches the rollup function, and Lambda retries it
        # whole after its transaction committed (a timeout)
        records = pump.read()
        for _ in range(2):
            if records:
                pump.handler.handle({"Records": records})

    # Then every account's rollup is what the in-memory store applied with each write
    accounts = {s.value.account_id for s in memory.users.values() if s.value.account_id}
    assert len(accounts) >= 10
    assert rollups(store, accounts) == rollups(memory, accounts)


def test_a_batch_whose_transaction_fails_applies_nothing_and_its_retry_applies_all(client: Any) -> None:
    store, memory = DynamoUsageStore(client, TABLE), MemoryUsageStore()
    pump = RollupPump(client, boto3.client("dynamodbstreams"), TABLE)
    (received, messages), *_ = sample(100)
    ingest(messages, PLAN, store, received)
    ingest(messages, PLAN, memory, received)
    records = pump.read()
    accounts = {s.value.account_id for s in memory.users.values() if s.value.account_id}

    def refuse(params: dict[str, Any], **_: Any) -> None:
        raise ClientError({"Error": {"Code": "InternalServerError", "Message": "down"}}, "TransactWriteItems")

    client.meta.events.register("before-call.dynamodb.TransactWriteItems", refuse, unique_id="refuse")
    with pytest.raises(StoreUnavailable):
        pump.handler.handle({"Records": records})
    assert all(not r.weeks and not r.feature_adopters for r in rollups(store, accounts).values())

    client.meta.events.unregister("before-call.dynamodb.TransactWriteItems", unique_id="refuse")
    pump.handler.handle({"Records": records})
    assert rollups(store, accounts) == rollups(memory, accounts)


def test_only_writes_that_carry_a_delta_reach_the_rollup_function(client: Any) -> None:
    store = DynamoUsageStore(client, TABLE)
    pump = RollupPump(client, boto3.client("dynamodbstreams"), TABLE)
    for received, messages in sample(300):
        ingest(messages, PLAN, store, received)

    records = pump.read()

    assert records
    for record in records:
        keys, image = record["dynamodb"]["Keys"], record["dynamodb"]["NewImage"]
        assert keys["pk"]["S"].startswith("USER#")
        assert keys["sk"]["S"] == "STATE"
        assert "rd" in image
    # The account traits and the users' writes that changed no rollup stay out.
    arn = client.describe_table(TableName=TABLE)["Table"]["LatestStreamArn"]
    streams = boto3.client("dynamodbstreams")
    shard = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]["ShardId"]
    iterator = streams.get_shard_iterator(StreamArn=arn, ShardId=shard, ShardIteratorType="TRIM_HORIZON")
    every = streams.get_records(ShardIterator=iterator["ShardIterator"])["Records"]
    assert len(every) > len(records)


def test_a_batch_over_99_accounts_is_applied_in_several_transactions_each_once(client: Any) -> None:
    # Given one request that brings 150 users of 150 accounts
    store = DynamoUsageStore(client, TABLE)
    pump = RollupPump(client, boto3.client("dynamodbstreams"), TABLE)
    (received, _), *_ = sample(100)
    body = [
        (2 * i + k, m)
        for i in range(150)
        for k, m in enumerate(
            Batch.model_validate(
                {
                    "batch": [
                        {
                            "type": "group",
                            "userId": f"wide-{i}",
                            "groupId": f"wide-acct-{i}",
                            "messageId": f"g{i}",
                            "timestamp": received.isoformat(),
                        },
                        {
                            "type": "track",
                            "userId": f"wide-{i}",
                            "event": "project_created",
                            "messageId": f"t{i}",
                            "timestamp": received.isoformat(),
                        },
                    ]
                }
            ).batch
        )
    ]
    ingest(body, PLAN, store, received)
    sent: list[int] = []
    client.meta.events.register(
        "provide-client-params.dynamodb.TransactWriteItems",
        lambda params, **_: sent.append(len(params["TransactItems"])),
    )

    # When the batch reaches the rollup function, and is retried after it all committed
    records = pump.read()
    pump.handler.handle({"Records": records})
    pump.handler.handle({"Records": records})

    # Then two transactions of at most 100 items carried it (the retry's two found their markers)
    assert sent == [100, 52, 100, 52]
    for i in (0, 98, 99, 149):
        assert store.load_rollup(f"wide-acct-{i}").feature_adopters == {"projects": 1}
