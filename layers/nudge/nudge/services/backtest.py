"""The backtest use case: replay a Segment history day by day with a simulated clock through the
services production runs, and predict what would really have gone out.

Each day:

    the deferrals (quiet hours) coming due during the day: a sweep at each one's time, as the
    sweep production runs every few minutes would, and dispatch of what it publishes
    then, at the day's last instant:
    ingest the day's messages (the ingest use case)
    -> evaluate what changed: the users of each account that got a group call
       (`evaluate_account`), then every other user who sent messages (`evaluate_user`)
    -> sweep: every user whose time-based re-check came due (`sweep`)
    -> dispatch every decision published: the guardrails and the ledger (`dispatch`)

over empty stores (the in-memory ones, wired by the CLI). Publish dedupe, the due index and account
loading are the evaluate service's own; every guardrail is dispatch's own: one implementation of
caps, cooldowns, priority (one message per evaluation), quiet hours (deferred and re-judged when
they end, or dropped), consent and unsubscribes, the control group and holdouts, and one open
escalation per account (which holds marketing back), over an in-memory ledger. So each decision's
outcome is what production would record: sent, held out, still deferred, cancelled (the rule
stopped holding while it waited), or suppressed with the reason dispatch gives.

Judged at a day's end, a decision meets the quiet hours of that instant in the user's timezone
(e.g. 00:59 in Berlin): a deferred one is sent when they end; a rule that drops in quiet hours
loses it. Messages come in a day at a time, so a user's evaluation sees all of the day's events.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from typing import Protocol

from nudge.model.calendar import week_key
from nudge.model.decisions import Decision
from nudge.model.journeys import JourneyInstance
from nudge.model.messages import Group, Message
from nudge.model.outcomes import SweepResult, UserOutcome
from nudge.model.queue import DecisionBatch
from nudge.model.segments import due_time
from nudge.ports import DecisionPublisher, DeliveryRouter, Ledger, SegmentStore, UsageStore
from nudge.rulebook.ruleset import RuleSet
from nudge.services.account_facts import AccountFactsCache
from nudge.services.dispatch import DispatchPorts, DispatchResult, dispatch
from nudge.services.evaluate import (
    RulesPorts,
    SegmentRechecks,
    evaluate_account,
    evaluate_user,
)
from nudge.services.rule_tests import replay
from nudge.services.sweep import sweep


class KeptBatches(DecisionPublisher, Protocol):
    """A decision queue that keeps what was published, in order (the in-memory one does)."""

    batches: list[DecisionBatch]


@dataclass(frozen=True)
class BacktestStores:
    """Empty stores to replay into: usage state, segment records (and due index), decision queue,
    the ledger dispatch judges against, and the channel queues it routes sends to."""

    usage: UsageStore
    segments: SegmentStore
    publisher: KeptBatches
    ledger: Ledger
    router: DeliveryRouter


@dataclass(frozen=True)
class Fire:
    """One decision a rule made, first judged at `at`, and what finally came of it."""

    at: datetime
    week: str
    rule: str  # trigger id, with " (escalate)" for an escalate_when hand-off
    action: str
    user: str
    account: str | None
    segment: str | None
    decision_id: str = ""
    # send | held_out | deferred (still waiting at the end) | cancelled | suppressed
    outcome: str = "send"
    reason: str = ""  # dispatch's reason: cap_email_day, quiet_hours, cooldown, rule_holdout, ...
    settled_at: datetime | None = None  # when the outcome was decided (a deferred one: later)
    # The channel dispatch chose (the first of the rule's the user can receive); "cs" for escalations.
    channel: str = ""

    @property
    def sent(self) -> bool:
        return self.outcome == "send"


@dataclass
class BacktestResult:
    first_day: date
    last_day: date
    messages: int = 0
    refused: list[str] = field(default_factory=list)
    evaluations: int = 0
    fires: list[Fire] = field(default_factory=list)
    sizes: dict[str, Counter[str]] = field(default_factory=dict)  # ISO week -> segment -> users at its end
    entries: dict[str, Counter[str]] = field(default_factory=dict)  # ISO week -> segment -> users entering
    transitions: Counter[tuple[str, str]] = field(default_factory=Counter)
    users: int = 0
    accounts: int = 0
    # Each user's journey instances at the end (their segment records): the journeys' tallies.
    journeys: dict[str, list[JourneyInstance]] = field(default_factory=dict)

    @property
    def weeks(self) -> list[str]:
        return list(self.sizes)

    @property
    def sent(self) -> list[Fire]:
        return [f for f in self.fires if f.sent]

    def final_sizes(self) -> Counter[str]:
        return self.sizes[self.weeks[-1]] if self.sizes else Counter()


class _Outcomes:
    """The evaluate service's metrics port, kept: each user it evaluated and what came of it
    (segment, transition recorded), which neither the stores nor the queue tell."""

    def __init__(self) -> None:
        self.kept: list[UserOutcome] = []

    def outcome(self, outcome: UserOutcome) -> None:
        self.kept.append(outcome)

    def swept(self, result: SweepResult) -> None:
        pass

    def take(self) -> list[UserOutcome]:
        taken, self.kept = self.kept, []
        return taken


class _Judged:
    """Dispatch's verdicts, kept per decision: the first makes the fire, a later one (a deferral
    judged again, or cancelled) settles its outcome."""

    def __init__(self, rules: RuleSet) -> None:
        self.specs = rules.spec_by_rule  # triggers', and journeys' as rules
        self.fires: list[Fire] = []
        self.index: dict[str, int] = {}  # decision id -> its fire
        self.waiting: set[datetime] = set()  # when deferred decisions come due

    def label(self, decision: Decision) -> str:
        handoff = decision.action == "escalate" and self.specs[decision.rule].action != "escalate"
        return f"{decision.rule} (escalate)" if handoff else decision.rule

    def record(
        self, result: DispatchResult, batch: DecisionBatch, segment: str | None, now: datetime
    ) -> None:
        for verdict in result.verdicts:
            d = verdict.decision
            if verdict.deliver_at is not None:
                self.waiting.add(due_time(verdict.deliver_at) or verdict.deliver_at)
            known = self.index.get(d.decision_id)
            if known is not None:
                self.fires[known] = replace(
                    self.fires[known], outcome=verdict.outcome, reason=verdict.reason, settled_at=now
                )
                continue
            self.index[d.decision_id] = len(self.fires)
            label, week = self.label(d), week_key(now.date())
            self.fires.append(
                Fire(
                    at=now,
                    week=week,
                    rule=label,
                    action=d.action,
                    user=batch.user,
                    account=batch.account,
                    segment=segment,
                    decision_id=d.decision_id,
                    outcome=verdict.outcome,
                    reason=verdict.reason,
                    settled_at=now,
                    channel=d.channel,
                )
            )
        for decision_id in result.cancelled:
            known = self.index.get(decision_id)
            if known is not None:
                self.fires[known] = replace(
                    self.fires[known], outcome="cancelled", reason="no_longer_holds", settled_at=now
                )

    def due_between(self, after: datetime, until: datetime) -> list[datetime]:
        """The deferrals' due times in (after, until], taken off the list."""
        due = sorted(t for t in self.waiting if after < t <= until)
        self.waiting -= set(due)
        return due


def _day_end(day: date) -> datetime:
    # The last instant of the UTC day: "within 1d" and today's counts still mean this day.
    return datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(days=1) - timedelta(microseconds=1)


def backtest(
    rules: RuleSet,
    messages: Sequence[Message],
    stores: BacktestStores,
    progress: Callable[[int, int], None] | None = None,
) -> BacktestResult:
    """Replay `messages` day by day into `stores` (empty), as production would have run them.

    Each day's deferrals are swept and dispatched at their time; then the day's messages are
    ingested at its end, the members of accounts that got a group call and the users who sent
    messages are evaluated, the sweep evaluates everyone whose `next_check_at` has passed, and
    every decision published is dispatched. progress(done, total) is called after each day.
    """
    by_day: dict[date, list[Message]] = defaultdict(list)
    for message in messages:
        if message.timestamp is not None:
            by_day[message.timestamp.astimezone(UTC).date()].append(message)
    days = sorted(by_day)
    if not days:
        raise ValueError("no messages with a timestamp to replay")
    result = BacktestResult(first_day=days[0], last_day=days[-1], messages=len(messages))
    outcomes = _Outcomes()
    ports = RulesPorts(stores.usage, stores.segments, stores.publisher, outcomes)
    dispatching = DispatchPorts(stores.ledger, stores.usage, stores.router, SegmentRechecks(stores.segments))
    judged = _Judged(rules)
    segments: dict[str, str | None] = {}  # user -> segment at their last evaluation
    read = 0  # batches of the queue already dispatched

    def run(now: datetime, todays: Sequence[Message]) -> dict[str, UserOutcome]:
        """Evaluate what changed and what is due at `now`, then dispatch what was published."""
        nonlocal read
        if todays:
            _evaluate_changes(rules, ports, todays, now)
        sweep(rules, ports, now)
        # In user order, whichever service evaluated whom: the order breaks ties among transitions
        # (most_common keeps the first seen) and picks the user an account's escalation counts for.
        taken = [o for o in outcomes.take() if o.evaluated]
        result.evaluations += len(taken)
        evaluated = {o.user_id: o for o in sorted(taken, key=lambda o: o.user_id)}
        for user_id, evaluation in evaluated.items():
            segments[user_id] = evaluation.segment
        batches = stores.publisher.batches[read:]
        read += len(batches)
        for batch in sorted(batches, key=lambda b: b.user):
            outcome = evaluated.get(batch.user)
            segment = outcome.segment if outcome is not None else segments.get(batch.user)
            judged.record(dispatch(batch, rules, dispatching, now), batch, segment, now)
        return evaluated

    total = (days[-1] - days[0]).days + 1
    for offset in range(total):
        day = days[0] + timedelta(days=offset)
        now = _day_end(day)
        week = week_key(day)
        for due in judged.due_between(now - timedelta(days=1), now - timedelta(microseconds=1)):
            for outcome in run(due, ()).values():
                _count_transition(result, week, outcome)
        todays = sorted(by_day.get(day, []), key=lambda m: m.timestamp or now)
        result.refused += replay(stores.usage, todays, rules, now)
        for outcome in run(now, todays).values():
            _count_transition(result, week, outcome)
        if day.weekday() == 6 or offset == total - 1:
            result.sizes[week] = Counter(s or "(none)" for s in segments.values())
        if progress is not None:
            progress(offset + 1, total)
    result.fires = judged.fires
    replayed = [m for day_messages in by_day.values() for m in day_messages]
    identities = sorted({m.identity for m in replayed})
    result.users = len(stores.usage.load_users(identities))
    records = stores.segments.load(identities)
    result.journeys = {u: list(r.value.journeys.values()) for u, r in records.items() if r.value.journeys}
    groups = sorted({m.groupId for m in replayed if isinstance(m, Group)})
    result.accounts = sum(1 for account_id in groups if stores.usage.load_account(account_id) is not None)
    return result


def _count_transition(result: BacktestResult, week: str, outcome: UserOutcome) -> None:
    if outcome.entered is not None:
        result.entries.setdefault(week, Counter())[outcome.entered] += 1
        result.transitions[(outcome.exited or "(new)", outcome.entered)] += 1


def _evaluate_changes(rules: RuleSet, ports: RulesPorts, todays: Sequence[Message], now: datetime) -> None:
    """Evaluate what the day's messages changed, as the stream evaluator would: the users of each
    account that got a group call (its traits may have changed), then each other user who sent
    messages. Each user once: for a user of such an account, the second evaluation production
    makes (for their own write) would decide nothing new."""
    accounts = AccountFactsCache(ports.usage, rules.reads_account_usage)
    done: set[str] = set()
    for account_id in sorted({m.groupId for m in todays if isinstance(m, Group)}):
        outcome = evaluate_account(account_id, rules, ports, now, accounts=accounts)
        done.update(o.user_id for o in outcome.outcomes)
    touched = sorted({m.identity for m in todays} - done)
    users = ports.usage.load_users(touched)
    for user_id in touched:
        loaded = users.get(user_id)
        if loaded is not None:
            evaluate_user(loaded.value, rules, ports, now, state_version=loaded.version, accounts=accounts)
