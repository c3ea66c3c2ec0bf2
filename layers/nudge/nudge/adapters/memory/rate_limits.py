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
        used = self.counts.get(bucket, 0)
        # A batch over the whole budget passes into an empty window only, as in DynamoDB.
        if used + amount > limit and (amount <= limit or used > 0):
            return False
        self.counts[bucket] = self.counts.get(bucket, 0) + amount
        return True
