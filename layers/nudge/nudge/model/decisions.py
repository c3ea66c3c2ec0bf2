"""What an evaluation decides, shared by the evaluator, dispatch, the ledger and the queues:
fact values, a user's segment state and its transitions, and the decisions to send or escalate."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

Value = float | int | str


class Transition(BaseModel):
    model_config = ConfigDict(frozen=True)

    from_: str | None = Field(default=None, alias="from")
    to: str
    at: datetime

    model_config = ConfigDict(frozen=True, populate_by_name=True)


class SegmentState(BaseModel):
    """A user's lifecycle segment, since when, and the latest transitions (bounded)."""

    segment: str | None = None
    since: datetime | None = None
    history: list[Transition] = Field(default_factory=list)


class TriggerEvent(BaseModel):
    """The event that made a rule fire, with the properties the tracking plan keeps of it: what a
    template reads as `trigger` (nudge.domain.trigger says which event and which values)."""

    event: str
    at: datetime
    properties: dict[str, str | int | float | bool] = Field(default_factory=dict)


class Decision(BaseModel):
    decision_id: str
    user: str
    account: str | None
    rule: str
    kind: str
    action: str
    channel: str  # the channel to send on: the rule's first choice until dispatch chooses
    # A rule naming channels in order of preference: all of them, in the rule's order (dispatch
    # picks the first the user can receive, nudge.domain.channel_choice); empty: only `channel`.
    channels: list[str] = Field(default_factory=list)
    template: str
    priority: int
    reason: str
    facts: dict[str, Value]
    decided_at: datetime
    # The request (or sweep run) that led to the decision, for following it through the logs:
    # the ingest API's request id, carried on to dispatch and the action functions. Not part of
    # the decision's identity (decision_id) and empty when nothing set it.
    correlation_id: str = ""
    # The event the rule fired on, for the template (None: its condition names no event done).
    trigger: TriggerEvent | None = None
    # The destination (rules/destinations.yaml) a `webhook` decision posts to: the rule's, or for
    # an escalation's copy, one of the destinations escalations also go to. "" for other channels.
    destination: str = ""
    # Set on a journey's decisions (nudge.domain.journeys): the journey is `rule`; its step, and
    # the instance (journey#key) it advanced, so dispatch can re-check its goal and exits.
    step: str = ""
    instance: str = ""
    journey: str = ""
    # The instance's run and step visit (seq) that made it: dispatch sends it only once the saved
    # instance has moved past that point on the same path (nudge.domain.journey_sends.on_saved_path).
    # seq None: decided before these were carried (not checked).
    run: int = 0
    seq: int | None = None
