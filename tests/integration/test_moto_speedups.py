"""The local stack's speed-ups of moto (nudge.tools.local.moto_speedups.speed_up_moto) change no answer.

Every read the evaluator and the pumps make (Query on a table and on an index, paged or not,
GetItem, BatchGetItem, Scan, GetRecords) is answered with and without them, on items holding
every attribute type, and the answers must be identical.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import boto3
import pytest
from moto import mock_aws
from moto.core.serialize import BaseJSONSerializer
from moto.dynamodb.models.table import Table

from nudge.tools.local.moto_speedups import speed_up_moto

pytestmark = pytest.mark.e2e

TABLE = "speedups"


def _items() -> Iterator[dict[str, Any]]:
    for account in range(3):
        for sort in range(25):
            item: dict[str, Any] = {
                "pk": {"S": f"ACCOUNT#{account}"},
                "sk": {"S": f"WEEK#{sort:03d}"},
                "n": {"N": str(Decimal(sort) / 4)},
                "blob": {"B": bytes([sort, 0, 255]) * 5},
                "flag": {"BOOL": sort % 2 == 0},
                "nothing": {"NULL": True},
                "empty": {"S": ""},
                "tags": {"SS": ["a", f"t{sort}"]},
                "nums": {"NS": ["1", str(sort + 2)]},
                "blobs": {"BS": [b"\x00\x01", bytes([sort + 3])]},
                "nested": {
                    "M": {
                        "inner": {
                            "L": [{"S": "x"}, {"N": "2"}, {"B": b"\xff"}, {"M": {"deep": {"BOOL": False}}}]
                        },
                        "empty_map": {"M": {}},
                        "empty_list": {"L": []},
                    }
                },
            }
            if sort % 5 == 0:
                # In the sparse index: a bucket and a time, as the evaluator's segment records have.
                item["due_bucket"] = {"S": f"2026-01-0{1 + sort % 3}#{account}"}
                item["due_at"] = {"N": str(1_000 + sort)}
            yield item


@pytest.fixture
def client() -> Iterator[Any]:
    with mock_aws():
        dynamodb: Any = boto3.client("dynamodb", region_name="us-east-1")
        dynamodb.create_table(
            TableName=TABLE,
            KeySchema=[
                {"AttributeName": "pk", "KeyType": "HASH"},
                {"AttributeName": "sk", "KeyType": "RANGE"},
            ],
            AttributeDefinitions=[
                {"AttributeName": name, "AttributeType": kind}
                for name, kind in (("pk", "S"), ("sk", "S"), ("due_bucket", "S"), ("due_at", "N"))
            ],
            GlobalSecondaryIndexes=[
                {
                    "IndexName": "due",
                    "KeySchema": [
                        {"AttributeName": "due_bucket", "KeyType": "HASH"},
                        {"AttributeName": "due_at", "KeyType": "RANGE"},
                    ],
                    "Projection": {"ProjectionType": "KEYS_ONLY"},
                }
            ],
            BillingMode="PAY_PER_REQUEST",
            StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
        )
        for item in _items():
            dynamodb.put_item(TableName=TABLE, Item=item)
        yield dynamodb


def _reads(dynamodb: Any) -> dict[str, Any]:
    def pages(call: Callable[..., Any], **kwargs: Any) -> list[Any]:
        out = []
        while True:
            page = call(**kwargs)
            page.pop("ResponseMetadata", None)
            out.append(page)
            if "LastEvaluatedKey" not in page:
                return out
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    streams = boto3.client("dynamodbstreams", region_name="us-east-1")
    arn = dynamodb.describe_table(TableName=TABLE)["Table"]["LatestStreamArn"]
    shard = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]["ShardId"]
    iterator = streams.get_shard_iterator(StreamArn=arn, ShardId=shard, ShardIteratorType="TRIM_HORIZON")
    records = streams.get_records(ShardIterator=iterator["ShardIterator"], Limit=1000)["Records"]
    key = {"pk": {"S": "ACCOUNT#1"}, "sk": {"S": "WEEK#007"}}
    return {
        "query": pages(
            dynamodb.query,
            TableName=TABLE,
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": {"S": "ACCOUNT#1"}},
        ),
        "query_paged_range_filtered_projected": pages(
            dynamodb.query,
            TableName=TABLE,
            KeyConditionExpression="pk = :pk AND sk BETWEEN :a AND :b",
            FilterExpression="flag = :t",
            ProjectionExpression="sk, nested.inner, blobs",
            ExpressionAttributeValues={
                ":pk": {"S": "ACCOUNT#2"},
                ":a": {"S": "WEEK#003"},
                ":b": {"S": "WEEK#020"},
                ":t": {"BOOL": True},
            },
            Limit=4,
            ScanIndexForward=False,
        ),
        "query_missing_partition": pages(
            dynamodb.query,
            TableName=TABLE,
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": {"S": "ACCOUNT#none"}},
        ),
        "index_query_paged": [
            pages(
                dynamodb.query,
                TableName=TABLE,
                IndexName="due",
                KeyConditionExpression="due_bucket = :b AND due_at <= :now",
                ExpressionAttributeValues={":b": {"S": f"2026-01-0{day}#{account}"}, ":now": {"N": "1020"}},
                Limit=2,
            )
            for day in (1, 2, 3)
            for account in range(3)
        ],
        "get_item": dynamodb.get_item(TableName=TABLE, Key=key, ConsistentRead=True)["Item"],
        "batch_get_item": sorted(
            dynamodb.batch_get_item(
                RequestItems={TABLE: {"Keys": [key, {"pk": {"S": "ACCOUNT#0"}, "sk": {"S": "WEEK#000"}}]}}
            )["Responses"][TABLE],
            key=lambda item: str(item["pk"]) + str(item["sk"]),
        ),
        "scan": pages(dynamodb.scan, TableName=TABLE, Limit=30),
        "get_records": records,
    }


def _unpatched(monkeypatch: pytest.MonkeyPatch) -> None:
    for owner, name in ((Table, "query"), (BaseJSONSerializer, "_serialize_type_structure")):
        current = getattr(owner, name)
        monkeypatch.setattr(owner, name, getattr(current, "__wrapped__", current))


def test_reads_answer_the_same_with_and_without_the_speed_ups(
    client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    speed_up_moto()
    fast = _reads(client)
    with monkeypatch.context() as plain:
        _unpatched(plain)
        assert getattr(Table.query, "__wrapped__", None) is None
        slow = _reads(client)
    assert fast == slow
    # The answers hold what was written: binary round-trips, nested types survive.
    assert fast["get_item"]["blob"]["B"] == bytes([7, 0, 255]) * 5
    assert fast["get_item"]["nested"]["M"]["inner"]["L"][2] == {"B": b"\xff"}
    assert base64.b64encode(fast["get_records"][0]["dynamodb"]["NewImage"]["blob"]["B"])
    assert sum(len(page["Items"]) for page in fast["query"]) == 25
    assert [len(p["Items"]) for p in fast["query_paged_range_filtered_projected"]]


def test_speed_up_is_idempotent() -> None:
    speed_up_moto()
    query = Table.query
    speed_up_moto()
    assert Table.query is query
