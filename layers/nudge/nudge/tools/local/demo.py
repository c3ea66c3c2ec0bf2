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

Summary tables end it (``nudge.tools.local.demo_summary``), read back from the table itself
rather than from what was sent, and the HTML report is written next to the function logs.
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
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from itertools import groupby
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from nudge.model.calendar import week_key
from nudge.tools.local.demo_channels import print_channels
from nudge.tools.local.demo_inbox import InboxVisitor
from nudge.tools.local.demo_summary import (
    ReplayStats,
    Resent,
    SendStats,
    WeekSample,
    census,
    print_decisions,
    print_feedback,
    print_journeys,
    print_lift,
    print_segments,
    print_summary,
    print_transitions,
    segment_ids,
    segment_records,
    segment_sizes,
)
from nudge.tools.local.heartbeat import Heartbeat, Status
from nudge.tools.local.http import LocalApiServer
from nudge.tools.local.simulated_clock import SimulatedClock
from nudge.tools.local.stack import LocalStack
from nudge.tools.local.streams import PumpStats
from nudge.tools.report.html import render
from nudge.tools.samples.generator import build_history
from nudge.tools.samples.responses import engagement, respond, response_key

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
# The default replay (and `nudge demo`'s, nudge.tools.local.commands): `make demo` from a fresh
# clone within 4 minutes on 2 cores, install included. 500 users show every table 1,000 did.
DEMO_USERS, DEMO_ACCOUNTS = 500, 50


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


def run_demo(
    *,
    users: int = DEMO_USERS,
    accounts: int = DEMO_ACCOUNTS,
    days: int = 90,
    seed: int = 7,
    start: datetime | None = None,
    senders: int = SENDERS,
    containers: int = CONTAINERS,
    console: Console | None = None,
) -> int:
    console = console or Console()
    began = time.monotonic()
    # rich draws its progress only on a terminal: elsewhere (CI logs, `| tee`) a plain line at
    # least every 10 s says how far the demo got.
    alive = Status("starting the local stack")
    heartbeat = Heartbeat(lambda line: console.print(line, highlight=False, soft_wrap=True), alive)
    if not console.is_terminal:
        heartbeat.start()
    try:
        return _run(users, accounts, days, seed, start, senders, containers, console, began, alive)
    finally:
        heartbeat.stop()


def _run(
    users: int,
    accounts: int,
    days: int,
    seed: int,
    start: datetime | None,
    senders: int,
    containers: int,
    console: Console,
    began: float,
    alive: Status,
) -> int:
    # The handlers' own logs and metrics (what CloudWatch would get) go to a file, not over the
    # progress bar.
    logs = Path(tempfile.mkdtemp(prefix="nudge-demo-")) / "functions.log"
    with console.status("Starting the local stack (moto, tables and queues from template.yaml, handlers)..."):
        stack = LocalStack(
            clock=SimulatedClock(start), containers=containers, log_level="WARNING", function_logs=logs
        )
        server = LocalApiServer(stack)  # bound first: the stack's links point at its port
        try:
            stack.start()
        except BaseException:
            server.stop()
            raise
    try:
        with server:
            code = _replay(stack, server, users, accounts, days, seed, start, senders, console, began, alive)
            report = logs.parent / "report.html"
            alive.set("writing the report")
            with console.status("Writing the report (segments, transitions, funnel, messages, lift)..."):
                data = stack.report_data()
                report.write_text(render(data), encoding="utf-8")
            print_lift(console, data.lift)
    finally:
        stack.stop()
    console.print(f"Function logs and metrics (what CloudWatch would hold): {logs}")
    console.print(f"[bold]Report:[/bold] {report}")
    alive.set("done")
    return code


def _replay(
    stack: LocalStack,
    server: LocalApiServer,
    users: int,
    accounts: int,
    days: int,
    seed: int,
    start: datetime | None,
    senders: int,
    console: Console,
    began: float,
    alive: Status,
) -> int:
    # Given, the history starts exactly there (the clock has run on while the stack started), so
    # the same seed and start replay the same messages.
    start = start or stack.clock.now().replace(microsecond=0)
    history = build_history(users=users, accounts=accounts, days=days, seed=seed, start=start)
    sender = BatchSender(server.host, server.port, stack.write_keys[0])
    stats = SendStats()
    rng = random.Random(seed)
    console.print(
        f"Replaying {days} days of the sample product ({users:,} users, {accounts:,} accounts, seed {seed}) "
        f"through {server.base_url}, simulated from {start:%Y-%m-%d %H:%M:%S} UTC "
        f"(again: --seed {seed} --start {start:%Y-%m-%dT%H:%M:%SZ})"
    )
    replay_began = time.monotonic()
    alive.set(f"replaying day 0/{days}")
    sent = 0
    last_batch: list[dict[str, Any]] = []
    replay_stats = ReplayStats()
    week = week_key(start.date())
    answers: list[dict[str, Any]] = []  # users' answers to messages, not yet posted
    answered = 0
    answered_ids: set[str] = set()  # feedback updates a sent entry: each is answered once
    checked = start
    # The product's page for users who come back to an in-app message (a survey answered).
    visitor = InboxVisitor(server.host, server.port, stack.keys.client[0], stack.keys.user_token_secret)

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
            visitor.visit_due(end_of_day, stack.clock.now())
            batches = list(_batches(messages, rng))
            list(pool.map(send, batches))
            sent += len(messages)
            last_batch = batches[-1] if batches else last_batch
            _run_due(stack, replay_stats)
            readings: list[tuple[str, str, str]] = []
            for entry in stack.ledger.scan_entries(updated_after=checked):
                d = entry.decision
                if entry.status == "sent" and d.channel != "cs" and entry.decision_id not in answered_ids:
                    answered_ids.add(entry.decision_id)
                    key = response_key(d.rule, d.step)
                    answers += respond(d.decision_id, key, d.user, d.account, entry.updated_at)
                    visitor.plan(entry)
                    if d.channel == "email" and "delivered" in entry.feedback:
                        readings += _readings(entry.provider_id, d.decision_id, key)
            # Readers open and click some delivered emails (SES's Open and Click events).
            stack.engage_all(readings)
            checked = stack.clock.now()
            # moto keeps every item and stream record in this process, and the heap only grows:
            # each full garbage collection walked all of it again (a tenth of the replay's CPU).
            # What exists at the end of a day is frozen out of collection; the process ends with
            # the demo, so nothing frozen is kept for long.
            gc.freeze()
            if week_key(end_of_day.date()) != week:
                # The first day past a week's end: its closing re-checks (declining) have run.
                sizes = segment_sizes(segment_records(stack, history.users))
                replay_stats.samples.append(WeekSample(week, sizes))
                week = week_key(end_of_day.date())
            elapsed = time.monotonic() - replay_began
            alive.set(
                f"day {(step + 1) / STEPS_PER_DAY:.1f}/{days} ({end_of_day:%Y-%m-%d}): {sent:,} messages "
                f"sent, {sent / elapsed if elapsed else 0.0:,.0f}/s"
            )
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
    alive.set(f"replayed {days} days ({sent:,} messages); checking and summing up")

    # The same batch again: every messageId was seen, so nothing may change.
    ids = sorted({m["userId"] for m in last_batch if "userId" in m})
    before = stack.store.load_users(ids)
    status, body, _ = sender.post(last_batch)
    after = stack.store.load_users(ids)
    unchanged = before == after

    _run_due(stack, replay_stats)

    now = stack.clock.now()
    counted = census(stack, week_key(now.date()))
    histories = segment_records(stack, history.users)
    sizes = segment_sizes(histories)
    replay_stats.samples.append(WeekSample("now", sizes))
    segments = segment_ids(stack.rules_dir)
    total_seconds = time.monotonic() - began
    resent = Resent(len(last_batch), status, body, unchanged)
    print_summary(
        console, history, counted, stats, sent, resent, now, replay_seconds, total_seconds, replay_stats
    )
    print_segments(console, segments, replay_stats.samples, histories)
    print_transitions(console, histories)
    breaches = print_decisions(console, stack)
    print_journeys(console, stack, histories)
    print_feedback(console, stack)
    print_channels(console, stack, visitor.tally)
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
        and replay_stats.stream.failed_batches == 0
        and not empty
        and breaches == 0
    )
    return 0 if ok else 1


def _readings(message_id: str, decision_id: str, key: str) -> list[tuple[str, str, str]]:
    """Opens and clicks of one delivered email; `key` is the response model's (journey:step for a
    journey's email, whose rule is the journey)."""
    opened, clicked = engagement(decision_id, key)
    return [(message_id, "open", "")] * opened + [
        (message_id, "click", "https://app.acme.example/")
    ] * clicked


def _run_due(stack: LocalStack, replay_stats: ReplayStats) -> None:
    """The day's usage changes through the evaluate function, then the sweep if it is due."""
    began = time.monotonic()
    before = [pump.stats.invocations for pump in stack.pumps]
    runs = stack.run_due()
    replay_stats.seconds += time.monotonic() - began
    replay_stats.sweeps += len(runs)
    replay_stats.swept_users += sum(int((run.result or {}).get("evaluated", 0)) for run in runs)
    del before
    replay_stats.stream = PumpStats()
    for pump in stack.pumps:
        replay_stats.stream.add(pump.stats)
