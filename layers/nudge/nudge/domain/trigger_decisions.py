"""A compiled trigger's decisions (nudge.rulebook.trigger_journeys), as the engine makes them at
its send and escalate steps: the ids, rule names and shown facts triggers have always had, so the
ledger, the report, backtest, explain and rule tests see the same, and a deploy re-sends nothing.

A trigger's decision id is per rule and action, subject and eligibility window (its cooldown, counted
from the epoch; `once`: one window, ever): a redelivered record decides the same, and the window is
what re-enters the trigger (a new window, a new id). Pure: takes `now`.
"""

from __future__ import annotations

import hashlib
import math
from datetime import UTC, datetime

from nudge.conditions.tree import subjects_in
from nudge.domain.trigger import trigger_of
from nudge.model.decisions import Decision, Value
from nudge.model.state import UserState
from nudge.rulebook.rule_specs import Trigger

CHANNELS = {
    "email": "email",
    "push": "push",
    "sms": "sms",
    "in_app": "in_app",
    "escalate": "cs",
    "webhook": "webhook",
}


def decision_id(rule: str, subject: str, trigger: Trigger, now: datetime) -> str:
    """Deterministic per rule, subject and eligibility window, so a redelivered record decides the same."""
    if trigger.spec.once:
        window = "once"
    else:
        window = str(math.floor(now.timestamp() / trigger.spec.cooldown.total_seconds()))
    return hashlib.sha256(f"{rule}|{subject}|{window}".encode()).hexdigest()[:32]


def window_end(trigger: Trigger, now: datetime) -> datetime | None:
    """When the eligibility window of `decision_id` that holds `now` ends (None for `once`)."""
    if trigger.spec.once:
        return None
    seconds = trigger.spec.cooldown.total_seconds()
    return datetime.fromtimestamp((math.floor(now.timestamp() / seconds) + 1) * seconds, tz=UTC)


def trigger_decision(
    trigger: Trigger, action: str, user: UserState, facts: dict[str, Value], now: datetime
) -> Decision:
    """The decision of a compiled trigger's step: its message (`action` is the trigger's), or its
    escalation (`escalate`: the account's case, with escalate_when's facts shown too)."""
    account_id = user.account_id
    escalation = action == "escalate"
    subject = f"account:{account_id}" if escalation and account_id else f"user:{user.user_id}"
    shown_facts = trigger.shown_escalation if escalation else trigger.shown
    shown: dict[str, Value] = {describe: facts[key] for key, describe in shown_facts if key in facts}
    spec = trigger.spec
    return Decision(
        decision_id=decision_id(f"{trigger.id}:{action}", subject, trigger, now),
        user=user.user_id,
        account=account_id,
        rule=trigger.id,
        kind="escalation" if escalation else spec.kind,
        action=action,
        channel=CHANNELS[action],
        # A message's channels in order of preference (dispatch chooses); none for an escalation.
        channels=list(spec.channels) if action == spec.action and len(spec.channels) > 1 else [],
        template=spec.template if action == spec.action else "cs_escalation",
        priority=spec.priority,
        reason=spec.description or trigger.id,
        facts=shown,
        decided_at=now,
        trigger=trigger_of(subjects_in(trigger.condition), user),
        destination=(spec.destination or "") if action == "webhook" else "",
    )
