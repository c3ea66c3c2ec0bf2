"""What the report shows, as plain values: gathered by nudge.domain.report, drawn by
nudge.tools.report.html. Nothing here reads a table or writes HTML."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from nudge.domain.flow import Flow
from nudge.domain.journey_report import JourneyResult
from nudge.domain.lift import LiftRow


@dataclass(frozen=True)
class FunnelStep:
    name: str  # an event, e.g. "setup_completed"
    users: int  # users who did it (and every step before it)
    median_hours_from_previous: float | None  # None for the first step or when nobody got here


@dataclass(frozen=True)
class RuleMessages:
    rule: str  # a one-shot rule's id, or journey:step for a journey's step
    kind: str  # onboarding | rescue | upgrade | escalation
    channel: str  # email | push | sms | in_app | webhook | cs (the channel chosen, of a list)
    decisions: int
    sent: int
    deferred: int  # still waiting for quiet hours to end
    held_out: int
    cancelled: int  # deferred, then the rule stopped holding
    failed: int  # refused by the provider, or outcome unknown
    suppressed: dict[str, int] = field(default_factory=dict)  # reason -> decisions
    # Of the messages sent, how many the channel reported each feedback kind for (SES: delivered,
    # bounced, soft_bounced, complained, opened, clicked), each message counted once per kind.
    # In-app messages: how far users took them (seen, clicked, answered, dismissed), from the inbox.
    feedback: dict[str, int] = field(default_factory=dict)
    answers: dict[str, int] = field(default_factory=dict)  # a survey's answers given -> users

    def rate(self, kind: str) -> float | None:
        """A feedback rate as mailers quote them: delivered, bounces and complaints per message
        sent (SES's own reckoning, the one it reviews accounts on); opens and clicks per message
        delivered. An in-app message's, per message put in the inbox. None when nothing was sent (or
        delivered)."""
        per_delivered = kind in ("opened", "clicked") and self.channel != "in_app"
        whole = self.feedback.get("delivered", 0) if per_delivered else self.sent
        return self.feedback.get(kind, 0) / whole if whole else None


@dataclass(frozen=True)
class EscalationBucket:
    label: str  # e.g. "$5k-10k MRR"
    accounts: int  # accounts in this bucket
    escalated: int  # of them, escalated to CS at least once


@dataclass(frozen=True)
class QualityRow:
    segment: str
    user_weeks: int  # (user, week) pairs in this segment at a week's end, 4 weeks of future known
    retained: int  # of them, meaningful use in the week 4 weeks later


@dataclass(frozen=True)
class ReportData:
    generated_at: datetime
    source: str  # where the data came from, in words
    users: int
    accounts: int
    segments: list[str]  # lifecycle segments in file order
    weekly_sizes: list[tuple[str, dict[str, int]]]  # ISO week -> segment -> users at its end
    flows: dict[tuple[str, str], int]  # week-to-week moves (from, to) -> users, summed over weeks
    funnel: list[FunnelStep]
    messages: list[RuleMessages]
    escalations: list[EscalationBucket]
    features: list[str]
    adoption: dict[str, dict[str, float]]  # segment -> feature -> share of its users who used it
    lift: list[LiftRow]
    quality: list[QualityRow]
    retained_overall: float | None  # share of all user-weeks retained, the quality baseline
    # Each rule's users step by step (eligible -> sent / held out / not sent -> converted), drawn
    # as flows; a journey's steps are flows of the same shape.
    rule_flows: list[Flow] = field(default_factory=list)
    # Each journey anyone entered: its flow (users per step and edge) and its experiment (per
    # variant, split path and holdout), nudge.domain.journey_report.
    journey_flows: list[Flow] = field(default_factory=list)
    journeys: list[JourneyResult] = field(default_factory=list)
