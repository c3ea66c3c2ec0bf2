"""A user's journey instance (rules/journeys/*.yaml): where they are, since when, how it ended.
Kept in the user's segment record (nudge.model.segments.SegmentRecord.journeys), so advancing a
step is the record's one versioned write and a timer is its next_check_at on the due index."""

from __future__ import annotations

from datetime import datetime
from typing import Literal, NamedTuple

from pydantic import BaseModel, ConfigDict

# Why an instance ended.
Ended = Literal["converted", "exited", "completed", "step_removed", "journey_removed", "blocked", "holdout"]
HOLDOUT = "holdout"


class Decided(NamedTuple):
    """A decision an instance's advance made: at which run and step visit (seq), under which id."""

    run: int
    seq: int
    decision_id: str


class JourneyInstance(BaseModel):
    model_config = ConfigDict(frozen=True)

    journey: str
    key: str = ""  # the entry key's value (one instance per key), "" without one
    run: int = 0  # how many instances of this journey and key came before: part of decision ids
    step: str | None = None  # the current step; None once ended
    step_since: datetime  # when the current step began: what waits and timeouts count from
    seq: int = 0  # steps advanced so far: a step visited twice makes a new decision id
    entered_at: datetime
    converted_at: datetime | None = None
    exited_at: datetime | None = None
    reason: Ended | None = None
    variant: str = ""  # the variant or split path this user was assigned ("holdout" when held out)
    wake_at: datetime | None = None  # when time alone moves it on (a wait, a timeout, the goal window)
    # Ended, of a journey entered on a condition: the condition has since been seen false, so it
    # holding again is a new entry (every_time), not the same one still holding.
    rearmed: bool = False
    # The steps it has been at, in order (the latest JOURNEY_PATH_KEPT): the report counts users per
    # step and per edge from it. Empty on instances written before it was kept.
    path: tuple[str, ...] = ()
    # The decisions its advances made, oldest first, the newest limits.JOURNEY_DECISIONS_KEPT, carried
    # from run to run of one key: what dispatch checks a journey's decision against, so only the
    # saved path's decisions are sent (two evaluations from one version may take different paths:
    # one saw the event, the other the timeout). None: saved before they were kept (not checked).
    decided: tuple[Decided, ...] | None = None
    # What converted it, once it did: "event:<name>" or "condition" (for the Journey Converted change).
    goal: str = ""

    @property
    def live(self) -> bool:
        return self.exited_at is None


def instance_key(journey: str, key: str = "") -> str:
    return f"{journey}#{key}" if key else journey
