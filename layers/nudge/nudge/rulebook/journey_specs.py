"""What a marketer writes in rules/journeys/*.yaml: one journey per file (pydantic models, which
also give the file's JSON Schema). nudge.rulebook.journeys checks them against the other rule files
and builds the Journey the engine (nudge.domain.journeys) runs.

    id: declining_rescue
    entry: {when: {segment: declining}}          # or {segment: declining}, or {event: E, where:, key:}
    re_entry: once                               # once | every_time | {after: 30d}
    goal: {event: any, within: 14d}              # or {when: <condition>, within: ...}
    exit: [{when: {trait: {name: plan, equals: churned}}}]
    holdout: 10
    steps:
      - id: reminder
        send: {channel: push, template: declining_nudge}
      - id: pause
        wait: 3d                                 # or {until_time: "10:00"} or {until_trait: renewal_on}
      - id: answered
        wait_until: {event: survey_answered, timeout: 3d, then: route, on_timeout: cs}
      - id: route
        branch: [{when: {...}, step: cs}, {else: end}]
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from nudge.model.durations import Duration
from nudge.rulebook.condition_specs import Where
from nudge.rulebook.plan import NAME_PATTERN

END = "end"
TIME_OF_DAY = r"^([01]\d|2[0-3]):[0-5]\d$"
SendChannel = Literal["email", "push", "sms", "in_app"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


class EventEntry(_Strict):
    name: str = Field(description="An event of the tracking plan.")
    where: Where | None = Field(
        default=None, description="Only this value (or one of a list) of one of its dimensions."
    )
    key: str | None = Field(
        default=None,
        description="A property of the event kept as a dimension or last value: one instance per value.",
    )


class EntrySpec(_Strict):
    when: Any = Field(default=None, description="Enter when this condition holds (as a trigger's when).")
    segment: str | None = Field(default=None, description="Enter on entering this lifecycle segment.")
    event: EventEntry | None = Field(default=None, description="Enter when the user does this event.")


class ReEntryAfter(_Strict):
    after: Duration = Field(description="May enter again this long after the last instance ended.")


class GoalSpec(_Strict):
    when: Any = Field(default=None, description="Converted when this condition holds.")
    event: str | None = Field(
        default=None, description="Converted on doing this event ('any': any meaningful)."
    )
    where: Where | None = None
    within: Duration = Field(description="The conversion window, from entry.")


class ExitSpec(_Strict):
    when: Any = Field(description="Leave the journey (not converted) when this holds.")


class Variant(_Strict):
    template: str
    weight: int = Field(ge=0, le=100)


class SendSpec(_Strict):
    channel: SendChannel | list[SendChannel] = Field(
        description="A channel, or a list in order of preference: the first the user can receive."
    )
    template: str | None = Field(default=None, description="A file in templates/ (or give variants).")
    variants: list[Variant] | None = Field(
        default=None, description="A/B: templates with weights summing to 100, assigned per user."
    )

    @property
    def channels(self) -> tuple[str, ...]:
        """The send's channels in order of preference (one or more)."""
        return tuple(self.channel) if isinstance(self.channel, list) else (self.channel,)


class WaitSpec(_Strict):
    until_time: str | None = Field(
        default=None,
        pattern=TIME_OF_DAY,
        description="Until this local time of day (HH:MM, user's timezone).",
    )
    until_trait: str | None = Field(default=None, description="Until the date held by this user trait.")


class WaitUntilSpec(_Strict):
    event: str | None = Field(default=None, description="Resume when the user does this event.")
    where: Where | None = None
    when: Any = Field(default=None, description="Or resume when this condition holds.")
    timeout: Duration | None = Field(default=None, description="Give up waiting after this long.")
    then: str = Field(default="", description="The step when it happens (default: the next step).")
    on_timeout: str = Field(default="", description="The step on timeout (default: the next step).")


class BranchCase(_Strict):
    when: Any = None
    step: str | None = None
    else_: str | None = Field(default=None, alias="else")

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True, populate_by_name=True)


class SplitPath(_Strict):
    weight: int = Field(ge=0, le=100)
    step: str


class EscalateSpec(_Strict):
    next_step: str = Field(default="", description="What customer success should do next.")
    template: str = Field(default="cs_escalation")


class UpdateSpec(_Strict):
    trait: str = Field(pattern=NAME_PATTERN, description="A user trait to set, e.g. a journey tag.")
    value: str | int | float | bool


class StepSpec(_Strict):
    id: str = Field(pattern=NAME_PATTERN)
    next: str | None = Field(default=None, description="The step after this one (default: the next listed).")
    send: SendSpec | None = None
    wait: Duration | WaitSpec | None = None
    wait_until: WaitUntilSpec | None = None
    branch: list[BranchCase] | None = None
    split: list[SplitPath] | None = None
    escalate: EscalateSpec | None = None
    update: UpdateSpec | None = None


STEP_KINDS = ("send", "wait", "wait_until", "branch", "split", "escalate", "update")


class BlockedSpec(_Strict):
    do: Literal["retry", "skip", "exit"] = Field(
        default="retry", description="A send the guardrails hold: retry later, skip it, or leave."
    )
    retry_within: Duration = Field(default=timedelta(days=2), description="Retry for at most this long.")


class JourneyFile(_Strict):
    id: str = Field(pattern=NAME_PATTERN)
    description: str = ""
    kind: Literal["onboarding", "rescue", "upgrade", "escalation"]
    priority: int = Field(default=50, ge=1, le=100)
    entry: EntrySpec
    re_entry: Literal["once", "every_time"] | ReEntryAfter = "once"
    goal: GoalSpec | None = None
    exit: list[ExitSpec] = Field(default_factory=list)
    holdout: float = Field(default=0.0, ge=0, le=100, description="Percent of entrants held out, for lift.")
    blocked: BlockedSpec = Field(default_factory=BlockedSpec)
    steps: list[StepSpec] = Field(min_length=1)
