"""Fake queues: the decision queue, the channel queues and dispatch's re-checks, in memory."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from nudge.model.decisions import Decision
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
    def __init__(self) -> None:
        self.deferred: dict[tuple[str, str], datetime] = {}

        self.ended: set[tuple[str, str]] = set()

    def defer(self, user_id: str, decision: Decision, until: datetime, now: datetime) -> None:
        self.deferred[(user_id, decision.decision_id)] = until

    def end_journey(self, user_id: str, decision: Decision, now: datetime) -> None:
        self.ended.add((user_id, decision.instance))
