"""What evaluating the rules costs, per core: `evaluate` with the shipped rule set, against
hand-written Python predicates for the same rules, on the sample product's users.

The users are the sample history folded by the real ingest service (in memory) at the end of the
history; each user with an account gets that account's traits (from its group calls) and rollup.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from nudge.adapters.memory import MemoryUsageStore
from nudge.conditions import features as F
from nudge.conditions.features import AccountFacts
from nudge.conditions.tree import Context
from nudge.domain.engine import compiled
from nudge.domain.evaluate import Evaluation, evaluate, facts_for, next_check
from nudge.model.decisions import SegmentState, Value
from nudge.model.messages import Batch, InvalidMessage, Message
from nudge.model.state import AccountState, UserState
from nudge.rulebook.ruleset import RuleSet
from nudge.services.ingest import IngestLimits, ingest

# -- the population: every sample user, folded at the end of the history ---------------------


@dataclass(frozen=True)
class Population:
    users: list[UserState]
    accounts: list[AccountFacts | None]  # each user's account, or None
    previous: list[SegmentState | None]  # each user's segment record (steady state: same segment)
    account_states: dict[str, AccountState]  # as the store keeps them (traits from group calls)
    now: datetime
    messages: int

    @property
    def with_account(self) -> int:
        return sum(1 for account in self.accounts if account is not None)


def population(raw: Sequence[dict[str, Any]], rules: RuleSet, now: datetime) -> Population:
    """Ingest every sample message at `now` (the ingest service on the in-memory store), then
    pair each user with their account's facts, as the evaluator's AccountFactsCache does."""
    batch = Batch.model_validate({"batch": list(raw)})
    messages: list[Message] = [m for m in batch.batch if not isinstance(m, InvalidMessage)]
    if len(messages) != len(raw):
        raise RuntimeError(f"{len(raw) - len(messages)} sample messages are invalid")
    store = MemoryUsageStore()
    result = ingest(list(enumerate(messages)), rules.plan, store, now, IngestLimits(), sleep=lambda _s: None)
    if result.errors:
        raise RuntimeError(f"sample messages refused: {result.errors[:3]}")
    accounts: dict[str, AccountFacts] = {}
    for account_id, stored in store.accounts.items():
        traits: dict[str, object] = dict(stored.value.trait_values())
        accounts[account_id] = AccountFacts(traits, store.load_rollup(account_id))
    users = [store.users[uid].value for uid in sorted(store.users)]
    facts = [accounts.get(u.account_id) if u.account_id else None for u in users]
    # Steady state: the record already holds the segment the user is in (no transition).
    previous: list[SegmentState | None] = [
        evaluate(rules, u, a, None, now).segments for u, a in zip(users, facts, strict=True)
    ]
    states = {account_id: stored.value for account_id, stored in store.accounts.items()}
    return Population(users, facts, previous, states, now, len(messages))


# -- what both sides must agree on -------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    segment: str | None
    score: float
    band: str
    account_score: float
    account_band: str
    fired: tuple[str, ...]  # triggers that fired, in file order
    escalated: tuple[str, ...]  # fired triggers whose escalate_when also held


def verdict_of(evaluation: Evaluation, rules: RuleSet) -> Verdict:
    own = {t.id: t.spec.action for t in rules.triggers}
    escalated = {d.rule for d in evaluation.decisions if d.action == "escalate" and own[d.rule] != "escalate"}
    return Verdict(
        evaluation.segment,
        evaluation.score,
        evaluation.band,
        evaluation.account_score,
        evaluation.account_band,
        tuple(evaluation.fired),
        tuple(rule for rule in evaluation.fired if rule in escalated),
    )


# -- the baseline: the shipped rules (rules/*.yaml) written by hand ---------------------------
#
# Straight Python against nudge.conditions.features: compute every feature the rules need, then plain
# `if`s. Same segments in the same order, same signals and points, same triggers; it builds no
# decisions and schedules no re-check (those are extra work `evaluate` does, shown apart below).


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _band(score: float, high: float, mid: float) -> str:
    return "high" if score >= high else "mid" if score >= mid else "low"


def hand_written(user: UserState, account: AccountFacts | None, now: datetime) -> Verdict:
    days_without_use = F.days_without(user, "any", now)
    days_since_use = F.days_since_event(user, "any", now)
    activated = "activated" in user.milestones
    days_activated = F.days_since_milestone(user, "activated", now)
    weeks_declining = F.weeks_below(user, "sessions", 2, now)
    frequency = F.frequency_band(user, now)
    automation = F.feature_status(user, "automation", now)
    reporting = F.feature_status(user, "reporting", now)
    integrations = F.feature_status(user, "integrations", now)
    premium_28d = F.count_within(user, "premium_feature_attempted", 28, now)
    invoices = user.events.get("invoice_paid")
    revenue = invoices.props.sums.get("revenue") if invoices and invoices.props else None
    revenue_28d = revenue.total_since(F.instant_at(now).today - 27) if revenue is not None else 0.0

    # scoring.yaml, user
    score = 0.0
    if days_since_use <= 7:
        score += 30
    if frequency in ("medium", "heavy"):
        score += 20
    if reporting == "habitual":
        score += 10
    if automation == "habitual":
        score += 15
    if integrations in ("tried", "habitual"):
        score += 10
    if premium_28d >= 1:
        score += 15
    if revenue_28d >= 100:
        score += 10
    band = _band(score, 70, 40)

    # scoring.yaml, account
    account_score, account_band = 0.0, ""
    if account is not None:
        mrr = _number(account.traits.get("mrr"))
        seats = _number(account.traits.get("seats"))
        if mrr is not None and mrr >= 2000:
            account_score += 60
        if mrr is not None and mrr >= 500:
            account_score += 30
        if seats is not None and seats >= 25:
            account_score += 20
        if account.traits.get("plan") in ("team", "business"):
            account_score += 10
        account_band = _band(account_score, 60, 30)

    # segments.yaml: the first that holds
    if days_without_use >= 30:
        segment = "dormant"
    elif not activated:
        segment = "not_activated"
    elif days_activated <= 14:
        segment = "newly_activated"
    elif weeks_declining >= 2:
        segment = "declining"
    elif frequency == "heavy" and (automation == "habitual" or premium_28d >= 1):
        segment = "power"
    else:
        segment = "habitual"

    # triggers.yaml, in file order (the onboarding, rescue and upgrade programs are journeys now)
    fired: list[str] = []
    if segment == "dormant" and activated:
        fired.append("rescue_dormant")
    if segment == "dormant" and account_band == "high":
        fired.append("at_risk_account")
    return Verdict(segment, score, band, account_score, account_band, tuple(fired), ())


# -- agreement ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Agreement:
    users: int
    segments: dict[str, int]
    fired: dict[str, int]
    escalated: int


def check_agreement(rules: RuleSet, pop: Population) -> Agreement:
    """Both sides, on every user: the baseline only counts if it decides exactly what we decide."""
    mismatches: list[str] = []
    segments: dict[str, int] = {}
    fired: dict[str, int] = {}
    escalated = 0
    for user, account, previous in zip(pop.users, pop.accounts, pop.previous, strict=True):
        ours = verdict_of(evaluate(rules, user, account, previous, pop.now), rules)
        theirs = hand_written(user, account, pop.now)
        if ours != theirs:
            mismatches.append(f"{user.user_id}: evaluate {ours} != hand-written {theirs}")
        segments[ours.segment or ""] = segments.get(ours.segment or "", 0) + 1
        for rule in ours.fired:
            fired[rule] = fired.get(rule, 0) + 1
        escalated += len(ours.escalated)
    if mismatches:
        shown = "\n  ".join(mismatches[:5])
        raise AssertionError(
            f"hand-written predicates disagree with evaluate() on {len(mismatches)} users (did the "
            f"shipped rules change? bench/rules.py hand_written mirrors rules/*.yaml):\n  {shown}"
        )
    order = {s.id: i for i, s in enumerate(rules.segments)}
    return Agreement(
        len(pop.users),
        dict(sorted(segments.items(), key=lambda kv: order.get(kv[0], len(order)))),
        fired,
        escalated,
    )


# -- CPU: evaluations per second on one core ---------------------------------------------------


@dataclass(frozen=True)
class Timing:
    name: str
    evaluations: int
    seconds: float  # CPU seconds of this process, the best of the repeats

    @property
    def per_second(self) -> float:
        return self.evaluations / self.seconds

    @property
    def micros(self) -> float:
        return self.seconds / self.evaluations * 1e6


def run_evaluate(rules: RuleSet, pop: Population) -> int:
    for user, account, previous in zip(pop.users, pop.accounts, pop.previous, strict=True):
        evaluate(rules, user, account, previous, pop.now)
    return len(pop.users)


def run_hand_written(rules: RuleSet, pop: Population) -> int:
    for user, account in zip(pop.users, pop.accounts, strict=True):
        hand_written(user, account, pop.now)
    return len(pop.users)


OURS = "evaluate() (ours)"
BASELINE = "hand-written predicates (baseline)"


def _best(steps: list[tuple[str, Callable[[], int]]], repeats: int) -> list[Timing]:
    """Each step `repeats` times, round-robin; each step's best CPU time (time.process_time)."""
    best: dict[str, float] = {}
    counts: dict[str, int] = {}
    for _ in range(repeats):
        for name, step in steps:
            gc.collect()
            started = time.process_time()
            counts[name] = step()
            elapsed = time.process_time() - started
            best[name] = min(best.get(name, elapsed), elapsed)
    return [Timing(name, counts[name], best[name]) for name, _ in steps]


def throughput(rules: RuleSet, pop: Population, repeats: int) -> list[Timing]:
    return _best(
        [(OURS, lambda: run_evaluate(rules, pop)), (BASELINE, lambda: run_hand_written(rules, pop))],
        repeats,
    )


# -- where evaluate's time goes ----------------------------------------------------------------


@dataclass(frozen=True)
class _Prepared:
    """The inputs of each stage of `evaluate`, computed once so each stage can be timed alone."""

    contexts: list[Context]  # before scores and segment (what the facts are computed from)
    scored: list[dict[str, Value]]  # facts + score and bands (what the segment pass sees)
    segmented: list[dict[str, Value]]  # + segment (what the entries pass sees)
    # With segment and scores, sharing what computing the facts left in the context's memo, as
    # in evaluate (what next_check is computed from).
    full: list[Context]
    fired: list[list[str]]


def _prepare(rules: RuleSet, pop: Population) -> _Prepared:
    prepared = _Prepared([], [], [], [], [])
    for user, account in zip(pop.users, pop.accounts, strict=True):
        ctx = Context(user=user, now=pop.now, account=account)
        evaluation = evaluate(rules, user, account, None, pop.now)
        facts = dict(evaluation.facts)
        segmented = dict(facts)
        del facts["segment"]
        prepared.contexts.append(ctx)
        prepared.scored.append(facts)
        prepared.segmented.append(segmented)
        warmed = Context(user=user, now=pop.now, account=account)
        facts_for(rules, warmed)
        prepared.full.append(
            warmed.scored(
                evaluation.segment or "",
                evaluation.score,
                evaluation.band,
                evaluation.account_score,
                evaluation.account_band,
            )
        )
        prepared.fired.append(evaluation.fired)
    return prepared


def stages(rules: RuleSet, pop: Population, repeats: int) -> list[Timing]:
    """CPU time of each stage of `evaluate` over all users, each timed alone with the same inputs
    evaluate gives it (the code is evaluate's own calls, in its order). Best of `repeats`."""
    p = _prepare(rules, pop)

    def facts() -> int:
        # A fresh context each time, as evaluate makes: facts share sub-computations through it.
        for ctx in p.contexts:
            facts_for(rules, Context(user=ctx.user, now=ctx.now, account=ctx.account))
        return len(p.contexts)

    score_engine, segment_engine, entry_engine = (
        compiled(g) for g in (rules.score_rules, rules.segment_rules, rules.entry_rules)
    )

    def scores() -> int:
        for f in p.scored:
            score_engine.matches(f)
        return len(p.scored)

    def segments() -> int:
        for f in p.scored:
            segment_engine.matches(f)
        return len(p.scored)

    def entries() -> int:
        for f in p.segmented:
            entry_engine.matches(f)
        return len(p.segmented)

    def next_checks() -> int:
        for ctx, fired in zip(p.full, p.fired, strict=True):
            next_check(rules, ctx, fired)
        return len(p.full)

    return _best(
        [
            ("facts (a context, facts_for: every fact of every condition)", facts),
            ("durable_rules pass 1: score signals", scores),
            ("durable_rules pass 2: segments", segments),
            ("durable_rules pass 3: entries (triggers, journeys' when)", entries),
            ("next_check (changes_at of the tests time can flip + cooldowns)", next_checks),
        ],
        repeats,
    )


def profile(rules: RuleSet, pop: Population) -> None:
    import cProfile
    import pstats

    print("\nProfile of evaluate() over every user (cProfile; times inflated by profiling):")
    profiler = cProfile.Profile()
    profiler.runcall(run_evaluate, rules, pop)
    stats = pstats.Stats(profiler)
    stats.sort_stats("tottime").print_stats(15)
    stats.sort_stats("cumulative").print_stats(20)
