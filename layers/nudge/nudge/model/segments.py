"""What the evaluator keeps per user between evaluations (SegmentRecord), deferred sends, and the
due index's buckets (UTC days) the sweep reads."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from pydantic import BaseModel, Field

from nudge.model.decisions import Decision, SegmentState, Value
from nudge.model.journeys import JourneyInstance

BUCKET = timedelta(days=1)


class DeferredSend(BaseModel):
    decision_id: str
    until: datetime
    # A journey's decision, kept whole: no trigger decides it again at `until`; it goes back to
    # dispatch as it was while its instance is still live (converted or exited: cancelled).
    decision: Decision | None = None


class SegmentRecord(BaseModel):
    """A user's evaluator-side state: lifecycle segment and history, decisions already published,
    the usage-state version last evaluated, and the next time-based re-check."""

    segments: SegmentState = Field(default_factory=SegmentState)
    # "rule:action" -> the decision_id last published for it. A decision id is fixed for a rule's
    # cooldown window, so a rule that keeps holding publishes once per window, not once per event.
    # Bounded by the number of triggers.
    decided: dict[str, str] = Field(default_factory=dict)
    # Version of USER#<id>/STATE this record was last written from: a stream record older than
    # that (the sweep already evaluated a newer state) must not move the user backwards.
    state_version: int = 0
    # "rule:action" -> a decision deferred by the guardrails (quiet hours): at `until` the evaluator
    # re-checks the rule and sends the decision back to dispatch if it still holds, else cancels it.
    deferred: dict[str, DeferredSend] = Field(default_factory=dict)
    # The user's score band (since when) and account as last evaluated: what the changes
    # function compares across versions to announce band changes (nudge.domain.changes).
    band: str | None = None
    account_id: str | None = None
    band_since: datetime | None = None
    # instance_key (journey#key) -> the user's journey instances, live and ended (for re-entry);
    # at most limits.JOURNEY_INSTANCES_KEPT. Their timers ride on next_check_at.
    journeys: dict[str, JourneyInstance] = Field(default_factory=dict)
    # message id -> (trait, value): the journeys' `update` steps saved with the instance that moved
    # past them, set (ingest) after that save won, then cleared. Kept here so a failed set (store
    # unavailable, contention) is finished by the next evaluation instead of lost. At most one per
    # update step an evaluation walks through.
    pending_traits: dict[str, tuple[str, Value]] = Field(default_factory=dict)
    # Stored as due_at, not in the blob: it is the GSI's sort key. Whole seconds (see due_time).
    next_check_at: datetime | None = Field(default=None, exclude=True)


def due_time(at: datetime | None) -> datetime | None:
    """`at` rounded UP to a whole second (UTC): what due_at can hold, never earlier than asked."""
    if at is None:
        return None
    return datetime.fromtimestamp(math.ceil(at.timestamp()), tz=UTC)


def kept_check(scheduled: datetime | None, wanted: datetime | None, now: datetime) -> datetime | None:
    """The re-check to store: `wanted`, unless the one already `scheduled` is still ahead of `now`
    and earlier (then it is kept: the sweep looks early once and stores the later one then).

    Why: a rule that waits N days after the last session moves `wanted` with every session, and
    each move rewrites the user's `due` index entry (2 WRU); keeping the earlier check moves it
    once per N days instead of once per session. Never later than `wanted`, so no time-based
    decision is made later; an evaluation at the kept time finds nothing due and sets `wanted`.
    None (nothing left to check) is taken at once: removing the entry is cheaper than a look."""
    if scheduled is not None and wanted is not None and now < scheduled < wanted:
        return scheduled
    return wanted


def bucket_start(at: datetime) -> datetime:
    """The start of the (UTC day) bucket that holds checks due at `at`."""
    return at.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def bucket(at: datetime, shard: int) -> str:
    return f"{bucket_start(at):%Y-%m-%d}#{shard:02d}"


@dataclass(frozen=True)
class DuePage:
    """Users whose check is due, from one bucket (one query page of one shard)."""

    bucket: datetime
    user_ids: list[str]
