"""Per-key rate limits for client keys, across every Lambda container: a fixed-window counter per key
(nudge.ports.RateCounter; DynamoDB in AWS, one conditional ADD per request).

A window is WINDOW_SECONDS long and holds `limit * WINDOW_SECONDS` messages (a batch counts each of
its messages, as Segment's limits do), so a short burst within the window is absorbed. The count
lives past the window's end only for its TTL. When the counter cannot be reached the request is let
through (fail open): an outage of the limiter must not drop a product's good traffic, and API
Gateway's own throttling still bounds the whole API.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from datetime import datetime

from nudge.domain.keys import KeyRecord
from nudge.model.errors import StoreUnavailable
from nudge.ports import RateCounter

WINDOW_SECONDS = 10
# Counter items outlive their window by this much, then DynamoDB's TTL removes them.
KEEP_SECONDS = 3600


@dataclass(frozen=True)
class RateDecision:
    allowed: bool
    retry_after: int = 0  # whole seconds until the window ends (when refused)
    degraded: bool = False  # the counter was unreachable: let through unchecked


def check_rate(counter: RateCounter, record: KeyRecord, amount: int, now: datetime) -> RateDecision:
    epoch = now.timestamp()
    start = int(epoch // WINDOW_SECONDS) * WINDOW_SECONDS
    end = start + WINDOW_SECONDS
    budget = record.limit * WINDOW_SECONDS
    try:
        taken = counter.take(f"{record.key_id}#{start}", max(amount, 1), budget, end + KEEP_SECONDS)
    except StoreUnavailable:
        return RateDecision(allowed=True, degraded=True)
    if taken:
        return RateDecision(allowed=True)
    return RateDecision(allowed=False, retry_after=max(1, math.ceil(end - epoch)))


# A container takes its share of a window's budget this many at a time: 1/LEASE_SHARE of it.
LEASE_SHARE = 100
# Counted buckets a container remembers (one per key and window); past it, the older half (by the
# end of their window) is forgotten.
LEASES_KEPT = 1024


class LeasedRateCounter:
    """A RateCounter that takes from the shared one a lease at a time (1/LEASE_SHARE of the
    window's budget, at least the amount asked) and spends it locally: one shared write per lease
    instead of one per request (the buffered front door's requests carry one event each).

    Never more than the budget is let through: every message spent was taken from the shared
    count first. A lease left unspent when its window ends counts as used: with C containers the
    key may be refused up to (C - 1) leases early, 1% of the budget each. When a lease no longer
    fits, the exact amount is asked for, so the window's last messages still pass.

    Buckets are remembered up to LEASES_KEPT (a bucket per key and window: old windows pile up);
    then the older half, by when their window ends, is forgotten: past windows first, so a key in
    the middle of its lease keeps it. Forgetting a lease never lets more through (it was taken from
    the shared count already); it only refuses the key early by what was left of it, which is why
    a live window's lease is kept (clearing all at once lost every live lease, up to a lease per
    key each time)."""

    def __init__(self, shared: RateCounter, share: int = LEASE_SHARE) -> None:
        self.shared = shared
        self._share = share
        # bucket -> (messages left of its lease, when the bucket expires: its window's end + keep)
        self._left: dict[str, tuple[int, int]] = {}
        # The local stack serves requests on threads of one process: a lease is spent once.
        self._lock = threading.Lock()

    def take(self, bucket: str, amount: int, limit: int, expires_at: int) -> bool:
        with self._lock:
            return self._take(bucket, amount, limit, expires_at)

    def _take(self, bucket: str, amount: int, limit: int, expires_at: int) -> bool:
        left = self._left.get(bucket, (0, expires_at))[0]
        if left >= amount:
            self._left[bucket] = (left - amount, expires_at)
            return True
        lease = max(amount, limit // self._share)
        if lease > amount and self.shared.take(bucket, lease, limit, expires_at):
            self._remember(bucket, left + lease - amount, expires_at)
            return True
        return self.shared.take(bucket, amount, limit, expires_at)

    def _remember(self, bucket: str, left: int, expires_at: int) -> None:
        if bucket not in self._left and len(self._left) >= LEASES_KEPT:
            # Forget the older half: windows that ended (their leftovers are never needed again)
            # before any live one.
            by_end = sorted(self._left, key=lambda b: self._left[b][1])
            for old in by_end[: LEASES_KEPT // 2]:
                del self._left[old]
        self._left[bucket] = (left, expires_at)
