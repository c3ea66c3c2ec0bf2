"""The backtest use case: replay a Segment history day by day with a simulated clock through the
services production runs, and count what would have gone out.

Each day, at its last instant:

    ingest the day's messages (the ingest use case)
    -> evaluate what changed: the users of each account that got a group call
       (`evaluate_account`), then every other user who sent messages (`evaluate_user`)
    -> sweep: every user whose time-based re-check came due (`sweep`)

over empty stores (the in-memory ones, wired by the CLI). So publish dedupe, the due index and
account loading are the evaluate service's own. What stands for the consumer side is only what
turns a published decision into a fire (`_Consumers`): dispatch dedupes on decision_id, and the
guardrails hold the rule's own cooldown (or once). Other guardrails (caps, quiet hours, consent,
priority) are not applied.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Protocol

from nudge.model.calendar import week_key
from nudge.model.decisions import Decision
from nudge.model.messages import Group, Message
from nudge.model.outcomes import SweepResult, UserOutcome
from nudge.model.queue import DecisionBatch
from nudge.ports import DecisionPublisher, SegmentStore, UsageStore
from nudge.rulebook.ruleset import RuleSet
from nudge.services.evaluate import AccountFactsCache, RulesPorts, evaluate_account, evaluate_user
from nudge.services.rule_tests import replay
from nudge.services.sweep import sweep


class KeptBatches(DecisionPublisher, Protocol):
    """A decision queue that keeps what was published, in order (the in-memory one does)."""

    batches: list[DecisionBatch]


@dataclass(frozen=True)
class BacktestStores:
    """Empty stores to replay into: usage state, segment records (and due index), decision queue."""

    usage: UsageStore
    segments: SegmentStore
    publisher: KeptBatches


@dataclass(frozen=True)
class Fire:
    at: datetime
    week: str
    rule: str  # trigger id, with " (escalate)" for an escalate_when hand-off
    action: str
    user: str
    account: str | None
    segment: str | None


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

    @property
    def weeks(self) -> list[str]:
        return list(self.sizes)

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


class _Consumers:
    """What stands for the consumer side of the decision queue.

    A decision counts when its decision_id is new overall (dispatch dedupes on it: an account
    escalation raised by two of its users is one hand-off), and the rule's own cooldown has passed
    since it last counted for that user (or account): decision ids change with fixed cooldown
    windows, and the guardrails hold the "not again for this long" the marketer wrote.
    """

    def __init__(self, rules: RuleSet) -> None:
        self.specs = rules.spec_by_rule  # triggers', and journeys' as rules
        self.published: set[str] = set()
        self.last_sent: dict[tuple[str, str], datetime] = {}  # (rule label, user or account) -> last counted

    def counted(self, decision: Decision, account: str | None, now: datetime) -> str | None:
        """The rule's label when the decision would go out at `now` (None: it would not)."""
        if decision.decision_id in self.published:
            return None
        self.published.add(decision.decision_id)
        spec = self.specs[decision.rule]
        handoff = decision.action == "escalate" and spec.action != "escalate"
        label = f"{decision.rule} (escalate)" if handoff else decision.rule
        subject = (account or decision.user) if decision.action == "escalate" else decision.user
        previous = self.last_sent.get((label, subject))
        if previous is not None and (spec.once or now - previous < spec.cooldown):
            return None
        self.last_sent[(label, subject)] = now
        return label


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

    Each day's messages are ingested at the day's end; then the members of accounts that got a
    group call and the users who sent messages are evaluated, then the sweep evaluates everyone
    whose `next_check_at` has passed. The decisions the evaluate service publishes count as
    `_Consumers` says. progress(done, total) is called after each day.
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
    consumers = _Consumers(rules)
    segments: dict[str, str | None] = {}  # user -> segment at their last evaluation
    read = 0  # batches of the queue already consumed
    total = (days[-1] - days[0]).days + 1
    for offset in range(total):
        day = days[0] + timedelta(days=offset)
        now = _day_end(day)
        week = week_key(day)
        todays = sorted(by_day.get(day, []), key=lambda m: m.timestamp or now)
        result.refused += replay(stores.usage, todays, rules, now)
        _evaluate_changes(rules, ports, todays, now)
        sweep(rules, ports, now)

        # In user order, whichever service evaluated whom: the order breaks ties among transitions
        # (most_common keeps the first seen) and picks the user an account's escalation counts for.
        taken = [o for o in outcomes.take() if o.evaluated]
        result.evaluations += len(taken)
        evaluated = {o.user_id: o for o in sorted(taken, key=lambda o: o.user_id)}
        for user_id, outcome in evaluated.items():
            segments[user_id] = outcome.segment
            if outcome.entered is not None:
                result.entries.setdefault(week, Counter())[outcome.entered] += 1
                result.transitions[(outcome.exited or "(new)", outcome.entered)] += 1
        batches = stores.publisher.batches[read:]
        read += len(batches)
        for batch in sorted(batches, key=lambda b: b.user):
            for decision in batch.decisions:
                label = consumers.counted(decision, batch.account, now)
                if label is not None:
                    segment = evaluated[batch.user].segment
                    result.fires.append(
                        Fire(now, week, label, decision.action, batch.user, batch.account, segment)
                    )

        if day.weekday() == 6 or offset == total - 1:
            result.sizes[week] = Counter(s or "(none)" for s in segments.values())
        if progress is not None:
            progress(offset + 1, total)
    replayed = [m for day_messages in by_day.values() for m in day_messages]
    result.users = len(stores.usage.load_users(sorted({m.identity for m in replayed})))
    groups = sorted({m.groupId for m in replayed if isinstance(m, Group)})
    result.accounts = sum(1 for account_id in groups if stores.usage.load_account(account_id) is not None)
    return result


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
