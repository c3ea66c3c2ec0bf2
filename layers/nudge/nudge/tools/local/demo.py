"""`nudge demo`: replay the sample product's history through the local stack, over HTTP.

The local stack starts (moto, tables and queues from template.yaml, the real ingest, evaluate
and sweep handlers in worker "containers"), the sample generator plans N days of usage starting
at the simulated clock's now, and the replay goes half a day at a time: the clock moves to the end
of the half day, its messages go to POST /v1/batch as SDKs send them (gzip, a few hundred per
request, several senders at once, retrying on 503), then what is due runs: the stream pump
feeds the day's usage changes to the evaluate function, and the sweep re-checks the users whose
time-based conditions came due (dormant after 30 days, a week closing).

The sweep runs after the day's messages, not when the clock moves: they all happened before the
end of the day, and a sweep at the end of the day that had not seen them would call a user
dormant on the very day they came back.

Summary tables end it, read back from the table itself rather than from what was sent: usage,
lifecycle segment sizes at the end of each ISO week, the most frequent transitions, and the
decisions put on the decision queue, by rule.
"""

from __future__ import annotations

import base64
import gc
import gzip
import http.client
import json
import random
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import groupby
from pathlib import Path
from typing import Any

from rich import box
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from nudge.adapters.dynamo import codec
from nudge.domain.lift import LiftRow
from nudge.domain.verdicts import cap_breaches, choices, user_zone
from nudge.model.calendar import week_key
from nudge.model.delivery import Sent
from nudge.model.segments import SegmentRecord
from nudge.model.state import UserState
from nudge.rulebook.ruleset import SEGMENTS_FILE, SegmentsFile, load_rules
from nudge.rulebook.yamlfile import load_yaml, validate
from nudge.tools.local.http import LocalApiServer
from nudge.tools.local.pumps import PumpStats
from nudge.tools.local.stack import LocalStack
from nudge.tools.report.html import render
from nudge.tools.samples.generator import SampleHistory, build_history
from nudge.tools.samples.responses import respond

DAY = timedelta(days=1)
# The replay moves the clock half a day at a time, sweeping after each half: decisions are then
# judged at two times of day 12 hours apart, and as quiet hours last less than 12 hours, a push
# deferred for the night finds one of them outside the user's quiet hours (EventBridge sweeps
# every 15 minutes in AWS; a sweep a day at one fixed time would find some zones always asleep).
STEP = timedelta(hours=12)
STEPS_PER_DAY = 2
BATCH_MIN, BATCH_MAX = 100, 300
SENDERS = 4
# Two handler processes: with moto and the HTTP server in this process, that keeps two cores busy.
CONTAINERS = 2
MAX_ATTEMPTS = 8
# How often the stream is pumped while a day's messages are posted.
PUMP_INTERVAL_SECONDS = 0.2


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


class BatchSender:
    """Posts gzip batches over keep-alive connections, one per sender thread, as an SDK does."""

    def __init__(self, host: str, port: int, write_key: str) -> None:
        self._host, self._port = host, port
        self._auth = "Basic " + base64.b64encode(f"{write_key}:".encode()).decode()
        self._local = threading.local()

    def _connection(self) -> http.client.HTTPConnection:
        conn: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = http.client.HTTPConnection(self._host, self._port, timeout=60)
            self._local.conn = conn
        return conn

    def post(self, messages: Sequence[dict[str, Any]]) -> tuple[int, dict[str, Any], int]:
        """(status, response body, retries): retries 503s and dropped connections with backoff."""
        body = gzip.compress(json.dumps({"batch": list(messages)}).encode(), compresslevel=6)
        headers = {
            "Authorization": self._auth,
            "Content-Type": "application/json",
            "Content-Encoding": "gzip",
            "User-Agent": "nudge-demo/1",
        }
        for attempt in range(MAX_ATTEMPTS):
            conn = self._connection()
            try:
                conn.request("POST", "/v1/batch", body=body, headers=headers)
                response = conn.getresponse()
                payload = response.read()
            except (OSError, http.client.HTTPException):
                conn.close()
                self._local.conn = None
                time.sleep(_backoff(attempt))
                continue
            if response.status == 503 and attempt < MAX_ATTEMPTS - 1:
                time.sleep(_backoff(attempt))
                continue
            parsed: dict[str, Any] = json.loads(payload) if payload else {}
            return response.status, parsed, attempt
        return 0, {}, MAX_ATTEMPTS


def _backoff(attempt: int) -> float:
    return random.uniform(0, min(2.0, 0.05 * 2**attempt))  # jitter, not security


def _batches(messages: Sequence[dict[str, Any]], rng: random.Random) -> Iterator[list[dict[str, Any]]]:
    """Split a day's messages into SDK-sized batches, each user's messages together, in time order.

    Ingest writes each user once per request, and in moto a write costs milliseconds of one
    shared core: keeping a user's day in one request cuts the writes by about a third (the
    fold is order-independent, so the resulting state is the same as in arrival order).
    """
    messages = sorted(messages, key=lambda m: str(m.get("userId") or m.get("anonymousId")))
    start = 0
    while start < len(messages):
        size = rng.randint(BATCH_MIN, BATCH_MAX)
        yield list(messages[start : start + size])
        start += size


def _steps(
    messages: Iterable[dict[str, Any]], start: datetime, count: int
) -> Iterator[tuple[int, list[dict[str, Any]]]]:
    """The messages in each STEP after `start`, every one of `count` steps (empty ones too: the
    sweep must run for them)."""

    def step_of(message: dict[str, Any]) -> int:
        return (datetime.fromisoformat(message["timestamp"]) - start) // STEP

    groups = {step: list(group) for step, group in groupby(messages, key=step_of)}
    for step in range(count):
        yield step, groups.get(step, [])


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
class Evaluation:
    """What the stream pump and the sweep did during the replay."""

    seconds: float = 0.0
    stream: PumpStats = field(default_factory=PumpStats)
    sweeps: int = 0
    swept_users: int = 0
    samples: list[WeekSample] = field(default_factory=list)


def run_demo(
    *,
    users: int = 1000,
    accounts: int = 100,
    days: int = 90,
    seed: int = 7,
    senders: int = SENDERS,
    containers: int = CONTAINERS,
    console: Console | None = None,
) -> int:
    console = console or Console()
    began = time.monotonic()
    # The handlers' own logs and metrics (what CloudWatch would get) go to a file, not over the
    # progress bar.
    logs = Path(tempfile.mkdtemp(prefix="nudge-demo-")) / "functions.log"
    with console.status("Starting the local stack (moto, tables and queues from template.yaml, handlers)..."):
        stack = LocalStack(containers=containers, log_level="WARNING", function_logs=logs).start()
    try:
        with LocalApiServer(stack) as server:
            code = _replay(stack, server, users, accounts, days, seed, senders, console, began)
            report = logs.parent / "report.html"
            with console.status("Writing the report (segments, transitions, funnel, messages, lift)..."):
                data = stack.report_data()
                report.write_text(render(data), encoding="utf-8")
            _lift_summary(console, data.lift)
    finally:
        stack.stop()
    console.print(f"Function logs and metrics (what CloudWatch would hold): {logs}")
    console.print(f"[bold]Report:[/bold] {report}")
    return code


def _lift_summary(console: Console, rows: Sequence[LiftRow]) -> None:
    """Each rule's lift against its held-out users (goals, charts and warnings are in the report)."""
    table = Table(title="Lift: users reaching the rule's goal, sent vs held out")
    for column in ("rule", "sent", "held out", "diff. [95% CI]", "verdict"):
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


def _replay(
    stack: LocalStack,
    server: LocalApiServer,
    users: int,
    accounts: int,
    days: int,
    seed: int,
    senders: int,
    console: Console,
    began: float,
) -> int:
    start = stack.clock.now()
    history = build_history(users=users, accounts=accounts, days=days, seed=seed, start=start)
    sender = BatchSender(server.host, server.port, stack.write_keys[0])
    stats = SendStats()
    rng = random.Random(seed)
    console.print(
        f"Replaying {days} days of the sample product ({users:,} users, {accounts:,} accounts, seed {seed}) "
        f"through {server.base_url}, simulated from {start:%Y-%m-%d %H:%M} UTC"
    )
    replay_began = time.monotonic()
    sent = 0
    last_batch: list[dict[str, Any]] = []
    evaluation = Evaluation()
    week = week_key(start.date())
    answers: list[dict[str, Any]] = []  # users' answers to messages, not yet posted
    answered = 0
    checked = start

    def send(batch: list[dict[str, Any]]) -> None:
        status, body, retries = sender.post(batch)
        errors = body.get("errors") or []
        stats.add(int(body.get("accepted", 0)), errors, retries, status not in (200, 400))

    progress = Progress(
        TextColumn("[bold]day {task.completed:>3.0f}/{task.total:.0f}"),
        BarColumn(),
        TextColumn("{task.fields[when]}"),
        TextColumn("{task.fields[sent]:>9,} msgs  {task.fields[rate]:>6,.0f}/s"),
        TimeElapsedColumn(),
        console=console,
    )
    # The stream is pumped while the senders post, as Lambda polls it while ingest writes; the
    # sweep runs once the day's messages are in (see the module docstring).
    stack.start_background(PUMP_INTERVAL_SECONDS, schedules=False)
    with progress, ThreadPoolExecutor(max_workers=senders, thread_name_prefix="demo-sender") as pool:
        task = progress.add_task("replay", total=days, when="", sent=0, rate=0.0)
        for step, planned in _steps(history.messages(), start, days * STEPS_PER_DAY):
            end_of_day = start + (step + 1) * STEP
            stack.clock.advance_to(end_of_day)
            # The users' answers to messages sent earlier go in with the planned usage they fall in.
            due = [m for m in answers if datetime.fromisoformat(m["timestamp"]) < end_of_day]
            answers = [m for m in answers if datetime.fromisoformat(m["timestamp"]) >= end_of_day]
            messages = sorted(planned + due, key=lambda m: datetime.fromisoformat(m["timestamp"]))
            answered += len(due)
            batches = list(_batches(messages, rng))
            list(pool.map(send, batches))
            sent += len(messages)
            last_batch = batches[-1] if batches else last_batch
            _run_due(stack, evaluation)
            for entry in stack.ledger.scan_entries(updated_after=checked):
                d = entry.decision
                if entry.status == "sent" and d.channel != "cs":
                    answers += respond(d.decision_id, d.rule, d.user, d.account, entry.updated_at)
            checked = stack.clock.now()
            # moto keeps every item and stream record in this process, and the heap only grows:
            # each full garbage collection walked all of it again (a tenth of the replay's CPU).
            # What exists at the end of a day is frozen out of collection; the process ends with
            # the demo, so nothing frozen is kept for long.
            gc.freeze()
            if week_key(end_of_day.date()) != week:
                # The first day past a week's end: its closing re-checks (declining) have run.
                sizes = segment_sizes(segment_records(stack, history.users))
                evaluation.samples.append(WeekSample(week, sizes))
                week = week_key(end_of_day.date())
            elapsed = time.monotonic() - replay_began
            progress.update(
                task,
                completed=(step + 1) / STEPS_PER_DAY,
                when=f"{end_of_day:%Y-%m-%d}",
                sent=sent,
                rate=sent / elapsed if elapsed else 0.0,
            )
        progress.update(task, completed=days)
    stack.stop_background()
    replay_seconds = time.monotonic() - replay_began

    # The same batch again: every messageId was seen, so nothing may change.
    ids = sorted({m["userId"] for m in last_batch if "userId" in m})
    before = stack.store.load_users(ids)
    status, body, _ = sender.post(last_batch)
    after = stack.store.load_users(ids)
    unchanged = before == after

    _run_due(stack, evaluation)

    now = stack.clock.now()
    counted = census(stack, week_key(now.date()))
    histories = segment_records(stack, history.users)
    sizes = segment_sizes(histories)
    evaluation.samples.append(WeekSample("now", sizes))
    segments = segment_ids(stack.rules_dir)
    total_seconds = time.monotonic() - began
    resent = Resent(len(last_batch), status, body, unchanged)
    _summary(console, history, counted, stats, sent, resent, now, replay_seconds, total_seconds, evaluation)
    _segments_summary(console, segments, evaluation.samples, histories)
    _transitions_summary(console, histories)
    breaches = _decisions_summary(console, stack)
    console.print(
        f"The sample's users answered {answered:,} messages with usage (nudge.tools.samples.responses: "
        "some rules work, some do not; held-out users get no message to answer)."
    )
    empty = [segment for segment in segments if not sizes.get(segment)]
    if empty:
        console.print(f"[red]Empty lifecycle segments at the end: {', '.join(empty)}[/red]")
    ok = (
        unchanged
        and status == 200
        and stats.failed_requests == 0
        and counted.users == len(history.users)
        and evaluation.stream.failed_batches == 0
        and not empty
        and breaches == 0
    )
    return 0 if ok else 1


def _run_due(stack: LocalStack, evaluation: Evaluation) -> None:
    """The day's usage changes through the evaluate function, then the sweep if it is due."""
    began = time.monotonic()
    before = [pump.stats.invocations for pump in stack.pumps]
    runs = stack.run_due()
    evaluation.seconds += time.monotonic() - began
    evaluation.sweeps += len(runs)
    evaluation.swept_users += sum(int((run.result or {}).get("evaluated", 0)) for run in runs)
    del before
    evaluation.stream = PumpStats()
    for pump in stack.pumps:
        evaluation.stream.add(pump.stats)


@dataclass(frozen=True)
class Resent:
    """The last batch posted a second time."""

    messages: int
    status: int
    body: dict[str, Any]
    unchanged: bool


def _summary(
    console: Console,
    history: SampleHistory,
    counted: Census,
    stats: SendStats,
    sent: int,
    resent: Resent,
    now: datetime,
    replay_seconds: float,
    total_seconds: float,
    evaluation: Evaluation,
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
    stream = evaluation.stream
    table.add_row(
        "usage changes evaluated",
        f"{stream.delivered:,}",
        f"stream records to the evaluate function in {stream.invocations:,} batches; "
        f"{stream.filtered_out:,} others filtered out",
    )
    table.add_row(
        "sweeps",
        f"{evaluation.sweeps:,}",
        f"{evaluation.swept_users:,} users re-checked without a new event (dormant, weeks closing)",
    )
    failed_note = f"{stream.retries} retries, {stream.bisections} bisections"
    table.add_row("stream batches given up", f"{stream.failed_batches:,}", failed_note)
    table.add_row("replay time", f"{replay_seconds:,.1f} s", f"{total_seconds:,.1f} s with start-up")
    table.add_row(
        "evaluation time",
        f"{evaluation.seconds:,.1f} s",
        "of the replay: stream pump + evaluate, sweep (moto, 2 containers)",
    )
    rate = sent / replay_seconds if replay_seconds else 0.0
    table.add_row("throughput", f"{rate:,.0f} events/s", "HTTP -> handler -> DynamoDB (moto) -> evaluate")
    console.print(table)


def _segments_summary(
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


def _transitions_summary(console: Console, histories: Sequence[SegmentRecord], top: int = 12) -> None:
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


def _decisions_summary(console: Console, stack: LocalStack) -> int:
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
    console.print(f"Sent: {len(sent):,} messages ({per_channel}); {len(cases):,} CS escalations.")
    fallback = (
        rules.guardrails.spec.quiet_hours.fallback_timezone if rules.guardrails.spec.quiet_hours else "UTC"
    )
    sends: dict[str, list[Sent]] = {}
    for entry in entries:
        if entry.outcome == "send" and entry.status in ("sent", "sending", "unknown", "queued"):
            d = entry.decision
            journey = choices(rules.trigger_by_id[d.rule].spec, rules.guardrails).journey
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
