"""The suppression list in its own table (SuppressionTable):

    pk = <address key>   sk = <scope> (an unsubscribe) or <scope>#<reason> (SES feedback)   reason, at

One item per address, scope and kind of reason, written with if_not_exists so the first time stays
(idempotent: a second click changes nothing). SES's reasons get an item of their own: a bounce after
an unsubscribe of the same scope must still be recorded as a bounce, which blocks more. Read with
one Query per key. Kept in a table of its
own so that no function holds a delete permission on it: erasure cannot remove it, by IAM.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, cast

from nudge.adapters.dynamo import calls
from nudge.model.suppression import Reason, Suppression


class DynamoSuppressionStore:
    def __init__(self, client: Any, table: str) -> None:
        self.client = client
        self.table = table

    def add(self, suppression: Suppression) -> None:
        calls.write(
            self.client.update_item,
            TableName=self.table,
            Key={"pk": {"S": suppression.key}, "sk": {"S": sort_key(suppression.scope, suppression.reason)}},
            UpdateExpression="SET reason = if_not_exists(reason, :reason), #at = if_not_exists(#at, :at)",
            ExpressionAttributeNames={"#at": "at"},
            ExpressionAttributeValues={
                ":reason": {"S": suppression.reason},
                ":at": {"S": suppression.at.isoformat()},
            },
        )

    def find(self, keys: Sequence[str]) -> list[Suppression]:
        found: list[Suppression] = []
        for key in dict.fromkeys(keys):
            args: dict[str, Any] = {
                "TableName": self.table,
                "KeyConditionExpression": "pk = :pk",
                "ExpressionAttributeValues": {":pk": {"S": key}},
                # An unsubscribe followed at once by a send must see it.
                "ConsistentRead": True,
            }
            while True:
                response = calls.read(self.client.query, **args)
                found += [record_of(item) for item in response.get("Items", [])]
                last = response.get("LastEvaluatedKey")
                if not last:
                    break
                args["ExclusiveStartKey"] = last
        return found


def sort_key(scope: str, reason: Reason) -> str:
    return scope if reason == "unsubscribe" else f"{scope}#{reason}"


def record_of(item: dict[str, Any]) -> Suppression:
    return Suppression(
        key=item["pk"]["S"],
        scope=item["sk"]["S"].split("#", 1)[0],
        reason=cast(Reason, item["reason"]["S"]),
        at=datetime.fromisoformat(item["at"]["S"]),
    )
