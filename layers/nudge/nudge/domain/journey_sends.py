"""A journey's send after the engine decided it: whether the saved instance made it (`on_saved_path`:
dispatch asks it first), what the journey says when the guardrails hold it back (`when_blocked`,
applied by dispatch), and whether it may still go out at send time (`over_at_send`: dispatch and the
channel functions ask it). Pure, takes `now`."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal

from nudge.conditions.facts import last_done
from nudge.conditions.tree import Context, holds_in
from nudge.domain.verdicts import Verdict
from nudge.model.decisions import Decision, Value
from nudge.model.journeys import JourneyInstance
from nudge.model.limits import JOURNEY_DECISIONS_KEPT, JOURNEY_RETRY_SECONDS
from nudge.rulebook.journeys import Journey


def over_at_send(journey: Journey, ctx: Context, facts: dict[str, Value], decided_at: datetime) -> str | None:
    """Why a journey's message decided at `decided_at` must not go out now (None: it may): the user
    reached the goal since (converted: a message that waited in a queue is not sent), or an exit
    holds. The goal is judged as the engine judges it, its event after the decision."""
    if journey.goal is not None:
        if holds_in(journey.goal, facts):
            return "converted"
    elif journey.spec.goal is not None and journey.spec.goal.event is not None:
        done = last_done(ctx, journey.spec.goal.event, journey.goal_where)
        if done is not None and done > decided_at:
            return "converted"
    if any(holds_in(node, facts) for node in journey.exits):
        return "exited"
    return None


SUPERSEDED = "superseded"
PathVerdict = Literal["saved", "superseded", "pending"]


def on_saved_path(saved: JourneyInstance | None, decision: Decision) -> PathVerdict:
    """Whether a journey's decision is one the user's saved instance made.

    Evaluations publish before their versioned save, and two of them from one version of the record
    may move one instance along different paths (the sweep saw a wait_until's timeout, the stream
    the event): both publish, one save wins. The saved instance remembers the decisions of its own
    advances, so once it has moved past the decision's step visit (run, seq), the decision is
    `saved` (one of them) or `superseded` (the loser's: never sent). Before that, the winning save
    may not have landed yet: `pending` (ask again later). An instance that ended has moved past all
    of its run. Not checked (`saved`): a decision or an instance from before decisions were kept, and
    a decision older than every one remembered (more were saved before it got here).
    """
    if decision.seq is None or not decision.journey:
        return "saved"
    if saved is None:
        return "pending"  # the instance's first save has not landed yet
    at = (decision.run, decision.seq)
    if saved.run < decision.run or (saved.run == decision.run and saved.live and saved.seq <= decision.seq):
        return "pending"
    if saved.decided is None:
        return "saved"
    if any(d.decision_id == decision.decision_id for d in saved.decided):
        return "saved"
    if len(saved.decided) >= JOURNEY_DECISIONS_KEPT and at < (saved.decided[0].run, saved.decided[0].seq):
        return "saved"  # older than what the instance remembers: cannot tell, so sent as before
    return "superseded"


EXIT_MARK = ":exit"  # ends the reason of a blocked send that ends its journey (blocked: exit)


def when_blocked(journey: Journey, verdict: Verdict, now: datetime) -> Verdict:
    """What a journey's send the guardrails suppressed becomes, by the journey's `blocked:` policy.

    retry: held back by a cap or a higher-priority message, it is deferred a day and judged again,
    while within retry_within of its decision (consent, an address or the suppression list are no
    reason to retry: it is skipped). exit: suppressed, and the instance ends (EXIT_MARK on the
    reason tells dispatch to end it). skip: suppressed, the journey goes on (its next step was
    already taken)."""
    if verdict.outcome != "suppressed":
        return verdict
    policy = journey.spec.blocked
    if policy.do == "retry" and (verdict.reason.startswith("cap_") or verdict.reason == "lower_priority"):
        at = now + timedelta(seconds=JOURNEY_RETRY_SECONDS)
        if at <= verdict.decision.decided_at + policy.retry_within:
            return Verdict(verdict.decision, "deferred", f"retry_{verdict.reason}", at)
    if policy.do == "exit":
        return Verdict(verdict.decision, "suppressed", verdict.reason + EXIT_MARK)
    return verdict
