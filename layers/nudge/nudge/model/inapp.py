"""What the in-app channel holds: a message in a user's inbox (a note, or a one-question survey),
what the user did with it, and the onboarding checklist the product's front end shows."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

# What a user may do with a message, each folding back as an event `in_app_<action>`.
InAppAction = Literal["seen", "clicked", "dismissed"]
# Where a message stands; `answered` for a survey whose answer came back.
InAppStatus = Literal["new", "seen", "clicked", "dismissed", "answered"]
ACTION_EVENTS: dict[str, str] = {
    "seen": "in_app_seen",
    "clicked": "in_app_clicked",
    "dismissed": "in_app_dismissed",
}
SURVEY_EVENT = "survey_answered"
# A later status never goes back to an earlier one (seen after dismissed leaves it dismissed).
STATUS_RANK: dict[str, int] = {"new": 0, "seen": 1, "clicked": 2, "answered": 3, "dismissed": 4}


class Survey(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    question: str
    choices: list[str] = Field(default_factory=list)  # empty: free text only
    labels: dict[str, str] = Field(default_factory=dict)  # what the user reads for a choice (default: it)
    free_text: bool = False  # an "other" answer in the user's words (besides the choices, if any)
    property: str  # the property of `survey_answered` the answer lands in, e.g. blocker


class InAppMessage(BaseModel):
    """One message in a user's inbox; its id is the decision's (at most one per decision)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    message_id: str
    user_id: str
    rule: str
    title: str
    body: str
    link: str | None = None
    survey: Survey | None = None
    created_at: datetime
    expires_at: datetime
    status: InAppStatus = "new"
    answer: str | None = None
    updated_at: datetime | None = None

    def live(self, now: datetime) -> bool:
        return now < self.expires_at


class ChecklistItem(BaseModel):
    milestone: str
    description: str
    done: bool
    done_at: datetime | None = None


class Checklist(BaseModel):
    items: list[ChecklistItem]
    next: str | None = Field(description="The first milestone not reached yet (None: all done).")
    done: int
    total: int
    progress: float = Field(description="done / total, 0 to 1.")
