"""Fake queues: the decision queue, the channel queues, dispatch's re-checks and the ingest queue,
in memory."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

from nudge.model.decisions import Decision
from nudge.model.errors import StoreUnavailable
from nudge.model.journeys import JourneyInstance
from nudge.model.queue import DecisionBatch, Delivery
from nudge.ports import PublishFailed, RouteFailed


class MemoryDecisionPublisher:
    """The fake: what was published, in order; `fail` makes the next publish raise."""

    def __init__(self) -> None:
        self.batches: list[DecisionBatch] = []
        self.fail = False

    @property
    def published(self) -> list[Decision]:
        return [d for batch in self.batches for d in batch.decisions]

    def publish(self, batch: DecisionBatch) -> None:
        if self.fail:
            raise PublishFailed("decision queue unavailable (fake)")
        self.batches.append(batch)


class MemoryRouter:
    """The fake channel queues: what was routed, in order; `fail` makes the next route raise."""

    def __init__(self) -> None:
        self.routed: list[Delivery] = []
        self.fail = False

    def route(self, deliveries: Sequence[Delivery]) -> None:
        if self.fail:
            raise RouteFailed("channel queue unavailable (fake)")
        self.routed.extend(deliveries)


class MemoryRechecks:
    """The fake: what was deferred and ended; `saved` (user -> instances) is what a test says the
    user's segment record holds (journeys flows use SegmentRechecks over a MemorySegmentStore)."""

    def __init__(self) -> None:
        self.deferred: dict[tuple[str, str], datetime] = {}
        self.ended: set[tuple[str, str]] = set()
        self.saved: dict[str, dict[str, JourneyInstance]] = {}

    def defer(self, user_id: str, decision: Decision, until: datetime, now: datetime) -> None:
        self.deferred[(user_id, decision.decision_id)] = until

    def end_journey(self, user_id: str, decision: Decision, now: datetime) -> None:
        self.ended.add((user_id, decision.instance))

    def saved_journeys(self, user_id: str) -> Mapping[str, JourneyInstance]:
        return self.saved.get(user_id, {})


class MemoryIngestBuffer:
    """The fake ingest queue: bodies put, in order; `fail` makes the next put raise."""

    def __init__(self) -> None:
        self.bodies: list[str] = []
        self.fail = False

    def put(self, bodies: Sequence[str]) -> None:
        if self.fail:
            self.fail = False
            raise StoreUnavailable("ingest queue unavailable (fake)")
        self.bodies.extend(bodies)
