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
    # Ids merged into this user whose records were adopted (Ledger.adopt): each once.
    adopted: list[str] = Field(default_factory=list)

    def absorb(self, other: DeliveryRecord, other_id: str) -> DeliveryRecord:
        """This record with the record of an id merged into the user (identity merge): its sends
        count against the caps, its last send of each rule against cooldowns and `once`, its
        unsubscribes hold. A second time changes nothing."""
        if other_id in self.adopted:
            return self
        sends = {(s.at, s.channel, s.rule, s.journey): s for s in [*self.sends, *other.sends]}
        last_by_rule = dict(self.last_by_rule)
        for rule, at in other.last_by_rule.items():
            last_by_rule[rule] = max(at, last_by_rule.get(rule, at))
        return DeliveryRecord(
            sends=[sends[k] for k in sorted(sends)],
            last_by_rule=last_by_rule,
            unsubscribed=self.unsubscribed | other.unsubscribed,
            adopted=[*self.adopted, other_id],
        )
