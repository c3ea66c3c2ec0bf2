"""Explain one user from live state: the stored usage state judged now, the segment record, the
ledger's decisions and what is next (`nudge rules explain --local | --table | --stack`).

The same ports production writes (usage store, segment store, ledger): on the deployed tables
through the DynamoDB adapters (bootstrap.explain), or the local stack's. An id merged into a
person (identify, alias) is followed to them, as the local user route does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from nudge.domain.evaluate import evaluate
from nudge.domain.upcoming import Upcoming, upcoming
from nudge.model.delivery import DeliveryRecord
from nudge.model.ledger import LedgerEntry
from nudge.model.segments import SegmentRecord
from nudge.ports import Ledger, SegmentStore, UsageStore
from nudge.rulebook.ruleset import RuleSet
from nudge.services.account_facts import AccountFactsCache
from nudge.services.erasure import chain_of
from nudge.services.rule_tests import Judged


@dataclass(frozen=True)
class ExplainPorts:
    usage: UsageStore
    segments: SegmentStore
    ledger: Ledger | None  # None: the ledger table was not given; decisions are not shown
    source: str  # where the state was read, in words


@dataclass(frozen=True)
class LiveExplanation:
    requested: str
    judged: Judged
    record: SegmentRecord | None  # None: never evaluated
    entries: list[LedgerEntry] = field(default_factory=list)
    delivery: DeliveryRecord = field(default_factory=DeliveryRecord)
    next: list[Upcoming] = field(default_factory=list)

    @property
    def person(self) -> str:
        return self.judged.user.user_id


def explain_live(rules: RuleSet, ports: ExplainPorts, user_id: str, now: datetime) -> LiveExplanation | None:
    """`user_id` (or the person it was merged into) judged at `now` with what the stores hold;
    None when the usage store has no state for them."""
    person = chain_of(user_id, ports.usage)[-1]
    stored = ports.usage.load_users([person]).get(person)
    if stored is None:
        return None
    user = stored.value
    account = AccountFactsCache(ports.usage, rules.reads_account_usage).get(user.account_id)
    loaded = ports.segments.load([person])[person]
    record = loaded.value if loaded.version else None
    evaluation = evaluate(rules, user, account, record.segments if record else None, now)
    judged = Judged(user, account, evaluation, now)
    entries: list[LedgerEntry] = []
    delivery = DeliveryRecord()
    if ports.ledger is not None:
        entries = ports.ledger.entries_of(person)
        delivery = ports.ledger.load(person, user.account_id, []).record.value
    return LiveExplanation(
        requested=user_id,
        judged=judged,
        record=record,
        entries=entries,
        delivery=delivery,
        next=upcoming(rules, evaluation.fired, record, entries, delivery, now),
    )
