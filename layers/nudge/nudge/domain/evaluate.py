"""Evaluate one user: facts -> scores -> lifecycle segment (+ transition) -> entries -> the engine
(nudge.domain.journeys) runs every program, triggers as one-step journeys -> decisions.

Pure: takes the states and `now`, returns values. The evaluate Lambda, the sweep, the CLI
(test, backtest, explain) and the local stack all call `evaluate`.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from nudge.conditions.facts import IGNORED, MISSING_NUMBER
from nudge.conditions.features import AccountFacts
from nudge.conditions.tree import HORIZON, Check, Context, Fact, Op, checks_in, no_change
from nudge.domain.engine import CompiledGroup, UnreadableFact, compiled
from nudge.domain.journeys import JourneyRun, run_journeys
from nudge.domain.trigger_decisions import window_end as window_end
from nudge.model.decisions import Decision, SegmentState, Transition, Value
from nudge.model.journeys import JourneyInstance
from nudge.model.limits import SEGMENT_HISTORY_KEPT
from nudge.model.state import UserState
from nudge.rulebook.journeys import Journey
from nudge.rulebook.ruleset import RuleSet, all_conditions


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
    # The triggers whose condition holds (whether or not their window already decided it).
    fired: list[str]
    # What the engine decided: the triggers' and the journeys' decisions, highest priority first.
    decisions: list[Decision]
    next_check_at: datetime | None
    facts: dict[str, Value]
    # Facts whose value was out of range (a stored trait of 1e19, a sum that overflowed), answered
    # as missing so the rest of the evaluation holds: for the caller to report.
    ignored: tuple[str, ...]
    # The engine's run: the user's journey instances moved on, trait updates, the journeys' timer.
    journeys: JourneyRun

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
        journeys: JourneyRun | None = None,
    ) -> None:
        # Written to __dict__ at once: a frozen dataclass's own __init__ sets each of the fourteen
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
            journeys=journeys if journeys is not None else JourneyRun({}),
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
    # Points by signal name, as Score.points reads them (subject__id).
    user_points: dict[str, float]
    account_points: dict[str, float]
    # The three durable_rules passes, compiled when this rule set is first evaluated.
    score_engine: CompiledGroup
    segment_engine: CompiledGroup
    entry_engine: CompiledGroup


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
    # Facts that scan coming instants go last: by then the soonest candidate bounds their scan.
    for check in sorted(unique.values(), key=lambda c: c.fact.scans):
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
    plan = _Plan(
        list(facts.values()),
        [(fact.key, fact.compute) for fact in facts.values()],
        list(unique.values()),
        probes,
        {f"{rules.user_score.subject}__{s.id}": s.points for s in rules.user_score.signals},
        {f"{rules.account_score.subject}__{s.id}": s.points for s in rules.account_score.signals},
        compiled(rules.score_rules),
        compiled(rules.segment_rules),
        compiled(rules.entry_rules),
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
            if soonest is not _NEVER:
                ctx.memo[HORIZON] = soonest
            at = changes_at(ctx, op, value)
            if at is not None:
                until = at - now
                if _ZERO < until < soonest:
                    best, best_anchor, soonest = at, None, until
    ctx.memo.pop(HORIZON, None)
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
    instances: Mapping[str, JourneyInstance] | None = None,
    programs: Sequence[Journey] | None = None,
) -> Evaluation:
    """instances: the user's journey instances (SegmentRecord.journeys; none: a first evaluation).
    programs: what the engine runs (RuleSet.programs unless given: a rule test runs its journeys)."""
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
    matched = _matches(plan.entry_engine, facts, ignored)  # triggers first, in file order
    entries = frozenset(matched)
    by_id = rules.trigger_by_id
    fired = [name for name in matched if name in by_id]
    quiet = rules.guardrails.spec.quiet_hours
    run = run_journeys(
        rules.programs if programs is None else list(programs),
        instances or {},
        ctx,
        facts,
        entered_segment=entered,
        fallback_timezone=quiet.fallback_timezone if quiet else "UTC",
        entries=entries,
    )
    decisions = run.decisions
    if len(decisions) > 1:
        decisions = sorted(decisions, key=lambda d: (-d.priority, d.rule, d.action))

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
        journeys=run,
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
