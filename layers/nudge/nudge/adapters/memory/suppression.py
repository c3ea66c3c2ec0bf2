"""In-memory SuppressionStore: the DynamoDB one's semantics (first record of a key and scope stays)."""

from __future__ import annotations

from collections.abc import Sequence

from nudge.model.errors import StoreUnavailable
from nudge.model.suppression import Suppression


class MemorySuppressionStore:
    def __init__(self) -> None:
        # (key, scope, reason): SES's reasons are kept beside an unsubscribe of the same scope.
        self.records: dict[tuple[str, str, str], Suppression] = {}
        self.down = False

    def add(self, suppression: Suppression) -> None:
        if self.down:
            raise StoreUnavailable("suppression list down")
        self.records.setdefault((suppression.key, suppression.scope, suppression.reason), suppression)

    def find(self, keys: Sequence[str]) -> list[Suppression]:
        if self.down:
            raise StoreUnavailable("suppression list down")
        wanted = set(keys)
        return [record for (key, _, _), record in sorted(self.records.items()) if key in wanted]
