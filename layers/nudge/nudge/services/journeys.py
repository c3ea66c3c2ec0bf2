"""A journey's message judged again at send time (dispatch, and the channel functions just before
they send): a user who converted or left the journey while the message waited gets nothing.
Nudge.domain.journeys.over_at_send says why; this reads what it needs through the ports."""

from __future__ import annotations

from datetime import datetime

from nudge.conditions.tree import Context
from nudge.domain.evaluate import evaluate
from nudge.domain.journey_sends import over_at_send
from nudge.model.decisions import Decision
from nudge.model.state import UserState
from nudge.ports import UsageStore
from nudge.rulebook.ruleset import RuleSet
from nudge.services.account_facts import AccountFactsCache


def journey_over(
    rules: RuleSet, decision: Decision, user: UserState, usage: UsageStore, now: datetime
) -> str | None:
    """converted | exited | journey_removed when the decision's journey no longer wants it sent;
    rule_removed for a trigger's decision whose trigger a deploy removed while it was queued (judged
    by nothing: suppressed with that reason, never a crash and a retry loop); None for a trigger's
    that still exists, or a journey's that still holds."""
    if not decision.journey:
        return None if decision.rule in rules.spec_by_rule else "rule_removed"
    journey = rules.journey_by_id.get(decision.journey)
    if journey is None:
        return "journey_removed"
    account = AccountFactsCache(usage, rules.reads_account_usage).get(user.account_id)
    evaluation = evaluate(rules, user, account, None, now, programs=())  # its facts: no program runs
    ctx = Context(user, now, account).scored(
        evaluation.segment or "",
        evaluation.score,
        evaluation.band,
        evaluation.account_score,
        evaluation.account_band,
    )
    return over_at_send(journey, ctx, evaluation.facts, decision.decided_at)
