"""A trigger (triggers.yaml) compiled, at load, into the one-step journey the engine runs
(nudge.domain.journeys), so triggers and journeys share one engine and one evaluation path.

    entry    the trigger's `when` (matched in the evaluation's entries pass, as a journey's `when` is)
    steps    send (its action or channels: one decision)        or, for action escalate: escalate
             escalate_when (a branch: escalate if it holds, else end)
             escalate (the case for customer success)
    blocked  skip: a message the guardrails hold back is suppressed and not retried, as before

A compiled trigger keeps no JourneyInstance: it enters, sends and ends within one evaluation, and
what it must remember between evaluations is its re-entry, which its decision ids already encode:
an id is per rule, subject and cooldown window (`once`: one window, ever), the evaluate service
publishes an id only when the user's record has not decided it already (SegmentRecord.decided), and
dispatch claims every id in the ledger. Those ids are the ones triggers made before they ran on the
engine, so a deploy of the engine re-sends nothing already sent. Its `re_entry` (once, or after its
cooldown) is for the reader: the engine re-enters it per window (nudge.domain.trigger_decisions).

Its holdout and goal stay the trigger's (the guardrails hold out per rule; the goal measures lift in
the report): a compiled journey has no holdout and no goal of its own, and a quiet-hours deferral
returns while its condition still holds (nudge.services.evaluate), as it always has.
"""

from __future__ import annotations

from nudge.rulebook.journey_specs import (
    END,
    BlockedSpec,
    BranchCase,
    EntrySpec,
    EscalateSpec,
    JourneyFile,
    ReEntryAfter,
    StepSpec,
)
from nudge.rulebook.journeys import Journey, Step
from nudge.rulebook.rule_specs import Trigger

SEND, ESCALATE_WHEN, ESCALATE = "send", "escalate_when", "escalate"


def one_step_journey(trigger: Trigger, file: str) -> Journey:
    """The journey the engine runs for `trigger` (ids, names and decisions are the trigger's)."""
    spec = trigger.spec
    escalate = Step(
        ESCALATE,
        "escalate",
        StepSpec(id=ESCALATE, escalate=EscalateSpec(next_step=spec.next_step, template="cs_escalation")),
        END,
    )
    steps: list[Step]
    if spec.action == "escalate":
        steps = [escalate]
    elif trigger.escalate_when is not None:
        # The message's step; its spec is not read (the trigger's is: webhooks and `preferred`
        # channels included), so it names no channel here.
        send = Step(SEND, "send", StepSpec(id=SEND), ESCALATE_WHEN)
        branch = Step(
            ESCALATE_WHEN,
            "branch",
            StepSpec(
                id=ESCALATE_WHEN,
                branch=[BranchCase(when=spec.escalate_when, step=ESCALATE), BranchCase(else_=END)],
            ),
            END,
            cases=((trigger.escalate_when, ESCALATE),),
            otherwise=END,
        )
        steps = [send, branch, escalate]
    else:
        steps = [Step(SEND, "send", StepSpec(id=SEND), END)]
    journey_file = JourneyFile(
        id=spec.id,
        description=spec.description,
        kind=spec.kind,
        priority=spec.priority,
        entry=EntrySpec(when=spec.when),
        re_entry="once" if spec.once else ReEntryAfter(after=spec.cooldown),
        blocked=BlockedSpec(do="skip"),
        steps=[s.spec for s in steps],
    )
    conditions = (trigger.condition,) + (
        (trigger.escalate_when,) if trigger.escalate_when is not None else ()
    )
    return Journey(
        journey_file,
        file,
        {s.id: s for s in steps},
        steps[0].id,
        entry=trigger.condition,
        conditions=conditions,
        trigger=trigger,
    )
