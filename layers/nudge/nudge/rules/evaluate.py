"""Evaluate one user: facts -> scores -> lifecycle segment (+ transition) -> fired triggers -> decisions.

Pure: takes the states and `now`, returns values. The evaluate Lambda, the sweep, the CLI
(test, backtest, explain) and the local stack all call `evaluate`.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from nudge.ingest.state import UserState
from nudge.rules.conditions import Check, Context, Fact, Node, Value, checks_in
from nudge.rules.features import AccountFacts
from nudge.rules.ruleset import ESCALATE, RuleSet, Trigger

HISTORY_KEPT = 20


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


class Decision(BaseModel):
    decision_id: str
    user: str
    account: str | None
    rule: str
    kind: str
    action: str
    channel: str
    template: str
    priority: int
    reason: str
    facts: dict[str, Value]
    decided_at: datetime


@dataclass(frozen=True)
class Evaluation:
    segment: str | None
    segments: SegmentState
    entered: str | None
    exited: str | None
    score: float
    band: str
    account_score: float
    account_band: str
    fired: list[str]
    decisions: list[Decision]
    next_check_at: datetime | None
    facts: dict[str, Value]


def facts_for(rules: RuleSet, ctx: Context) -> dict[str, Value]:
    return {fact.key: fact.compute(ctx) for fact in rules_facts(rules)}


def rules_facts(rules: RuleSet) -> list[Fact]:
    cached = _facts_cache.get(id(rules))
    if cached is None:
        facts: dict[str, Fact] = {}
        for node in all_conditions(rules):
            for test in checks_in(node):
                facts.setdefault(test.fact.key, test.fact)
        cached = _facts_cache[id(rules)] = list(facts.values())
    return cached


_facts_cache: dict[int, list[Fact]] = {}
_checks_cache: dict[int, list[Check]] = {}


def rules_checks(rules: RuleSet) -> list[Check]:
    """Every distinct (fact, op, value) test in the rules: what could flip with time alone."""
    cached = _checks_cache.get(id(rules))
    if cached is None:
        unique: dict[tuple[str, str, Value], Check] = {}
        for node in all_conditions(rules):
            for check in checks_in(node):
                unique.setdefault((check.fact.key, check.op, check.value), check)
        cached = _checks_cache[id(rules)] = list(unique.values())
    return cached


def _next_changes(rules: RuleSet, ctx: Context) -> list[datetime]:
    """When each time-dependent check could flip; a fact whose change ignores the threshold is asked once."""
    times: list[datetime] = []
    asked: set[str] = set()
    for check in rules_checks(rules):
        fact = check.fact
        if not fact.by_threshold:
            if fact.key in asked:
                continue
            asked.add(fact.key)
        at = fact.changes_at(ctx, check.op, check.value)
        if at is not None:
            times.append(at)
    return times


def all_conditions(rules: RuleSet) -> list[Node]:
    nodes: list[Node] = [s.condition for s in rules.segments if s.condition is not None]
    nodes += [s.condition for s in rules.user_score.signals]
    nodes += [s.condition for s in rules.account_score.signals]
    nodes += [t.condition for t in rules.triggers]
    nodes += [t.escalate_when for t in rules.triggers if t.escalate_when is not None]
    return nodes


def evaluate(
    rules: RuleSet,
    user: UserState,
    account: AccountFacts | None,
    previous: SegmentState | None,
    now: datetime,
) -> Evaluation:
    ctx = Context(user=user, now=now, account=account)
    facts = facts_for(rules, ctx)
    first_pass = rules.score_rules.matches(facts)
    signals = (
        [n for n in first_pass if n not in rules.segment_ids] if rules.segments_with_scores else first_pass
    )
    score = rules.user_score.points(signals)
    account_score = rules.account_score.points(signals) if account is not None else 0.0
    band = rules.user_score.band(score)
    account_band = rules.account_score.band(account_score) if account is not None else ""
    facts.update(score=score, band=band, account_score=account_score, account_band=account_band)

    if rules.segments_with_scores:
        matched = [n for n in first_pass if n in rules.segment_ids]
    else:
        matched = rules.segment_rules.matches(facts)
    segment = matched[0] if matched else rules.catch_all
    facts["segment"] = segment or ""
    ctx = Context(
        user=user,
        now=now,
        account=account,
        segment=segment or "",
        score=score,
        band=band,
        account_score=account_score,
        account_band=account_band,
    )

    state, entered, exited = _transition(previous, segment, now)
    matched_triggers = rules.trigger_rules.matches(facts)
    fired = [name for name in matched_triggers if not name.startswith(ESCALATE)]
    escalations = {name.removeprefix(ESCALATE) for name in matched_triggers if name.startswith(ESCALATE)}
    by_id = rules.trigger_by_id
    decisions: list[Decision] = []
    for rule_id in fired:
        trigger = by_id[rule_id]
        decisions.append(_decide(trigger, trigger.spec.action, user, account, facts, now))
        if rule_id in escalations and trigger.spec.action != "escalate":
            decisions.append(_decide(trigger, "escalate", user, account, facts, now))
    decisions.sort(key=lambda d: (-d.priority, d.rule, d.action))

    future = [c for c in _next_changes(rules, ctx) if c > now]
    # A trigger that fired decides again (a new decision_id) when its cooldown window ends, even
    # with no new event: that instant is a re-check too.
    future += [end for rule_id in fired if (end := window_end(by_id[rule_id], now)) is not None]
    return Evaluation(
        segment=segment,
        segments=state,
        entered=entered,
        exited=exited,
        score=score,
        band=band,
        account_score=account_score,
        account_band=account_band,
        fired=fired,
        decisions=decisions,
        next_check_at=min(future) if future else None,
        facts=facts,
    )


def _transition(
    previous: SegmentState | None, segment: str | None, now: datetime
) -> tuple[SegmentState, str | None, str | None]:
    before = previous.segment if previous else None
    if previous is not None and before == segment:
        return previous, None, None
    history = [*(previous.history if previous else []), Transition(from_=before, to=segment or "", at=now)]
    return SegmentState(segment=segment, since=now, history=history[-HISTORY_KEPT:]), segment, before


CHANNELS = {"email": "email", "push": "push", "sms": "sms", "escalate": "cs"}


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


def _decide(
    trigger: Trigger,
    action: str,
    user: UserState,
    account: AccountFacts | None,
    facts: dict[str, Value],
    now: datetime,
) -> Decision:
    account_id = user.account_id
    escalation = action == "escalate"
    subject = f"account:{account_id}" if escalation and account_id else f"user:{user.user_id}"
    used = {t.fact.key: t.fact for t in checks_in(trigger.condition)}
    if escalation and trigger.escalate_when is not None:
        used.update({t.fact.key: t.fact for t in checks_in(trigger.escalate_when)})
    shown: dict[str, Value] = {fact.describe: facts[key] for key, fact in used.items() if key in facts}
    reason = trigger.spec.description or trigger.id
    return Decision(
        decision_id=decision_id(f"{trigger.id}:{action}", subject, trigger, now),
        user=user.user_id,
        account=account_id,
        rule=trigger.id,
        kind="escalation" if escalation else trigger.spec.kind,
        action=action,
        channel=CHANNELS[action],
        template=trigger.spec.template if action == trigger.spec.action else "cs_escalation",
        priority=trigger.spec.priority,
        reason=reason,
        facts=shown,
        decided_at=now,
    )


def explain(
    rules: RuleSet, user: UserState, account: AccountFacts | None, now: datetime
) -> list[dict[str, Any]]:
    """Why the user is or is not in each segment and rule: each test with its value."""
    evaluation = evaluate(rules, user, account, None, now)
    ctx = Context(
        user=user,
        now=now,
        account=account,
        segment=evaluation.segment or "",
        score=evaluation.score,
        band=evaluation.band,
        account_score=evaluation.account_score,
        account_band=evaluation.account_band,
    )
    lines: list[dict[str, Any]] = []
    for seg in rules.segments:
        lines.append(_explain_node("segment", seg.id, seg.condition, ctx, seg.id == evaluation.segment))
    for trig in rules.triggers:
        lines.append(_explain_node("trigger", trig.id, trig.condition, ctx, trig.id in evaluation.fired))
    return lines


def _explain_node(kind: str, name: str, node: Node | None, ctx: Context, chosen: bool) -> dict[str, Any]:
    from nudge.rules.conditions import holds

    tests = [
        {
            "fact": t.fact.describe,
            "value": t.fact.compute(ctx),
            "op": t.op,
            "expected": t.value,
            "holds": t.holds(ctx),
        }
        for t in (checks_in(node) if node is not None else [])
    ]
    return {
        "kind": kind,
        "name": name,
        "holds": holds(node, ctx) if node is not None else True,
        "chosen": chosen,
        "tests": tests,
    }
