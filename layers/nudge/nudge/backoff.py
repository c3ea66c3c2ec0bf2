"""The one backoff of Nudge: full-jitter exponential delays between the attempts of a retry loop.

Every loop that tries again uses it: a versioned write that lost to another writer (ingest,
dispatch, the re-check scheduler), a batch call with unprocessed items (DynamoDB), a throttled
call (SQS, SES, SNS; adapters.retry maps their errors). Full jitter, as AWS's architecture blog
recommends: writers that collided spread out instead of colliding again in step.

It sits at the bottom with clock and settings because the services (contention) and the adapters
(throttling) both retry, and services may not import adapters.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Backoff:
    """How many attempts, and the delays between them; tests give it a sleep that records."""

    attempts: int = 4
    base_delay: float = 0.1
    max_delay: float = 2.0
    sleep: Callable[[float], None] = time.sleep
    rng: Callable[[], float] = random.random

    def delay(self, attempt: int) -> float:
        """Full jitter after attempt `attempt` (from 0): uniform in [0, min(max, base * 2**attempt))."""
        return self.rng() * min(self.max_delay, self.base_delay * (1 << attempt))

    def tries(self) -> Iterator[int]:
        """0, 1, ... attempts - 1, sleeping a delay before every try but the first.

        The loop body returns (or breaks) on success; when the iterator runs out, every attempt
        failed and the caller raises its own error, which names what stayed contended.
        """
        if self.attempts < 1:
            raise ValueError("attempts must be at least 1")
        for attempt in range(self.attempts):
            if attempt:
                self.sleep(self.delay(attempt - 1))
            yield attempt

    def with_attempts(self, attempts: int) -> Backoff:
        return replace(self, attempts=attempts)


# Versioned writes that lost a race: the other writer is done within milliseconds.
CONTENTION = Backoff(attempts=8, base_delay=0.01, max_delay=0.5)
# Throttled AWS calls and unprocessed batch items: capacity comes back within a second or so.
THROTTLING = Backoff(attempts=4, base_delay=0.05, max_delay=1.0)
