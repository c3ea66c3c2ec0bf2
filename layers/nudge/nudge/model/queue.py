"""What travels between the evaluator, dispatch and the action functions (SQS message bodies)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from nudge.model.decisions import Decision


class DecisionBatch(BaseModel):
    """What the evaluator publishes per evaluation: the decisions taken together (the guardrails
    send at most one message of them), and the fate of deferrals that came due."""

    user: str
    account: str | None = None
    decided_at: datetime
    decisions: list[Decision] = Field(default_factory=list)
    # Deferred decisions (by id) whose rule still holds: judged again, as new.
    returning: list[str] = Field(default_factory=list)
    # Deferred decisions whose rule no longer holds: cancelled, never sent.
    lapsed: list[str] = Field(default_factory=list)


class Delivery(BaseModel):
    """What a channel queue carries: a ledger entry to send (the action function reads the rest)."""

    subject: str
    decision_id: str
    channel: str
    rule: str
    user: str
    account: str | None = None
