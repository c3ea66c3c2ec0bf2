"""The client keys' rate-limit counters: one item per key per window in the rate-limit table, counted
with one conditional ADD (no read first), so every Lambda container shares the same count."""

from __future__ import annotations

from typing import Any

from nudge.adapters.dynamo.calls import conditional


class DynamoRateCounter:
    def __init__(self, client: Any, table: str) -> None:
        self._client = client
        self._table = table

    def take(self, bucket: str, amount: int, limit: int, expires_at: int) -> bool:
        if amount > limit:
            return False
        result = conditional(
            self._client.update_item,
            TableName=self._table,
            Key={"pk": {"S": bucket}},
            UpdateExpression="ADD n :amount SET expires = :expires",
            # Refused when adding would pass the limit; the count then stays as it was.
            ConditionExpression="attribute_not_exists(n) OR n <= :room",
            ExpressionAttributeValues={
                ":amount": {"N": str(amount)},
                ":room": {"N": str(limit - amount)},
                ":expires": {"N": str(expires_at)},
            },
        )
        return result is not None
