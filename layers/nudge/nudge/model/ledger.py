"""What the ledger holds: every decision and what became of it, each user's delivery record, and
each account's open escalation. The source for caps, audit and lift."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from pydantic import BaseModel

from nudge.model.decisions import Decision
from nudge.model.delivery import DeliveryRecord
from nudge.model.versioned import Versioned

# The guardrails' verdict, and `cancelled`: a deferred decision whose rule no longer held.
Outcome = Literal["send", "suppressed", "deferred", "held_out", "cancelled"]
# Delivery progress of a `send`: queued for its channel -> sending (claimed by the action
# function) -> sent | failed; `unknown` when a send may or may not have happened (never retried).
Status = Literal["", "queued", "sending", "sent", "failed", "unknown"]


def subject_of(decision: Decision) -> str:
    """The ledger partition a decision belongs to: an escalation is the account's, once for all
    its users; a message is the user's."""
    if decision.action == "escalate" and decision.account:
        return f"ACCOUNT#{decision.account}"
    return f"USER#{decision.user}"


class LedgerEntry(BaseModel):
    decision: Decision
    outcome: Outcome
    reason: str = ""
    status: Status = ""
    deliver_at: datetime | None = None  # a deferral's end
    recorded_at: datetime
    updated_at: datetime
    provider_id: str = ""  # SES message id, SNS message id, SQS message id
    # What the channel reported after the send (SES feedback: delivered, bounced, opened, ...),
    # each kind with the first time it was reported.
    feedback: dict[str, datetime] = {}
    # Of a rule's channels in order of preference, each one looked at and why, ending with the one
    # chosen ("push: no_address; email: chosen"); "" when the rule names one channel.
    channel_why: str = ""

    @property
    def subject(self) -> str:
        return subject_of(self.decision)

    @property
    def decision_id(self) -> str:
        return self.decision.decision_id


class Escalation(BaseModel):
    """An account handed to customer success; it holds marketing back until handled or stale."""

    decision_id: str
    rule: str
    user: str
    opened_at: datetime
    handled_at: datetime | None = None
    handled_by: str = ""

    def is_open(self, now: datetime, open_for: timedelta) -> bool:
        return self.handled_at is None and now - self.opened_at < open_for


@dataclass(frozen=True)
class UserLedger:
    """What dispatch reads before judging one user's decisions."""

    record: Versioned[DeliveryRecord]
    entries: dict[str, LedgerEntry]  # the asked-for decision ids that are already in the ledger
    escalation: Versioned[Escalation] | None


@dataclass(frozen=True)
class Commit:
    """One atomic write: new ledger entries (or ones replacing a deferral), the user's delivery
    record if it changed, and an escalation opened."""

    user_id: str
    record: DeliveryRecord | None  # None: unchanged, not written
    record_version: int
    entries: tuple[LedgerEntry, ...]
    replacing: frozenset[str]  # ids whose stored entry must still be `deferred`
    escalation: tuple[str, Escalation, int] | None = None  # (account id, escalation, version read)
