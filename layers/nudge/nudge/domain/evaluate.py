"""Evaluate one user: facts -> scores -> lifecycle segment (+ transition) -> fired triggers -> decisions.

Pure: takes the states and `now`, returns values. The evaluate Lambda, the sweep, the CLI
(test, backtest, explain) and the local stack all call `evaluate`.
"""

from __future__ import annotations

import hashlib
import math
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from nudge.conditions.facts import IGNORED, MISSING_NUMBER
from nudge.conditions.features import AccountFacts
from nudge.conditions.tree import Check, Context, Fact, Op, checks_in, no_change, subjects_in
from nudge.domain.engine import CompiledGroup, UnreadableFact, compiled
from nudge.domain.trigger import trigger_of
from nudge.model.decisions import Decision, SegmentState, Transition, Value
from nudge.model.limits import SEGMENT_HISTORY_KEPT
from nudge.model.state import UserState
from nudge.rulebook.ruleset import ESCALATE, RuleSet, Trigger, all_conditions


@dataclass(frozen=True, init=False)
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
    # Facts whose value was out of range (a stored trait of 1e19, a sum that overflowed), answered
    # as missing so the rest of the evaluation holds: for the caller to report.
    ignored: tuple[str, ...]

    def __init__(
        self,
        segment: str | None,
        segments: SegmentState,
        entered: str | None,
        exited: str | None,
        score: float,
        band: str,
        account_score: float,
        account_band: str,
        fired: list[str],
        decisions: list[Decision],
        next_check_at: datetime | None,
        facts: dict[str, Value],
        ignored: tuple[str, ...] = (),
    ) -> None:
        # Written to __dict__ at once: a frozen dataclass's own __init__ sets each of the thirteen
        # fields through object.__setattr__, once per evaluation.
        self.__dict__.update(
            segment=segment,
            segments=segments,
            entered=entered,
            exited=exited,
            score=score,
            band=band,
            account_score=account_score,
            account_band=account_band,
            fired=fired,
            decisions=decisions,
            next_check_at=next_check_at,
            facts=facts,
            ignored=ignored,
        )


def facts_for(rules: RuleSet, ctx: Context) -> dict[str, Value]:
    return {key: compute(ctx) for key, compute in _plan(rules).computes}


def rules_facts(rules: RuleSet) -> list[Fact]:
    return _plan(rules).facts


def rules_checks(rules: RuleSet) -> list[Check]:
    """Every distinct (fact, op, value) test in the rules: what could flip with time alone."""
    return _plan(rules).checks


# A test time alone could flip, as next_check asks it: for an anchored fact (conditions.Fact),
# (anchor, time after it, ...); for any other, (None, ..., changes_at, op, value).
Probe = tuple[
    Callable[[Context], datetime | None] | None,
    timedelta,
    Callable[[Context, Op, Value], datetime | None],
    Op,
    Value,
]


@dataclass(frozen=True)
class _Plan:
    """What evaluating a rule set needs of its conditions, worked out once per rule set."""

    facts: list[Fact]  # every fact of every condition, once
    computes: list[tuple[str, Callable[[Context], Value]]]  # their keys and compute
    checks: list[Check]  # every distinct test
    # The `changes_at` calls that can answer: checks in order, without the facts time never
    # changes, and a fact whose answer ignores the threshold asked once (so is a week closing,
    # shared by every weekly fact).
    probes: list[Probe]
    # Per trigger, what its decision shows: (key, description) of the facts its condition reads,
    # and for an escalation (its own action, or escalate_when's) with escalate_when's too.
    shown: dict[str, list[tuple[str, str]]]
    shown_escalation: dict[str, list[tuple[str, str]]]
    # Points by signal name, as Score.points reads them (subject__id).
    user_points: dict[str, float]
    account_points: dict[str, float]
    # The three durable_rules passes, compiled when this rule set is first evaluated.
    score_engine: CompiledGroup
    segment_engine: CompiledGroup
    trigger_engine: CompiledGroup


def _plan(rules: RuleSet) -> _Plan:
    # Keyed by id, with a weak reference that says whether that id is still this rule set.
    cached = _plans.get(id(rules))
    if cached is not None and cached[0]() is rules:
        return cached[1]
    facts: dict[str, Fact] = {}
    unique: dict[tuple[str, str, Value], Check] = {}
    for node in all_conditions(rules):
        for check in checks_in(node):
            facts.setdefault(check.fact.key, check.fact)
            unique.setdefault((check.fact.key, check.op, check.value), check)
    probes: list[Probe] = []
    asked: set[object] = set()
    for check in unique.values():
        fact = check.fact
        if fact.changes_at is no_change:
            continue
        if not fact.by_threshold:
            if fact.changes_at in asked:
                continue
            asked.add(fact.changes_at)
        if fact.anchor is not None and fact.after is not None:
            wait = fact.after(check.op, check.value)
            if wait is not None:  # else this test never flips
                probes.append((fact.anchor, wait, fact.changes_at, check.op, check.value))
        else:
            probes.append((None, _ZERO, fact.changes_at, check.op, check.value))
    shown: dict[str, list[tuple[str, str]]] = {}
    shown_escalation: dict[str, list[tuple[str, str]]] = {}
    for trigger in rules.triggers:
        used = {t.fact.key: t.fact for t in checks_in(trigger.condition)}
        shown[trigger.id] = [(key, fact.describe) for key, fact in used.items()]
        if trigger.escalate_when is not None:
            used.update({t.fact.key: t.fact for t in checks_in(trigger.escalate_when)})
        shown_escalation[trigger.id] = [(key, fact.describe) for key, fact in used.items()]
    plan = _Plan(
        list(facts.values()),
        [(fact.key, fact.compute) for fact in facts.values()],
        list(unique.values()),
        probes,
        shown,
        shown_escalation,
        {f"{rules.user_score.subject}__{s.id}": s.points for s in rules.user_score.signals},
        {f"{rules.account_score.subject}__{s.id}": s.points for s in rules.account_score.signals},
        compiled(rules.score_rules),
        compiled(rules.segment_rules),
        compiled(rules.trigger_rules),
    )
    _plans[id(rules)] = (weakref.ref(rules), plan)
    return plan


_plans: dict[int, tuple[weakref.ref[RuleSet], _Plan]] = {}


def next_check(rules: RuleSet, ctx: Context, fired: list[str]) -> datetime | None:
    """The earliest future instant at which a test could flip with no new event, or a fired
    trigger decides again: its cooldown window ends (a new decision_id), even with no new event."""
    now = ctx.now
    # Candidates are compared by how long from now they are: one subtraction each, where
    # comparing with now and with the best so far would cost two (each slow for a datetime whose
    # tzinfo is pydantic's). An anchored fact's tests take it from the anchor's time since EPOCH,
    # which computing the facts has mostly worked out already. Exact either way; the first of
    # equal instants is kept, as min() would.
    best: datetime | None = None
    best_anchor: datetime | None = None
    best_wait = _ZERO
    soonest = _NEVER
    now_since = ctx.instant.since
    anchors: dict[object, tuple[datetime, timedelta] | None] = {}
    for anchor, wait, changes_at, op, value in _plan(rules).probes:
        if anchor is not None:
            if anchor in anchors:
                base = anchors[anchor]
            else:
                start = anchor(ctx)
                base = anchors[anchor] = (
                    None if start is None else (start, ctx.since_epoch(start) - now_since)
                )
            if base is not None:
                until = base[1] + wait
                if _ZERO < until < soonest:
                    best, best_anchor, best_wait, soonest = None, base[0], wait, until
        else:
            at = changes_at(ctx, op, value)
            if at is not None:
                until = at - now
                if _ZERO < until < soonest:
                    best, best_anchor, soonest = at, None, until
    if best_anchor is not None:
        best = best_anchor + best_wait  # what the fact's changes_at gives
    by_id = rules.trigger_by_id
    for rule_id in fired:
        end = window_end(by_id[rule_id], now)
        if end is not None and (best is None or end < best):
            best = end
    return best


_ZERO = timedelta(0)
_NEVER = timedelta.max


def evaluate(
    rules: RuleSet,
    user: UserState,
    account: AccountFacts | None,
    previous: SegmentState | None,
    now: datetime,
) -> Evaluation:
    ctx = Context(user=user, now=now, account=account)
    plan = _plan(rules)
    facts = {key: compute(ctx) for key, compute in plan.computes}
    ignored: list[str] = ctx.memo.get(IGNORED) or []
    first_pass = _matches(plan.score_engine, facts, ignored)
    if rules.segments_with_scores:
        segment_ids = rules.segment_ids
        signals = [n for n in first_pass if n not in segment_ids]
    else:
        signals = first_pass
    # Score.points, from the plan's copy of its table.
    score = sum([plan.user_points.get(name, 0.0) for name in signals])
    account_score = (
        sum([plan.account_points.get(name, 0.0) for name in signals]) if account is not None else 0.0
    )
    band = rules.user_score.band(score)
    account_band = rules.account_score.band(account_score) if account is not None else ""
    facts.update(score=score, band=band, account_score=account_score, account_band=account_band)

    if rules.segments_with_scores:
        matched = [n for n in first_pass if n in segment_ids]
    else:
        matched = _matches(plan.segment_engine, facts, ignored)
    segment = matched[0] if matched else rules.catch_all
    facts["segment"] = segment or ""
    ctx = ctx.scored(segment or "", score, band, account_score, account_band)

    state, entered, exited = _transition(previous, segment, now)
    matched_triggers = _matches(plan.trigger_engine, facts, ignored)
    fired = [name for name in matched_triggers if not name.startswith(ESCALATE)]
    escalations = {name.removeprefix(ESCALATE) for name in matched_triggers if name.startswith(ESCALATE)}
    by_id = rules.trigger_by_id
    decisions: list[Decision] = []
    for rule_id in fired:
        trigger = by_id[rule_id]
        action = trigger.spec.action
        assert action is not None  # the rule file's check sets it: the action, or the first channel
        decisions.append(_decide(trigger, action, user, plan, facts, now))
        if rule_id in escalations and trigger.spec.action != "escalate":
            decisions.append(_decide(trigger, "escalate", user, plan, facts, now))
    if len(decisions) > 1:
        decisions.sort(key=lambda d: (-d.priority, d.rule, d.action))

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
        next_check_at=next_check(rules, ctx, fired),
        facts=facts,
        ignored=tuple(dict.fromkeys(ignored)),
    )


def _matches(engine: CompiledGroup, facts: dict[str, Value], ignored: list[str]) -> list[str]:
    """The engine's matches; a fact it cannot read (a number no fact computes in range, so one
    that slipped through) is answered as a missing number, noted in `ignored`, and the match
    made again: one bad value never fails the evaluation."""
    while True:
        try:
            return engine.matches(facts)
        except UnreadableFact as exc:
            if exc.key not in facts or exc.key in ignored:
                raise
            facts[exc.key] = MISSING_NUMBER
            ignored.append(exc.key)


def _transition(
    previous: SegmentState | None, segment: str | None, now: datetime
) -> tuple[SegmentState, str | None, str | None]:
    before = previous.segment if previous else None
    if previous is not None and before == segment:
        return previous, None, None
    history = [*(previous.history if previous else []), Transition(from_=before, to=segment or "", at=now)]
    return SegmentState(segment=segment, since=now, history=history[-SEGMENT_HISTORY_KEPT:]), segment, before


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


def _decide(
    trigger: Trigger,
    action: str,
    user: UserState,
    plan: _Plan,
    facts: dict[str, Value],
    now: datetime,
) -> Decision:
    account_id = user.account_id
    escalation = action == "escalate"
    subject = f"account:{account_id}" if escalation and account_id else f"user:{user.user_id}"
    shown_facts = (plan.shown_escalation if escalation else plan.shown)[trigger.id]
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
