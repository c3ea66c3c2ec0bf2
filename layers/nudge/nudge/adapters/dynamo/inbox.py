"""The in-app inbox on DynamoDB: items in the ledger table, beside the user's decisions.

    USER#<id> / INAPP#<decision id>    msg (the message as JSON), status, expires_at (TTL)

Why the ledger table and not a table of its own: a message exists because a decision was sent, so
it lives in the partition of the decision's ledger entry; erasure, which deletes the user's whole
ledger partition, takes the inbox with it, and the table's TTL (`expires_at`) removes a message
when it expires. Reading an inbox is one Query of that partition's INAPP# items (TTL deletes late,
so expired items are also filtered on read).
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from nudge.adapters.dynamo import calls
from nudge.model.inapp import InAppMessage

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient

INAPP = "INAPP#"


def _key(user_id: str, message_id: str) -> dict[str, Any]:
    return {"pk": {"S": f"USER#{user_id}"}, "sk": {"S": INAPP + message_id}}


def _item(message: InAppMessage) -> dict[str, Any]:
    return {
        **_key(message.user_id, message.message_id),
        "msg": {"S": message.model_dump_json()},
        "status": {"S": message.status},
        "expires_at": {"N": str(int(message.expires_at.timestamp()))},
    }


class DynamoInbox:
    def __init__(self, client: DynamoDBClient, table: str) -> None:
        self.client = client
        self.table = table

    def put(self, message: InAppMessage) -> bool:
        done = calls.conditional(
            self.client.put_item,
            TableName=self.table,
            Item=_item(message),
            ConditionExpression="attribute_not_exists(pk)",
        )
        return done is not None

    def get(self, user_id: str, message_id: str) -> InAppMessage | None:
        response = calls.read(
            self.client.get_item, TableName=self.table, Key=_key(user_id, message_id), ConsistentRead=True
        )
        item = response.get("Item")
        return InAppMessage.model_validate_json(item["msg"]["S"]) if item else None

    def list(self, user_id: str, now: datetime, limit: int) -> list[InAppMessage]:
        args: dict[str, Any] = {
            "TableName": self.table,
            "KeyConditionExpression": "pk = :pk AND begins_with(sk, :prefix)",
            "FilterExpression": "expires_at > :now",
            "ExpressionAttributeValues": {
                ":pk": {"S": f"USER#{user_id}"},
                ":prefix": {"S": INAPP},
                ":now": {"N": str(int(now.timestamp()))},
            },
        }
        messages: list[InAppMessage] = []
        while True:
            response = calls.read(self.client.query, **args)
            messages += [InAppMessage.model_validate_json(i["msg"]["S"]) for i in response.get("Items", [])]
            last = response.get("LastEvaluatedKey")
            if not last:
                break
            args["ExclusiveStartKey"] = last
        live = [m for m in messages if m.live(now)]
        return sorted(live, key=lambda m: (m.created_at, m.message_id), reverse=True)[:limit]

    def replace(self, message: InAppMessage, expected_status: str) -> bool:
        done = calls.conditional(
            self.client.put_item,
            TableName=self.table,
            Item=_item(message),
            ConditionExpression="attribute_exists(pk) AND #status = :expected",
            ExpressionAttributeNames={"#status": "status"},
            ExpressionAttributeValues={":expected": {"S": expected_status}},
        )
        return done is not None


def scan_inbox(client: DynamoDBClient, table: str) -> list[InAppMessage]:
    """Every in-app message still stored, every user's (a Scan: for reports, never a Lambda's path;
    expired ones go with DynamoDB's TTL)."""
    args: dict[str, Any] = {
        "TableName": table,
        "FilterExpression": "begins_with(sk, :prefix)",
        "ExpressionAttributeValues": {":prefix": {"S": INAPP}},
    }
    messages: list[InAppMessage] = []
    while True:
        response = calls.read(client.scan, **args)
        messages += [InAppMessage.model_validate_json(i["msg"]["S"]) for i in response.get("Items", [])]
        last = response.get("LastEvaluatedKey")
        if not last:
            return messages
        args["ExclusiveStartKey"] = last
