"""`nudge report`: what marketers and CS look at, gathered from the tables (pure, then drawn).

    snapshot (usage states, segment records, accounts, ledger entries) + rules + now -> ReportData
    -> nudge.tools.report.html.render -> one self-contained HTML file

Segment membership over time comes from each user's segment history (entries and exits, as the
evaluator recorded them); retention from the weeks of usage each state keeps (12), so segment
quality covers the weeks whose fourth week after is also kept.
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from nudge.domain.flow import trigger_flows
from nudge.domain.journey_report import journey_reports
from nudge.domain.lift import lift
from nudge.domain.report_model import EscalationBucket, FunnelStep, QualityRow, ReportData, RuleMessages
from nudge.model.calendar import week_key
from nudge.model.decisions import SegmentState
from nudge.model.inapp import InAppMessage
from nudge.model.ledger import LedgerEntry
from nudge.model.segments import SegmentRecord
from nudge.model.state import AccountState, UserState
from nudge.rulebook.ruleset import RuleSet

FUNNEL = ("signed_up", "setup_completed", "project_created", "teammate_invited")
RETENTION_WEEKS = 4
MRR_BUCKETS = (
    (0, 1000, "under $1k"),
    (1000, 5000, "$1k to 5k"),
    (5000, 20000, "$5k to 20k"),
    (20000, None, "$20k and up"),
)


@dataclass(frozen=True)
class Snapshot:
    users: dict[str, UserState]
    records: dict[str, SegmentRecord]
    accounts: dict[str, AccountState]
    entries: list[LedgerEntry]
    # The in-app messages still stored, by message id (= decision id): what each user did with one.
    inbox: Mapping[str, InAppMessage] = field(default_factory=dict)


def _week_end(week: str) -> datetime:
    year, number = week.split("-W")
    monday = date.fromisocalendar(int(year), int(number), 1)
    return datetime(monday.year, monday.month, monday.day, tzinfo=UTC) + timedelta(days=7)


def _weeks_between(first: datetime, last: datetime) -> list[str]:
    """ISO weeks from the one holding `first` through the one holding `last`."""
    monday = first.date() - timedelta(days=first.date().weekday())
    weeks: list[str] = []
    while monday <= last.date():
        weeks.append(week_key(monday))
        monday += timedelta(days=7)
    return weeks


def segment_at(state: SegmentState, at: datetime) -> str | None:
    """The segment a user was in at `at`, from their recorded transitions."""
    current: str | None = None
    for transition in state.history:
        if transition.at > at:
            break
        current = transition.to or None
    return current


def _funnel(users: Iterable[UserState]) -> list[FunnelStep]:
    steps: list[FunnelStep] = []
    reached = list(users)
    previous: dict[str, datetime] = {}
    for index, event in enumerate(FUNNEL):
        times = {u.user_id: u.events[event].first for u in reached if event in u.events}
        reached = [u for u in reached if u.user_id in times]
        hours = [
            (times[uid] - previous[uid]).total_seconds() / 3600
            for uid in times
            if uid in previous and times[uid] >= previous[uid]
        ]
        median = statistics.median(hours) if hours and index else None
        steps.append(FunnelStep(event, len(reached), median))
        previous = times
    return steps


def _messages(
    rules: RuleSet, entries: Sequence[LedgerEntry], inbox: Mapping[str, InAppMessage]
) -> list[RuleMessages]:
    """Per one-shot rule, then per journey step in the journey's order, what happened to its
    decisions on each channel (a step naming [push, sms, email] has a row per channel chosen)."""
    groups: list[tuple[str, list[LedgerEntry]]] = []
    for trigger in rules.triggers:
        groups.append((trigger.id, [e for e in entries if e.decision.rule == trigger.id]))
    for journey in rules.journeys:
        mine = [e for e in entries if e.decision.journey == journey.id]
        for step in journey.steps:
            groups.append((f"{journey.id}:{step}", [e for e in mine if e.decision.step == step]))
    rows: list[RuleMessages] = []
    for label, mine in groups:
        for channel in sorted({e.decision.channel for e in mine}):
            rows.append(_channel_row(label, [e for e in mine if e.decision.channel == channel], inbox))
    return rows


def in_app_reached(message: InAppMessage) -> tuple[str, ...]:
    """How far the user took an in-app message, each step implying those before (an answer or a
    dismissal was seen first)."""
    return IN_APP_REACHED.get(message.status, ())


IN_APP_REACHED: dict[str, tuple[str, ...]] = {
    "seen": ("seen",),
    "clicked": ("seen", "clicked"),
    "answered": ("seen", "answered"),
    "dismissed": ("seen", "dismissed"),
}


def _channel_row(label: str, of: Sequence[LedgerEntry], inbox: Mapping[str, InAppMessage]) -> RuleMessages:
    suppressed = Counter(e.reason for e in of if e.outcome == "suppressed")
    sent = [e for e in of if e.status == "sent"]
    # An email's feedback is SES's, on its ledger entry; an in-app message's is its inbox item's.
    feedback = Counter(kind for e in sent for kind in e.feedback)
    answers: Counter[str] = Counter()
    for entry in sent:
        message = inbox.get(entry.decision_id)
        if message is not None:
            feedback.update(in_app_reached(message))
            if message.answer is not None:
                answers[message.answer] += 1
    return RuleMessages(
        rule=label,
        kind=of[0].decision.kind,
        channel=of[0].decision.channel,
        decisions=len(of),
        sent=sum(1 for e in of if e.outcome == "send" and e.status == "sent"),
        deferred=sum(1 for e in of if e.outcome == "deferred"),
        held_out=sum(1 for e in of if e.outcome == "held_out"),
        cancelled=sum(1 for e in of if e.outcome == "cancelled"),
        failed=sum(1 for e in of if e.outcome == "send" and e.status in ("failed", "unknown")),
        suppressed=dict(suppressed.most_common()),
        feedback=dict(sorted(feedback.items())),
        answers=dict(answers.most_common()),
    )


def _mrr(account: AccountState) -> float:
    value = account.trait_values().get("mrr")
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0


def _escalations(
    accounts: Mapping[str, AccountState], entries: Sequence[LedgerEntry]
) -> list[EscalationBucket]:
    escalated = {
        e.decision.account
        for e in entries
        if e.decision.channel == "cs" and e.outcome == "send" and e.decision.account
    }
    buckets: list[EscalationBucket] = []
    for low, high, label in MRR_BUCKETS:
        members = [a for a in accounts.values() if _mrr(a) >= low and (high is None or _mrr(a) < high)]
        buckets.append(
            EscalationBucket(label, len(members), sum(1 for a in members if a.account_id in escalated))
        )
    return buckets


def _adoption(
    rules: RuleSet, users: Mapping[str, UserState], segment_of: Mapping[str, str]
) -> tuple[list[str], dict[str, dict[str, float]]]:
    features = sorted(set(rules.plan.features))
    adoption: dict[str, dict[str, float]] = {}
    for segment in [s.id for s in rules.segments]:
        members = [users[u] for u, s in segment_of.items() if s == segment and u in users]
        if members:
            adoption[segment] = {
                f: sum(1 for u in members if f in u.features) / len(members) for f in features
            }
    return features, adoption


def _quality(
    rules: RuleSet, users: Mapping[str, UserState], records: Mapping[str, SegmentRecord], now: datetime
) -> tuple[list[QualityRow], float | None]:
    counts: dict[str, list[int]] = {s.id: [0, 0] for s in rules.segments}
    for user_id, record in records.items():
        user = users.get(user_id)
        if user is None:
            continue
        for week in _kept_weeks(user, now):
            later = week_key((_week_end(week) + timedelta(weeks=RETENTION_WEEKS - 1)).date())
            if _week_end(later) > now:
                continue  # the fourth week after has not ended yet
            segment = segment_at(record.segments, _week_end(week) - timedelta(microseconds=1))
            if segment is None or segment not in counts:
                continue
            stats = user.weeks.get(later)
            counts[segment][0] += 1
            counts[segment][1] += int(stats is not None and stats.sessions > 0)
    rows = [QualityRow(s, n, r) for s, (n, r) in counts.items() if n]
    total = sum(r.user_weeks for r in rows)
    return rows, (sum(r.retained for r in rows) / total if total else None)


def _kept_weeks(user: UserState, now: datetime) -> list[str]:
    """The weeks whose usage the state still holds (the oldest kept week on), each complete."""
    if not user.weeks or user.first_seen is None:
        return []
    oldest = min(user.weeks)
    start = max(_week_end(oldest) - timedelta(days=7), user.first_seen)
    return [w for w in _weeks_between(start, now) if w >= oldest and _week_end(w) <= now]


def build(rules: RuleSet, snapshot: Snapshot, now: datetime, source: str) -> ReportData:
    users, records, accounts, entries = snapshot.users, snapshot.records, snapshot.accounts, snapshot.entries
    starts = [h.at for r in records.values() for h in r.segments.history]
    weeks = _weeks_between(min(starts), now) if starts else []
    weekly: list[tuple[str, dict[str, int]]] = []
    flows: Counter[tuple[str, str]] = Counter()
    before: dict[str, str | None] = {}
    for week in weeks:
        end = min(_week_end(week), now) - timedelta(microseconds=1)
        at_end = {uid: segment_at(r.segments, end) for uid, r in records.items()}
        weekly.append((week, dict(Counter(s for s in at_end.values() if s))))
        for uid, segment in at_end.items():
            was = before.get(uid)
            if was and segment and was != segment:
                flows[(was, segment)] += 1
        before = at_end
    segment_of = {uid: r.segments.segment for uid, r in records.items() if r.segments.segment}
    features, adoption = _adoption(rules, users, segment_of)
    quality, overall = _quality(rules, users, records, now)
    instances = {uid: list(r.journeys.values()) for uid, r in records.items() if r.journeys}
    journey_flows, journeys = journey_reports(
        rules.journeys, instances, users, entries, rules.plan.meaningful, now
    )
    return ReportData(
        generated_at=now,
        source=source,
        users=len(users),
        accounts=len(accounts),
        segments=[s.id for s in rules.segments],
        weekly_sizes=weekly,
        flows=dict(flows),
        funnel=_funnel(users.values()),
        messages=_messages(rules, entries, snapshot.inbox),
        escalations=_escalations(accounts, entries),
        features=features,
        adoption=adoption,
        lift=lift(rules, entries, users, accounts, now),
        quality=quality,
        retained_overall=overall,
        rule_flows=trigger_flows(rules, entries, users, accounts, now),
        journey_flows=journey_flows,
        journeys=journeys,
    )


# ------------------------------------------------------------------------------ reading the tables
