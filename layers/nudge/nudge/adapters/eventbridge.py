"""EventBridge: changes (nudge.model.changes) onto the bus Nudge owns, ten per PutEvents.

PutEvents answers per entry: entries that failed (throttled, an internal error) are sent again
with the one backoff, the others never; still failing after that raises ChangesNotPublished, and
the stream record is retried (its changes keep their ids, so a consumer can drop the repeats).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from nudge.backoff import THROTTLING, Backoff
from nudge.model.changes import SOURCE, Change
from nudge.ports import ChangesNotPublished

PUT_EVENTS_LIMIT = 10


class EventBridgeChanges:
    def __init__(self, client: Any, bus_name: str, backoff: Backoff = THROTTLING) -> None:
        self.client = client
        self.bus_name = bus_name
        self.backoff = backoff

    def publish(self, changes: Sequence[Change]) -> None:
        for start in range(0, len(changes), PUT_EVENTS_LIMIT):
            self._put(list(changes[start : start + PUT_EVENTS_LIMIT]))

    def _put(self, batch: list[Change]) -> None:
        pending = batch
        for _ in self.backoff.tries():
            entries = [
                {
                    "Source": SOURCE,
                    "DetailType": c.detail_type,
                    "Detail": json.dumps(c.detail, separators=(",", ":"), ensure_ascii=False),
                    "EventBusName": self.bus_name,
                    "Time": c.at,
                }
                for c in pending
            ]
            try:
                response = self.client.put_events(Entries=entries)
            except (ClientError, BotoCoreError) as exc:
                raise ChangesNotPublished(f"PutEvents failed: {type(exc).__name__}") from exc
            results = response.get("Entries", [])
            pending = [c for c, r in zip(pending, results, strict=False) if r.get("ErrorCode")]
            if not pending and len(results) == len(entries):
                return
        raise ChangesNotPublished(
            f"{len(pending)} changes not accepted after {self.backoff.attempts} attempts"
        )
