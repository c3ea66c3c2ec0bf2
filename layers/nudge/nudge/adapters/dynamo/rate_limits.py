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
        values = {":amount": {"N": str(amount)}, ":expires": {"N": str(expires_at)}}
        if amount > limit:
            # A batch over a whole window's budget passes into an empty window only (it then
            # fills it): refused always, an SDK would retry it forever.
            condition = "attribute_not_exists(n)"
        else:
            # Refused when adding would pass the limit; the count then stays as it was.
            condition = "attribute_not_exists(n) OR n <= :room"
            values[":room"] = {"N": str(limit - amount)}
        result = conditional(
            self._client.update_item,
            TableName=self._table,
            Key={"pk": {"S": bucket}},
            UpdateExpression="ADD n :amount SET expires = :expires",
            ConditionExpression=condition,
            ExpressionAttributeValues=values,
        )
        return result is not None
