"""A user's journey instance (rules/journeys/*.yaml): where they are, since when, how it ended.
Kept in the user's segment record (nudge.model.segments.SegmentRecord.journeys), so advancing a
step is the record's one versioned write and a timer is its next_check_at on the due index."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict

# Why an instance ended.
Ended = Literal["converted", "exited", "completed", "step_removed", "journey_removed", "blocked", "holdout"]
HOLDOUT = "holdout"


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

    @property
    def live(self) -> bool:
        return self.exited_at is None


def instance_key(journey: str, key: str = "") -> str:
    return f"{journey}#{key}" if key else journey
