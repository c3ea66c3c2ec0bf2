"""A user's delivery record: what was sent (caps), each rule's last send (cooldowns) and the
unsubscribes; shared by the guardrails, the ledger and dispatch."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field


class Sent(BaseModel):
    """One message the guardrails let through: what caps count."""

    at: datetime
    channel: str
    rule: str
    journey: str


class DeliveryRecord(BaseModel):
    """Per user: recent sends (as far back as the longest cap window), the last send of each
    rule (for cooldowns and `once`, never pruned: bounded by the number of rules) and the
    scopes the user unsubscribed from (a channel, `channel:topic`, a topic, or `all`)."""

    sends: list[Sent] = Field(default_factory=list)
    last_by_rule: dict[str, datetime] = Field(default_factory=dict)
    unsubscribed: set[str] = Field(default_factory=set)
