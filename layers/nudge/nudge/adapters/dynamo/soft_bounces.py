"""Each address's recent transient bounces, in the ledger table:

    ADDRESS#<address key> / SOFT_BOUNCES    v, b (JSON: [[message id, time], ...]), expires_at (TTL)

The address is its suppression key (a keyed hash, never the address). The item holds at most
SOFT_BOUNCE_LIMIT bounces of the window, and expires a window after the last one: an address whose
mail stopped bouncing is forgotten. Versioned: two feedback functions counting at once for one
address cannot lose a bounce (the loser re-reads).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from nudge.adapters.dynamo import calls
from nudge.model.errors import StateConflict
from nudge.model.versioned import Versioned

SK = "SOFT_BOUNCES"


class DynamoSoftBounces:
    def __init__(self, client: Any, table: str) -> None:
        self.client = client
        self.table = table

    def _key(self, key: str) -> dict[str, Any]:
        return {"pk": {"S": f"ADDRESS#{key}"}, "sk": {"S": SK}}

    def load(self, key: str) -> Versioned[list[tuple[str, datetime]]]:
        response = calls.read(
            self.client.get_item, TableName=self.table, Key=self._key(key), ConsistentRead=True
        )
        item = response.get("Item")
        if not item:
            return Versioned([], 0)
        bounces = [(str(m), datetime.fromisoformat(t)) for m, t in json.loads(item["b"]["S"])]
        return Versioned(bounces, int(item["v"]["N"]))

    def save(
        self, key: str, bounces: Sequence[tuple[str, datetime]], version: int, expires_at: datetime
    ) -> None:
        item = {
            **self._key(key),
            "v": {"N": str(version + 1)},
            "b": {"S": json.dumps([[m, t.isoformat()] for m, t in bounces])},
            "expires_at": {"N": str(int(expires_at.timestamp()))},
        }
        done = calls.conditional(self.client.put_item, **calls.versioned_put(self.table, item, version))
        if done is None:
            raise StateConflict("soft bounces of an address changed meanwhile")
