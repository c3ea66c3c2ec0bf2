"""What `nudge demo` prints at the end, and the tallies and reads it is made from.

Summary tables end the demo, read back from the table itself rather than from what was sent:
usage, lifecycle segment sizes at the end of each ISO week, the most frequent transitions, and
the decisions put on the decision queue, by rule, with an audit of every user's sends against
every cap. The replay (``nudge.tools.local.demo``) keeps the tallies here as it goes
(``SendStats``, ``ReplayStats``) and calls the ``print_*`` functions once it is done.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table

from nudge.adapters.dynamo import codec
from nudge.adapters.dynamo.suppression import record_of
from nudge.domain.lift import LiftRow
from nudge.domain.verdicts import cap_breaches, choices, user_zone
from nudge.model.calendar import week_key
from nudge.model.delivery import Sent
from nudge.model.journeys import HOLDOUT
from nudge.model.segments import SegmentRecord
from nudge.model.state import UserState
from nudge.model.suppression import Suppression
from nudge.rulebook.loader import load_rules
from nudge.rulebook.ruleset import SEGMENTS_FILE, SegmentsFile
from nudge.rulebook.yamlfile import load_yaml, validate
from nudge.tools.local.environment import SUPPRESSION_TABLE
from nudge.tools.local.stack import LocalStack
from nudge.tools.local.streams import PumpStats
from nudge.tools.samples.generator import SampleHistory


@dataclass
class SendStats:
    accepted: int = 0
    rejected: int = 0
    requests: int = 0
    retries: int = 0
    failed_requests: int = 0
    rejections: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, accepted: int, errors: Sequence[dict[str, Any]], retries: int, failed: bool) -> None:
        with self.lock:
            self.requests += 1
            self.accepted += accepted
            self.rejected += len(errors)
            self.retries += retries
            self.failed_requests += int(failed)
            for error in errors:
                key = str(error.get("field") or "?")
                self.rejections[key] = self.rejections.get(key, 0) + 1


@dataclass
class Census:
    users: int = 0
    accounts: int = 0
    activated: int = 0
    active_this_week: int = 0
    events: int = 0


def census(stack: LocalStack, week: str) -> Census:
    """Count what the usage table holds (a scan: fine for a demo, never done by the Lambdas)."""
    result = Census()
    client = stack.store.client
    kwargs: dict[str, Any] = {"TableName": stack.store.table}
    while True:
        page = client.scan(**kwargs)
        for item in page.get("Items", []):
            pk, sk = item["pk"]["S"], item["sk"]["S"]
            if pk.startswith("USER#") and sk == "STATE":
                state = codec.decode(item["state"]["B"], UserState)
                result.users += 1
                result.activated += int("activated" in state.milestones)
                result.active_this_week += int(week in state.weeks)
                result.events += sum(state.event_counts.values())
            elif pk.startswith("ACCOUNT#") and sk == "TRAITS":
                result.accounts += 1
        if "LastEvaluatedKey" not in page:
            return result
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def segment_ids(rules_dir: Path) -> list[str]:
    """The lifecycle segments of the rule set, in their order (read, not compiled)."""

    return [segment.id for segment in validate(load_yaml(rules_dir / SEGMENTS_FILE), SegmentsFile).segments]


def segment_records(stack: LocalStack, user_ids: Iterable[str]) -> list[SegmentRecord]:
    """The evaluator's records of these users (BatchGetItem by key: a scan of the table would read
    the rollups too, tens of thousands of items by the end of the replay)."""
    found = stack.segments.load(list(user_ids))
    return [record.value for record in found.values() if record.version]


def segment_sizes(records: Iterable[SegmentRecord]) -> Counter[str]:
    return Counter(record.segments.segment for record in records if record.segments.segment)


@dataclass
class WeekSample:
    week: str  # the ISO week that just ended (or "now" for the last, partial one)
    sizes: Counter[str]


@dataclass
class ReplayStats:
    """What the stream pump and the sweep did during the replay."""

    seconds: float = 0.0
    stream: PumpStats = field(default_factory=PumpStats)
    sweeps: int = 0
    swept_users: int = 0
    samples: list[WeekSample] = field(default_factory=list)


@dataclass(frozen=True)
class Resent:
    """The last batch posted a second time."""

    messages: int
    status: int
    body: dict[str, Any]
    unchanged: bool


def print_summary(
    console: Console,
    history: SampleHistory,
    counted: Census,
    stats: SendStats,
    sent: int,
    resent: Resent,
    now: datetime,
    replay_seconds: float,
    total_seconds: float,
    replay_stats: ReplayStats,
) -> None:
    table = Table(title=f"Nudge demo - simulated now {now:%Y-%m-%d %H:%M} UTC", show_lines=False)
    table.add_column("", style="bold")
    table.add_column("value", justify="right")
    table.add_column("note")
    table.add_row("users", f"{counted.users:,}", f"generated {len(history.users):,}")
    table.add_row("accounts", f"{counted.accounts:,}", f"generated {len(history.accounts):,}")
    table.add_row("activated users", f"{counted.activated:,}", "milestone 'activated' reached")
    table.add_row("active this week", f"{counted.active_this_week:,}", f"ISO week of {now:%Y-%m-%d}")
    table.add_row("messages sent", f"{sent:,}", f"in {stats.requests:,} gzip batch requests")
    table.add_row(
        "events accepted", f"{stats.accepted:,}", f"{counted.events:,} usage events counted in state"
    )
    rejected_note = ", ".join(f"{k}: {v}" for k, v in sorted(stats.rejections.items())) or "-"
    table.add_row("events rejected", f"{stats.rejected:,}", rejected_note)
    table.add_row("503 retries", f"{stats.retries:,}", f"{stats.failed_requests} requests failed for good")
    verdict = "[green]no change[/green]" if resent.unchanged else "[red]STATE CHANGED[/red]"
    table.add_row(
        "duplicates re-sent",
        f"{resent.messages:,}",
        f"last batch posted again: {verdict} (HTTP {resent.status}, state identical)",
    )
    stream = replay_stats.stream
    table.add_row(
        "usage changes evaluated",
        f"{stream.delivered:,}",
        f"stream records to the evaluate function in {stream.invocations:,} batches; "
        f"{stream.filtered_out:,} others filtered out",
    )
    table.add_row(
        "sweeps",
        f"{replay_stats.sweeps:,}",
        f"{replay_stats.swept_users:,} users re-checked without a new event (dormant, weeks closing)",
    )
    failed_note = f"{stream.retries} retries, {stream.bisections} bisections"
    table.add_row("stream batches given up", f"{stream.failed_batches:,}", failed_note)
    table.add_row("replay time", f"{replay_seconds:,.1f} s", f"{total_seconds:,.1f} s with start-up")
    table.add_row(
        "evaluation time",
        f"{replay_stats.seconds:,.1f} s",
        "of the replay: stream pump + evaluate, sweep (moto, 2 containers)",
    )
    rate = sent / replay_seconds if replay_seconds else 0.0
    table.add_row("throughput", f"{rate:,.0f} events/s", "HTTP -> handler -> DynamoDB (moto) -> evaluate")
    console.print(table)


def print_segments(
    console: Console,
    segments: Sequence[str],
    samples: Sequence[WeekSample],
    histories: Sequence[SegmentRecord],
) -> None:
    """Segment sizes at the end of each ISO week, and the transitions made during it."""
    per_week: Counter[str] = Counter(
        week_key(t.at.date()) for record in histories for t in record.segments.history if t.from_ is not None
    )
    # Fits 80 columns (a pipe, CI): no inner rules, two-line headers, and the week is never cut.
    table = Table(
        title="Lifecycle segments at the end of each ISO week (users)",
        box=box.SIMPLE_HEAD,
        collapse_padding=True,
        pad_edge=False,
    )
    table.add_column("ISO week", style="bold", no_wrap=True, min_width=8)
    for segment in segments:
        words = segment.split("_")
        table.add_column("\n".join(words), justify="right", min_width=max(map(len, words)))
    table.add_column("trans-\nitions", justify="right")
    for sample in samples:
        cells = [
            f"{sample.sizes.get(segment, 0):,}" if sample.sizes.get(segment) else "-" for segment in segments
        ]
        moved = per_week.get(sample.week, 0) if sample.week != "now" else 0
        style = "bold" if sample.week == "now" else None
        table.add_row(sample.week, *cells, f"{moved:,}" if sample.week != "now" else "", style=style)
    console.print(table)


def print_transitions(console: Console, histories: Sequence[SegmentRecord], top: int = 12) -> None:
    counted: Counter[tuple[str, str]] = Counter(
        (t.from_ or "(first evaluation)", t.to) for record in histories for t in record.segments.history
    )
    table = Table(title=f"Top segment transitions (of {sum(counted.values()):,})")
    table.add_column("from")
    table.add_column("to")
    table.add_column("users", justify="right")
    for (before, after), count in counted.most_common(top):
        table.add_row(before.replace("_", " "), after.replace("_", " "), f"{count:,}")
    console.print(table)


def print_decisions(console: Console, stack: LocalStack) -> int:
    """What the guardrails did with every decision (the ledger), what was sent, and an audit that
    no user's sends broke a cap. Returns the number of cap breaches (0 is the only good answer)."""

    entries = stack.decisions()
    rules = load_rules(stack.rules_dir)
    by_rule: dict[str, Counter[str]] = {}
    reasons: Counter[str] = Counter()
    for entry in entries:
        counts = by_rule.setdefault(entry.decision.rule, Counter())
        counts["decisions"] += 1
        outcome = entry.status if entry.outcome == "send" else entry.outcome
        counts[outcome] += 1
        if entry.outcome in ("suppressed", "cancelled") or (
            entry.outcome == "send" and entry.status != "sent"
        ):
            reasons[f"{entry.outcome}: {entry.reason or entry.status}"] += 1
    table = Table(title=f"Decisions through the guardrails, by rule ({len(entries):,} decisions)")
    # Short headers: the demo's terminal may be 80 columns wide.
    headers = {
        "rule": "rule",
        "decisions": "all",
        "sent": "sent",
        "suppressed": "supp.",
        "deferred": "defer.",
    }
    headers |= {"cancelled": "canc.", "held_out": "held", "other": "other"}
    for key, header in headers.items():
        table.add_column(header, justify="left" if key == "rule" else "right", no_wrap=key == "rule")
    for rule, c in sorted(by_rule.items(), key=lambda item: -item[1]["decisions"]):
        shown = ("sent", "suppressed", "deferred", "cancelled", "held_out")
        other = c["decisions"] - sum(c[k] for k in shown)
        table.add_row(rule, f"{c['decisions']:,}", *(f"{c[k]:,}" for k in shown), f"{other:,}")
    table.caption = (
        "supp. = suppressed, canc. = cancelled (deferred, then the rule stopped holding), held = held out"
    )
    console.print(table)
    why = Table(title="Not sent, by reason")
    why.add_column("outcome: reason")
    why.add_column("decisions", justify="right")
    for reason, count in reasons.most_common():
        why.add_row(reason, f"{count:,}")
    console.print(why)

    sent = stack.outbox()
    channels = Counter(m["channel"] for m in sent)
    cases = stack.escalations()
    per_channel = ", ".join(f"{n:,} {c}" for c, n in sorted(channels.items())) or "none"
    # In-app messages go to the users' inboxes, not an outbox: counted from the ledger.
    in_app = sum(1 for e in entries if e.decision.channel == "in_app" and e.status == "sent")
    console.print(
        f"Sent: {len(sent):,} messages ({per_channel}); {in_app:,} in-app messages and surveys "
        f"put in inboxes; {len(cases):,} CS escalations."
    )
    fallback = (
        rules.guardrails.spec.quiet_hours.fallback_timezone if rules.guardrails.spec.quiet_hours else "UTC"
    )
    sends: dict[str, list[Sent]] = {}
    for entry in entries:
        if entry.outcome == "send" and entry.status in ("sent", "sending", "unknown", "queued"):
            d = entry.decision
            spec = rules.spec_by_rule.get(d.rule)  # a trigger's or a journey's; None: a rule removed
            journey = choices(spec, rules.guardrails).journey if spec is not None else d.rule
            sends.setdefault(d.user, []).append(
                Sent(at=entry.recorded_at, channel=d.channel, rule=d.rule, journey=journey)
            )
    users = stack.store.load_users(sorted(sends)) if sends else {}
    breaches = 0
    for user_id, user_sends in sends.items():
        traits = users[user_id].value.trait_values() if user_id in users else {}
        found = cap_breaches(
            [s for s in user_sends if s.channel != "cs"], rules.guardrails, user_zone(traits, fallback)
        )
        breaches += len(found)
        for breach in found[:3]:
            console.print(f"[red]cap broken for {user_id}: {breach}[/red]")
    if not breaches:
        console.print(f"Caps audit: no user's sends break any cap ({len(sends):,} users messaged).")
    return breaches


def print_journeys(console: Console, stack: LocalStack, histories: Sequence[SegmentRecord]) -> None:
    """Each journey's funnel: entered (held out), how many reached each step (a branch's arms show
    which way its users went), where the running ones wait, messages sent per step (the ledger), and
    how the others ended (converted, exited, completed)."""
    rules = load_rules(stack.rules_dir)
    if not rules.journeys:
        return
    sent: Counter[tuple[str, str]] = Counter(
        (e.decision.journey, e.decision.step or "")
        for e in stack.decisions()
        if e.decision.journey and e.outcome == "send" and e.status == "sent"
    )
    for journey in rules.journeys:
        instances = [i for r in histories for i in r.journeys.values() if i.journey == journey.id]
        held = sum(1 for i in instances if i.variant == HOLDOUT)
        ended = Counter(i.reason for i in instances if not i.live)
        waiting = Counter(i.step for i in instances if i.live and i.variant != HOLDOUT)
        reached = Counter(step for i in instances for step in set(i.path))
        table = Table(
            title=f"Journey {journey.id}: {len(instances):,} entered ({held:,} held out), "
            f"{ended['converted']:,} converted, {ended['exited']:,} exited, {ended['completed']:,} completed"
        )
        table.add_column("step", no_wrap=True)
        table.add_column("kind")
        table.add_column("reached", justify="right")
        table.add_column("waiting now", justify="right")
        table.add_column("sent", justify="right")
        for step in journey.steps.values():
            shown = f"{sent[(journey.id, step.id)]:,}" if step.kind in ("send", "escalate") else ""
            table.add_row(step.id, step.kind, f"{reached[step.id]:,}", f"{waiting[step.id]:,}", shown)
        console.print(table)


def print_lift(console: Console, rows: Sequence[LiftRow]) -> None:
    """Each rule's lift against its held-out users (goals, charts and warnings are in the report)."""
    table = Table(title="Lift: users reaching the rule's goal, sent vs held out")
    for column in ("rule", "sent", "held out", "diff. [95% interval]", "verdict"):
        table.add_column(column, justify="left" if column in ("rule", "verdict") else "right")
    for row in rows:
        interval, difference = row.interval, row.difference
        diff = "-"
        if difference is not None and interval is not None and not row.warning:
            diff = f"{difference:+.0%} [{interval[0]:+.0%}, {interval[1]:+.0%}]"
        verdict = "too few to say" if row.warning else row.verdict
        table.add_row(
            row.rule,
            f"{row.treated_reached}/{row.treated}",
            f"{row.control_reached}/{row.control}",
            diff,
            verdict,
        )
    console.print(table)


FEEDBACK_COLUMNS = (
    ("delivered", "deliv."),
    ("bounced", "bounced"),
    ("complained", "compl."),
    ("opened", "opened"),
    ("clicked", "clicked"),
)


def print_feedback(console: Console, stack: LocalStack) -> None:
    """SES's feedback on the email sent (the mailbox simulator's outcomes for the sample's simulator
    addresses, readers' opens and clicks), per rule, and the addresses it put on the suppression list."""

    by_rule: dict[str, Counter[str]] = {}
    for entry in stack.decisions():
        if entry.decision.channel == "email" and entry.outcome == "send" and entry.status == "sent":
            counts = by_rule.setdefault(entry.decision.rule, Counter())
            counts["messages"] += 1  # not "sent": SES's Send event is a feedback kind of that name
            counts.update(entry.feedback.keys())
    table = Table(
        title="Email feedback from SES, by rule (bounces, complaints per sent; opens, clicks per delivered)"
    )
    table.add_column("rule", no_wrap=True)
    table.add_column("sent", justify="right")
    for _, header in FEEDBACK_COLUMNS:
        table.add_column(header, justify="right")
    for rule, c in sorted(by_rule.items(), key=lambda item: -item[1]["messages"]):
        cells = []
        for kind, _ in FEEDBACK_COLUMNS:
            whole = c["delivered"] if kind in ("opened", "clicked") else c["messages"]
            share = c[kind] / whole if whole else 0.0
            # Short cells for an 80-column terminal: a decimal only where it carries information.
            cells.append(
                f"{c[kind]:,} {share:.0%}" if share == 0 or share >= 0.1 else f"{c[kind]:,} {share:.1%}"
            )
        table.add_row(rule, f"{c['messages']:,}", *cells)
    console.print(table)
    reasons = Counter(record.reason for record in suppression_records(stack))
    listed = ", ".join(f"{n:,} {reason}" for reason, n in sorted(reasons.items())) or "none"
    console.print(f"Suppression list: {listed} (SES feedback and unsubscribes; checked before every send).")


def suppression_records(stack: LocalStack) -> list[Suppression]:
    """Every record on the local stack's suppression list (a Scan: the demo's own reporting)."""
    client = stack.store.client
    items: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"TableName": SUPPRESSION_TABLE}
    while True:
        page = client.scan(**kwargs)
        items += page.get("Items", [])
        if "LastEvaluatedKey" not in page:
            return [record_of(item) for item in items]
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
