"""DynamoDB's Time to Live for the local stack, which moto keeps as a setting and never runs.

When the simulated clock moves, every item whose TTL attribute (in a table whose TTL the template
enables) is at or before the new time is deleted, as DynamoDB's TTL process would have by then:
a user inactive for StateTtlDays is gone from the local stack too, rollup weeks after 26 weeks,
rate-limit windows after an hour. Each delete is conditioned on the attribute still being past,
so an item written again meanwhile stays (DynamoDB re-checks too), and goes through the server,
so it reaches the table's stream as a REMOVE, as TTL deletions do (the evaluator's filter drops
them). Finding them reads moto's in-process backend: a Scan per table would cost the demo seconds.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError
from moto.dynamodb.models import dynamodb_backends
from moto.dynamodb.models.dynamo_type import Item

from nudge.tools.local.aws import ACCOUNT_ID, REGION

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient


def expired(now: datetime) -> list[tuple[str, str, dict[str, Any]]]:
    """(table, TTL attribute, key) of every item whose expiry is at or before `now`."""
    epoch = int(now.timestamp())
    found: list[tuple[str, str, dict[str, Any]]] = []
    backend = dynamodb_backends[ACCOUNT_ID][REGION]
    for table in list(backend.tables.values()):
        if table.ttl.get("TimeToLiveStatus") != "ENABLED":
            continue
        attribute = table.ttl["AttributeName"]
        # Snapshots (list() runs in C, under the GIL): requests may write while this reads.
        for entry in list(table.items.values()):
            # moto keeps hash -> item, or hash -> {range -> item} when the table has a sort key.
            items: list[Item] = list(entry.values()) if table.range_key_attr else [entry]  # type: ignore[list-item]
            for item in items:
                value = item.attrs.get(attribute)
                if value is None or value.type != "N" or float(value.value) > epoch:
                    continue
                key = {table.hash_key_attr: item.hash_key.to_json()}
                if table.range_key_attr and item.range_key is not None:
                    key[table.range_key_attr] = item.range_key.to_json()
                found.append((table.name, attribute, key))
    return found


def expire(dynamodb: DynamoDBClient, now: datetime) -> int:
    """Delete what has expired by `now`; how many items went."""
    deleted = 0
    for table, attribute, key in expired(now):
        try:
            dynamodb.delete_item(
                TableName=table,
                Key=key,
                ConditionExpression="#ttl <= :now",
                ExpressionAttributeNames={"#ttl": attribute},
                ExpressionAttributeValues={":now": {"N": str(int(now.timestamp()))}},
            )
            deleted += 1
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise
    return deleted
