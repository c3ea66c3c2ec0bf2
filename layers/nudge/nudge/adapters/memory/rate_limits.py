"""In-memory RateCounter: the same arithmetic as the DynamoDB one, for unit tests."""

from __future__ import annotations

from nudge.model.errors import StoreUnavailable


class FakeRateCounter:
    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.down = False

    def take(self, bucket: str, amount: int, limit: int, expires_at: int) -> bool:
        if self.down:
            raise StoreUnavailable("rate counter down")
        if self.counts.get(bucket, 0) + amount > limit:
            return False
        self.counts[bucket] = self.counts.get(bucket, 0) + amount
        return True
