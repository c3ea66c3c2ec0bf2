"""What an evaluation and a sweep came to: the values the evaluate service returns and its
metrics port records."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from nudge.model.decisions import Decision


@dataclass(frozen=True)
class UserOutcome:
    user_id: str
    # False: skipped, a newer usage state had already been evaluated, or not a person messages
    # may go to (an anonymous-only profile, an id merged into a user): no segments, no decisions.
    evaluated: bool
    written: bool
    segment: str | None
    # Set only when this call's write recorded the transition (never twice for one transition).
    entered: str | None
    exited: str | None
    published: tuple[Decision, ...]
    next_check_at: datetime | None
    conflicts: int = 0
    # Facts answered as missing because their value was out of range (evaluate's `ignored`).
    ignored_facts: tuple[str, ...] = ()


@dataclass
class SweepResult:
    started_from: datetime
    watermark: datetime
    due: int = 0
    evaluated: int = 0
    skipped: int = 0
    failed: int = 0
    published: int = 0
    # False when the run stopped for time or held the watermark back for a user it could not defer.
    complete: bool = True
    outcomes: list[UserOutcome] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {
            "started_from": self.started_from.isoformat(),
            "watermark": self.watermark.isoformat(),
            "due": self.due,
            "evaluated": self.evaluated,
            "skipped": self.skipped,
            "failed": self.failed,
            "published": self.published,
            "complete": self.complete,
        }
