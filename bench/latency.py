"""Event-to-decision and event-to-send latency on the local stack, under an open-loop load.

An open-loop generator posts `/v1/batch` bodies (SDK-shaped: `track` calls with `messageId`,
`timestamp`, `properties`) at a fixed offered rate, whatever the stack answers: each body has a
scheduled time, and a body posted late because every sender was busy counts its lateness against
the stack (no coordinated omission). Every event is a `premium_feature_attempted` by a user of its
own, identified beforehand (email, free plan), and the bench rule set (`bench_rules`: rules/ with
one trigger on that event, no journeys, no holdout) sends each of them an email at once: every
event becomes one decision and one send.

Timestamps, all on this process's wall clock (`time.time()`):
- post: the body's scheduled time (open loop), and when its 200 came back (ack);
- decision: when the evaluator put the decision on the decision queue (the SQS message's
  `SentTimestamp`, read from the dispatch function's event);
- dispatched: when the dispatch invocation that recorded it in the ledger returned;
- send: when the email function's invocation that sent it (SES, moto) returned.
`TimedStack` takes them: a `LocalStack` whose `invoke_function`, which the HTTP server and every
pump call, notes what each invocation carried and when it returned.

The stack runs as `nudge serve` runs it: `start_background` drives the pumps every second, so on
the local stack an event waits for that loop (not for the template's batching windows, which the
local pumps do not wait out: nudge.tools.local.sources), then for the work ahead of it. The
simulated clock runs at real speed here (nothing moves it), so the handlers' `now` is the wall
clock's time give or take a constant. The figures, the report and what the template's settings add
on AWS (`aws_implied`) are bench.latency_report's.
"""

from __future__ import annotations

import base64
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import requests
import yaml

from bench.latency_report import DISPATCH, EMAIL, EVALUATE, ROOT, Post, Run, Stamps, hops, report
from nudge.model.queue import DecisionBatch, Delivery
from nudge.rulebook.loader import load_rules
from nudge.tools.local.http import LocalApiServer
from nudge.tools.local.stack import LocalStack

RATES = (100, 500, 2_000)
SECONDS = 2.0  # offered per rate: the backlog of an overloaded run drains afterwards
EVENT = "premium_feature_attempted"
TRIGGER = "bench_latency"
MAX_ATTEMPTS = 8  # a 503 is retried with backoff, as an SDK does
SEED_BATCH = 100

TRIGGERS = f"""\
# The latency bench's one trigger: an email as soon as a free user tries a premium feature.
triggers:
  - id: {TRIGGER}
    kind: upgrade
    description: Tried a premium feature on the free plan - an email at once (bench only).
    when:
      all:
        - trait: {{name: plan, equals: free}}
        - count: {{event: {EVENT}, within: 1d, at_least: 1}}
    action: email
    template: upgrade_offer
    priority: 50
    once: true
"""


def bench_rules(target: Path) -> Path:
    """rules/ copied to `target` with one trigger (an email per premium attempt), no journeys, no
    control group: every event the bench posts leads to one decision and one send."""
    shutil.copytree(ROOT / "rules", target)
    (target / "triggers.yaml").write_text(TRIGGERS, encoding="utf-8")
    for journey in (target / "journeys").glob("*.yaml"):
        journey.unlink()
    for cases in ("journeys.yaml", "triggers.yaml"):
        (target / "tests" / cases).unlink(missing_ok=True)
    guardrails = target / "guardrails.yaml"
    spec = yaml.safe_load(guardrails.read_text(encoding="utf-8"))
    spec["holdout"]["control_group"] = 0
    # Caps per journey name kinds with a trigger or journey: only the bench trigger's is left.
    spec["journeys"] = {kind: caps for kind, caps in spec.get("journeys", {}).items() if kind == "upgrade"}
    guardrails.write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    load_rules(target)  # a broken copy fails here, not in a container
    return target


class TimedStack(LocalStack):
    """A LocalStack that notes, per user, when each invocation that carried their event returned."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.stamps = Stamps()
        self._stamps_lock = threading.Lock()

    def invoke_function(self, logical_id: str, event: dict[str, Any]) -> dict[str, Any]:
        began = time.time()
        result = super().invoke_function(logical_id, event)
        ended = time.time()
        if logical_id in (EVALUATE, DISPATCH, EMAIL):
            self._note(logical_id, event, result, began, ended)
        return result

    def _note(
        self, function: str, event: Mapping[str, Any], result: Mapping[str, Any], began: float, ended: float
    ) -> None:
        records = list(event.get("Records") or [])
        failed = {str(f.get("itemIdentifier")) for f in result.get("batchItemFailures") or []}
        s = self.stamps
        with self._stamps_lock:
            s.durations.setdefault(function, []).append(ended - began)
            for record in records:
                if function == EVALUATE or record["messageId"] in failed:
                    continue  # evaluate: only its run time (its decisions are stamped on the queue)
                if function == DISPATCH:
                    batch = DecisionBatch.model_validate_json(record["body"])
                    queued = int(record["attributes"]["SentTimestamp"]) / 1000
                    for decision in batch.decisions:
                        s.decided.setdefault(decision.user, queued)
                        s.dispatched.setdefault(decision.user, ended)
                else:
                    s.sent.setdefault(Delivery.model_validate_json(record["body"]).user, ended)

    def take_durations(self) -> dict[str, list[float]]:
        """The invocation times noted since the last call (and forget them)."""
        with self._stamps_lock:
            taken, self.stamps.durations = self.stamps.durations, {}
        return taken

    def count(self, stage: str, users: Sequence[str]) -> int:
        stamps: dict[str, float] = getattr(self.stamps, stage)
        with self._stamps_lock:
            return sum(1 for u in users if u in stamps)


def _auth(write_key: str) -> str:
    return "Basic " + base64.b64encode(f"{write_key}:".encode()).decode()


class _Sessions:
    """One keep-alive session per sender thread."""

    def __init__(self, write_key: str) -> None:
        self._local = threading.local()
        self._auth = _auth(write_key)
        self._all: list[requests.Session] = []
        self._lock = threading.Lock()

    def get(self) -> requests.Session:
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            session.headers.update({"Authorization": self._auth})
            self._local.session = session
            with self._lock:
                self._all.append(session)
        return session

    def close(self) -> None:
        for session in self._all:
            session.close()


def _post(sessions: _Sessions, url: str, body: dict[str, Any], post: Post, timeout: float) -> None:
    post.started = time.time()
    for attempt in range(MAX_ATTEMPTS):
        post.attempts += 1
        try:
            response = sessions.get().post(url, json=body, timeout=timeout)
            post.status = response.status_code
        except requests.RequestException:
            post.status = 0  # no answer: refused, reset or timed out
        if post.status != 503 or attempt == MAX_ATTEMPTS - 1:
            break
        time.sleep(min(1.0, 0.05 * 2**attempt))
    post.acked = time.time()
    if post.status == 200:
        post.accepted = int(response.json()["accepted"])


def _seed(stack: LocalStack, url: str, sessions: _Sessions, users: Sequence[str], senders: int) -> None:
    """Identify every user (email, free plan) and let the stack evaluate them, before the clock runs."""
    now = stack.clock.now().isoformat()
    bodies = [
        {
            "batch": [
                {
                    "type": "identify",
                    "userId": user,
                    "messageId": f"{user}-seed",
                    "timestamp": now,
                    "traits": {"email": f"{user}@bench.example", "plan": "free"},
                }
                for user in users[start : start + SEED_BATCH]
            ]
        }
        for start in range(0, len(users), SEED_BATCH)
    ]
    posts = [Post(users=[], scheduled=0.0) for _ in bodies]
    with ThreadPoolExecutor(max_workers=senders, thread_name_prefix="latency-seed") as pool:
        list(pool.map(lambda bp: _post(sessions, url, bp[0], bp[1], 120.0), zip(bodies, posts, strict=True)))
    failed = [p.status for p in posts if p.status != 200]
    if failed:
        raise RuntimeError(f"seeding the bench users failed: statuses {sorted(set(failed))}")
    stack.settle()


def _track(user: str, at: str, n: int) -> dict[str, Any]:
    return {
        "type": "track",
        "userId": user,
        "event": EVENT,
        "properties": {"feature": "sso"},
        "messageId": f"{user}-{n}",
        "timestamp": at,
        "context": {"library": {"name": "analytics-python", "version": "2.3.2"}},
    }


def run_rate(
    stack: TimedStack,
    base_url: str,
    write_key: str,
    rate: float,
    seconds: float,
    *,
    batch: int = 100,
    senders: int = 16,
    drain_timeout: float = 600.0,
    timeout: float = 120.0,
    progress: Callable[[str], None] | None = None,
) -> Run:
    """Offer `rate` events/s for `seconds` in bodies of `batch`, then wait for every accepted event
    to be sent (at most `drain_timeout` s after the last post came back)."""
    tag = uuid.uuid4().hex[:8]
    say = progress or (lambda _: None)
    bodies = max(1, round(rate * seconds / batch))
    users = [f"lat-{tag}-{n}" for n in range(bodies * batch)]
    url = f"{base_url.rstrip('/')}/v1/batch"
    sessions = _Sessions(write_key)
    try:
        began = time.time()
        _seed(stack, url, sessions, users, senders)
        say(f"  ... {len(users):,} users identified and evaluated in {time.time() - began:.0f} s; posting")
        stack.take_durations()  # the seeding's evaluations are not the run's
        posts = [Post(users=users[i * batch : (i + 1) * batch], scheduled=0.0) for i in range(bodies)]
        start = time.time() + 0.5
        for i, post in enumerate(posts):
            post.scheduled = start + i * batch / rate
        with ThreadPoolExecutor(max_workers=senders, thread_name_prefix="latency-post") as pool:
            for post in posts:
                time.sleep(max(0.0, post.scheduled - time.time()))
                # The event's own time is its scheduled post on the stack's (simulated) clock.
                at = stack.clock.now().isoformat()
                body = {"batch": [_track(u, at, n) for n, u in enumerate(post.users)]}
                pool.submit(_post, sessions, url, body, post, timeout)
    finally:
        sessions.close()
    run = Run(offered=rate, seconds=seconds, batch=batch, posts=posts, stamps=stack.stamps)
    wanted = run.users
    deadline = time.time() + drain_timeout
    said = time.time()
    while time.time() < deadline and (sent := stack.count("sent", wanted)) < len(wanted):
        if time.time() - said >= 10:
            decided = stack.count("decided", wanted)
            say(f"  ... {len(wanted):,} accepted, {decided:,} decided, {sent:,} sent")
            said = time.time()
        time.sleep(0.2)
    run.drained = stack.count("sent", wanted) == len(wanted)
    run.durations = stack.take_durations()
    _check_ledger(stack, run)
    return run


def _check_ledger(stack: LocalStack, run: Run) -> None:
    """The ledger's word, beside the stamps: decisions recorded and sent for the run's users."""
    mine = set(run.users)
    # Read straight from the table, not through stack.decisions(): that waits for the background
    # loop's settle, which has nothing left to do for these users (every one was sent) but may be
    # long at work on (or stuck in) something else.
    entries = [
        e for e in stack.ledger.scan_entries() if e.decision.user in mine and e.decision.rule == TRIGGER
    ]
    run.ledger_decisions = len({e.decision.user for e in entries})
    run.ledger_sent = len({e.decision.user for e in entries if e.status == "sent"})


@contextmanager
def local_stack(
    rules_dir: Path, write_key: str, containers: int, logs: Path | None, poll_seconds: float
) -> Iterator[tuple[TimedStack, str]]:
    """A TimedStack on `rules_dir` behind a LocalApiServer, driven as `nudge serve` drives it."""
    stack = TimedStack(
        rules_dir=rules_dir,
        write_keys=[write_key],
        containers=containers,
        log_level="WARNING",
        function_logs=logs,
    )
    with LocalApiServer(stack) as api, stack:  # the server first: links point at its port
        stack.start_background(poll_seconds)
        try:
            yield stack, api.base_url
        finally:
            stack.stop_background()


def measure(
    rates: Sequence[float],
    seconds: float,
    workdir: Path,
    *,
    batch: int = 100,
    containers: int = 3,
    senders: int = 16,
    poll_seconds: float = 1.0,
    drain_timeout: float = 600.0,
    progress: Callable[[str], None] | None = None,
) -> list[Run]:
    """One stack, one run per rate (lowest first), each with users of its own."""
    rules = bench_rules(workdir / "rules")
    key = "bench-latency-key"
    logs = workdir / "functions.log" if containers > 0 else None
    runs = []
    with local_stack(rules, key, containers, logs, poll_seconds) as (stack, base_url):
        for rate in rates:
            if progress is not None:
                progress(f"  ... {rate:,.0f} events/s offered for {seconds:g} s")
            runs.append(
                run_rate(
                    stack,
                    base_url,
                    key,
                    rate,
                    seconds,
                    batch=batch,
                    senders=senders,
                    drain_timeout=drain_timeout,
                    progress=progress,
                )
            )
            if progress is not None:
                # Each load's figures as soon as they are in: a later load that never drains loses
                # nothing of the earlier ones.
                progress("\n".join(report(runs[-1:], hops())))
    return runs
