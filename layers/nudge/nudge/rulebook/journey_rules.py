"""A journey as the rest of the rule set sees it: the templates it sends, what its templates may
read of `trigger`, and its spec as a rule for the guardrails and channels."""

from __future__ import annotations

from datetime import timedelta

from nudge.conditions.tree import (
    All,
    Check,
    Fact,
    Node,
    Subject,
)
from nudge.rulebook.journeys import Journey
from nudge.rulebook.rule_specs import TriggerSpec


def journey_templates(journey: Journey) -> list[str]:
    """Every template a journey's sends may use (variants included)."""
    names: list[str] = []
    for step in journey.steps.values():
        send = step.spec.send
        if send is not None:
            names += [send.template] if send.template else [v.template for v in send.variants or []]
    return list(dict.fromkeys(names))


def journey_entry_condition(journey: Journey) -> Node:
    """What a journey's templates may read of `trigger`: the event it is entered on (an event
    entry), the events its entry condition says the user did, or none (a segment entry)."""
    if journey.entry is not None:
        return journey.entry
    event = journey.spec.entry.event
    if event is None:
        return All(())
    subject = Subject(event.name, journey.entry_where)
    return Check(Fact("journey_entry", f"entered on {event.name}", _no_value, subject=subject), "eq", 0)


def _no_value(ctx: object) -> int:
    return 0


def journey_rule_spec(journey: Journey) -> TriggerSpec:
    """A journey as the guardrails and channels see a rule: its kind (topic, caps), priority, no
    cooldown (its waits pace it) and no rule holdout (the journey holds out at entry)."""
    steps = list(journey.steps.values())
    sends = [s.spec.send.channels[0] for s in steps if s.spec.send is not None]
    escalations = [s.spec.escalate for s in steps if s.spec.escalate is not None]
    return TriggerSpec(
        id=journey.id,
        description=journey.spec.description,
        kind=journey.spec.kind,
        when=None,
        action=sends[0] if sends else "escalate",
        template="",
        priority=journey.spec.priority,
        cooldown=timedelta(0),
        journey=journey.id,
        next_step=escalations[0].next_step if escalations else "",
    )
