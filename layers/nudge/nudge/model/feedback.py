"""What SES says happened to an email after it was sent (configuration-set event publishing), as
the feedback function reads it: one value per event, whatever carried it (EventBridge or SNS)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

# SES's eventType, named as the ledger and the metrics name them.
FeedbackKind = Literal[
    "sent",
    "delivered",
    "bounced",
    "soft_bounced",
    "complained",
    "rejected",
    "delayed",
    "rendering_failed",
    "opened",
    "clicked",
    "subscription",
]
FEEDBACK_KINDS: tuple[FeedbackKind, ...] = (
    "sent",
    "delivered",
    "bounced",
    "soft_bounced",
    "complained",
    "rejected",
    "delayed",
    "rendering_failed",
    "opened",
    "clicked",
    "subscription",
)
# SES eventType -> kind (a Bounce is `bounced` when Permanent, else `soft_bounced`).
SES_EVENT_TYPES: dict[str, FeedbackKind] = {
    "Send": "sent",
    "Delivery": "delivered",
    "Bounce": "bounced",
    "Complaint": "complained",
    "Reject": "rejected",
    "DeliveryDelay": "delayed",
    "Rendering Failure": "rendering_failed",
    "RenderingFailure": "rendering_failed",
    "Open": "opened",
    "Click": "clicked",
    "Subscription": "subscription",
}


@dataclass(frozen=True)
class Feedback:
    kind: FeedbackKind
    message_id: str  # SES's message id (the ledger entry's provider_id)
    at: datetime  # when SES says it happened (the event's own timestamp)
    # The message's tags as sent (name -> first value): rule, decision, user, category.
    tags: dict[str, str] = field(default_factory=dict)
    # The addresses it concerns: bounced or complained recipients, else the mail's destination.
    recipients: tuple[str, ...] = ()
    detail: str = ""  # bounce type/subtype, reject reason, delay type: for the ledger, never an address
