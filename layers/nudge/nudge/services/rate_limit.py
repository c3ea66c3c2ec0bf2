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
