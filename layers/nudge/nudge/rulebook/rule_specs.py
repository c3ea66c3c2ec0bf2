"""The models of segments.yaml, scoring.yaml and triggers.yaml as written (pydantic, with their
JSON Schemas); nudge.rulebook.ruleset checks them against each other."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from functools import cached_property
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from nudge.conditions.tree import Node, checks_in
from nudge.model.durations import Duration
from nudge.rulebook.guardrails import CHANNELS, Channel
from nudge.rulebook.plan import NAME_PATTERN
from nudge.rulebook.yamlfile import (
    did_you_mean,
)

SEGMENTS_FILE = "segments.yaml"
SCORING_FILE = "scoring.yaml"
TRIGGERS_FILE = "triggers.yaml"

Kind = Literal["onboarding", "rescue", "upgrade", "escalation"]
Action = Literal["email", "push", "sms", "in_app", "escalate", "webhook"]


def _parse_channels(value: Any) -> Any:
    """`channel:` as the rule's list of channels, or `preferred`; a bare name is a list of one.
    One plain error for a name that is not a channel (a union's errors would say it three ways)."""
    names = [value] if isinstance(value, str) else value
    if value == "preferred" or not isinstance(names, list):
        return value
    for name in names:
        if name not in CHANNELS:
            hint = did_you_mean(str(name), CHANNELS) or f"; use {', '.join(CHANNELS)} (or preferred)"
            raise ValueError(f"unknown channel '{name}'{hint}")
    return names


ChannelChoice = Annotated[
    list[Channel] | Literal["preferred"],
    BeforeValidator(_parse_channels, json_schema_input_type=Channel | list[Channel] | Literal["preferred"]),
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


class SegmentSpec(_Strict):
    id: str = Field(pattern=NAME_PATTERN)
    description: str = ""
    when: Any = Field(
        default=None, description="Condition; leave out on the last segment to catch everyone else."
    )


class SegmentsFile(_Strict):
    segments: list[SegmentSpec] = Field(
        min_length=1, description="Ordered: a user is in the first that matches."
    )


class SignalSpec(_Strict):
    id: str = Field(pattern=NAME_PATTERN)
    description: str = ""
    when: Any
    points: float


class Bands(_Strict):
    high: float
    mid: float


class ScoreSpec(_Strict):
    signals: list[SignalSpec] = Field(min_length=1)
    bands: Bands


class ScoringFile(_Strict):
    user: ScoreSpec
    account: ScoreSpec


class GoalSpec(_Strict):
    """What a rule's message aims at, for lift: one of event, milestone or account_trait, reached
    within `within` of the decision."""

    event: str | None = Field(
        default=None, description="An event of the tracking plan, or any (any meaningful one)."
    )
    milestone: str | None = None
    account_trait: str | None = Field(default=None, description="The account's trait set anew, e.g. plan.")
    within: Duration


class TriggerSpec(_Strict):
    # Editors flag a trigger naming neither or both, as lint does (`_one_way_to_name_channels`).
    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        defer_build=True,
        json_schema_extra={"oneOf": [{"required": ["action"]}, {"required": ["channel"]}]},
    )

    id: str = Field(pattern=NAME_PATTERN)
    description: str = ""
    kind: Kind
    when: Any
    action: Action | None = Field(
        default=None,
        description="email, push, sms, or escalate (hand the account to customer success); or `channel`.",
    )
    channel: ChannelChoice | None = Field(
        default=None,
        description=(
            "Channels in order of preference, e.g. [push, email]: the first the user can receive is "
            "used (the user's preferred_channel trait first). `preferred`: any channel, the user's "
            "preference first. Instead of `action`."
        ),
    )
    template: str
    priority: int = Field(default=50, ge=1, le=100, description="Higher wins when several fire together.")
    cooldown: Duration = Field(default=timedelta(days=7), description="Not again for this long after firing.")
    once: bool = Field(default=False, description="At most once per user, ever (no re-entry).")
    escalate_when: Any = Field(default=None, description="Also escalate to customer success when this holds.")
    goal: GoalSpec | None = Field(
        default=None, description="What the message aims at (for lift against the holdout)."
    )
    next_step: str = Field(
        default="", description="For an escalation: what customer success should do next (in the case)."
    )
    destination: str | None = Field(
        default=None, description="For action webhook: a destination of destinations.yaml."
    )
    # Guardrail choices per rule (nudge.guardrails).
    journey: str | None = Field(
        default=None, pattern=NAME_PATTERN, description="Caps per journey (guardrails.yaml); default: kind."
    )
    topic: str | None = Field(
        default=None, pattern=NAME_PATTERN, description="What a user can unsubscribe from; default: kind."
    )
    transactional: bool = Field(
        default=False,
        description=(
            "Not marketing: exempt from marketing consent, unsubscribes, caps, holdouts and quiet "
            "hours; its email gets no unsubscribe footer or List-Unsubscribe, and is tagged transactional."
        ),
    )
    holdout: float = Field(
        default=0.0, ge=0, le=100, description="Percent of eligible users held out, for lift."
    )
    quiet_hours: Literal["defer", "drop"] | None = Field(
        default=None,
        description="In the user's quiet hours: defer to their end, or drop (default: guardrails.yaml).",
    )

    @model_validator(mode="after")
    def _one_way_to_name_channels(self) -> TriggerSpec:
        if self.action is None and self.channel is None:
            raise ValueError(
                "name the message's `action` (email, push, sms or escalate) or its `channel` list"
            )
        if self.action is not None and self.channel is not None:
            raise ValueError(
                "give `action` or `channel`, not both: "
                "`channel: [push, email]` alone names a message's channels"
            )
        if isinstance(self.channel, list):
            if not self.channel:
                raise ValueError("channel: name at least one channel, e.g. [push, email]")
            twice = sorted({c for c in self.channel if self.channel.count(c) > 1})
            if twice:
                raise ValueError(f"channel: {', '.join(twice)} named twice; name each channel once")
        if self.action is None:
            # The first choice stands for the message where one action is read (decision ids, lint).
            object.__setattr__(self, "action", self.channels[0])
        return self

    @property
    def channels(self) -> tuple[str, ...]:
        """A message's channels in the rule's order of preference; () for an action that reaches no
        user channel (an escalation, or any hand-off to another system)."""
        if self.channel == "preferred":
            return CHANNELS
        if isinstance(self.channel, list):
            return tuple(self.channel)
        return (str(self.action),) if self.action in CHANNELS else ()


class TriggersFile(_Strict):
    triggers: list[TriggerSpec]


@dataclass(frozen=True)
class Trigger:
    """A trigger checked against the other rule files; the engine runs it as a one-step journey
    (nudge.rulebook.trigger_journeys)."""

    spec: TriggerSpec
    condition: Node
    escalate_when: Node | None

    @property
    def id(self) -> str:
        return self.spec.id

    @cached_property
    def shown(self) -> tuple[tuple[str, str], ...]:
        """(key, description) of the facts its condition reads: what its decision shows."""
        used = {t.fact.key: t.fact for t in checks_in(self.condition)}
        return tuple((key, fact.describe) for key, fact in used.items())

    @cached_property
    def shown_escalation(self) -> tuple[tuple[str, str], ...]:
        """What its escalation shows: its condition's facts and escalate_when's."""
        used = {t.fact.key: t.fact for t in checks_in(self.condition)}
        if self.escalate_when is not None:
            used.update({t.fact.key: t.fact for t in checks_in(self.escalate_when)})
        return tuple((key, fact.describe) for key, fact in used.items())
