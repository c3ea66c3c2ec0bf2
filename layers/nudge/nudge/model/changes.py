"""What Nudge tells other systems on its EventBridge bus: a user entered or left a segment, their
score band moved, they converted in a journey. Shared by the producer (the changes function, from
the segment record's versions: nudge.domain.changes) and the publisher.

Each change has an id derived from what it is (the user, the version of the record that made it,
its kind): the same stream record handled again makes the same id, so a consumer can drop a
repeat (EventBridge itself has no idempotency key).
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

SOURCE = "nudge"
DetailType = Literal["Segment Entered", "Segment Exited", "Score Band Changed", "Journey Converted"]
DETAIL_TYPES: tuple[DetailType, ...] = (
    "Segment Entered",
    "Segment Exited",
    "Score Band Changed",
    "Journey Converted",
)


class Change(BaseModel):
    """One event for the bus: its detail-type and its detail (the documented schema of each)."""

    model_config = ConfigDict(frozen=True)

    detail_type: DetailType
    at: datetime
    detail: dict[str, Any]

    @property
    def change_id(self) -> str:
        return str(self.detail["change_id"])


def change_id(user_id: str, origin: str, detail_type: str) -> str:
    """32 hex characters from the user, what made the change (a record version, a journey
    instance) and its kind: the same for the same change however often it is handled."""
    return hashlib.sha256(f"{user_id}|{origin}|{detail_type}".encode()).hexdigest()[:32]


def journey_converted(
    user_id: str,
    account_id: str | None,
    journey: str,
    instance: str,
    goal: str,
    entered_at: datetime,
    converted_at: datetime,
    variant: str = "",
) -> Change:
    """A journey's conversion (its goal reached within the window). `instance` names the one
    instance (journey, key and run); `variant` the variant or split path it was on ("holdout" for a
    held-out entrant, followed through the goal window and sent nothing; "" for none)."""
    return Change(
        detail_type="Journey Converted",
        at=converted_at,
        detail={
            "change_id": change_id(user_id, f"journey:{instance}", "Journey Converted"),
            "user_id": user_id,
            "account_id": account_id,
            "journey": journey,
            "goal": goal,
            "variant": variant,
            "entered_at": entered_at.isoformat(),
            "at": converted_at.isoformat(),
        },
    )
