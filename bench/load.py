"""Load over loopback: concurrent clients post /v1/batch bodies to a running ingest API, for many
users and a few hot accounts, a bounded number of requests each; then the users are read back
(GET /_local/users/{id}) to check that every accepted event was counted, and none twice.

Each client is a thread with its own keep-alive session. A 503 (contention outlasting the
server's own retries, Retry-After set) is retried with backoff, as an SDK does; it counts as a
retry, and as an error only if the retries run out. Any other status but 200 is an error.
"""

from __future__ import annotations

import base64
import multiprocessing
import os
import random
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import requests

EVENTS = ("login", "report_exported", "dashboard_viewed", "invite_sent")
MAX_ATTEMPTS = 8


@dataclass
class LoadResult:
    clients: int
    requests: int  # batches posted (a retried batch counts once)
    attempts: int  # HTTP requests made, retries included
    accepted_events: int  # track events in batches answered 200
    accepted_messages: int  # every message the API reported accepted (tracks and groups)
    errors: Counter[int] = field(default_factory=Counter)  # final status of failed batches
    retries: Counter[int] = field(default_factory=Counter)  # statuses retried (503)
    latencies: list[float] = field(default_factory=list)  # seconds, one per attempt
    wall_seconds: float = 0.0
    users: set[str] = field(default_factory=set)  # users holding at least one accepted event
    counted_events: int | None = None  # filled by verify()
    missing_users: int = 0
    # CPU of this process (stack and clients) and its worker containers during the run, and the
    # settle + read-back after it: filled by the caller, which knows the stack ran in this process.
    cpu_seconds: float | None = None
    settle_seconds: float | None = None

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    @property
    def server_errors(self) -> int:
        return sum(n for status, n in self.errors.items() if status >= 500)

    @property
    def requests_per_second(self) -> float:
        return self.attempts / self.wall_seconds if self.wall_seconds else 0.0

    @property
    def events_per_second(self) -> float:
        return self.accepted_events / self.wall_seconds if self.wall_seconds else 0.0

    def percentile(self, p: float) -> float:
        """The p-th percentile of attempt latencies, in seconds (nearest rank)."""
        if not self.latencies:
            return 0.0
        ordered = sorted(self.latencies)
        rank = max(1, round(p / 100 * len(ordered) + 0.5 - 1e-9))
        return ordered[min(rank, len(ordered)) - 1]

    @property
    def p50(self) -> float:
        return self.percentile(50)

    @property
    def p99(self) -> float:
        return self.percentile(99)

    @property
    def lost(self) -> int | None:
        """Accepted events not found in state (negative: counted more than once)."""
        return None if self.counted_events is None else self.accepted_events - self.counted_events


def _auth(write_key: str) -> str:
    return "Basic " + base64.b64encode(f"{write_key}:".encode()).decode()


def _simulated_now(session: requests.Session, base_url: str) -> datetime:
    response = session.get(f"{base_url}/_local/clock", timeout=30)
    response.raise_for_status()
    return datetime.fromisoformat(response.json()["now"])


def _body(
    rng: random.Random,
    tag: str,
    now: datetime,
    users: int,
    hot_accounts: int,
    events_per_batch: int,
    groups_per_batch: int,
) -> tuple[dict[str, Any], Counter[str]]:
    """One /v1/batch body: tracks for random users, and group calls tying users to hot accounts."""
    tracks: Counter[str] = Counter()
    batch: list[dict[str, Any]] = []
    for _ in range(events_per_batch):
        user = f"load-{tag}-u{rng.randrange(users)}"
        tracks[user] += 1
        batch.append(
            {
                "type": "track",
                "userId": user,
                "event": rng.choice(EVENTS),
                "messageId": uuid.UUID(int=rng.getrandbits(128)).hex,
                "timestamp": (now - timedelta(seconds=rng.randrange(1, 3600))).isoformat(),
            }
        )
    for _ in range(groups_per_batch):
        n = rng.randrange(users)
        batch.append(
            {
                "type": "group",
                "userId": f"load-{tag}-u{n}",
                "groupId": f"load-{tag}-hot{n % hot_accounts}",
                "messageId": uuid.UUID(int=rng.getrandbits(128)).hex,
                "timestamp": (now - timedelta(seconds=rng.randrange(1, 3600))).isoformat(),
                "traits": {"name": f"Hot account {n % hot_accounts}"},
            }
        )
    rng.shuffle(batch)
    return {"batch": batch}, tracks


def run_load(
    base_url: str,
    write_key: str,
    clients: int = 8,
    requests_per_client: int = 10,
    users: int = 500,
    hot_accounts: int = 3,
    seed: int = 6,
    *,
    events_per_batch: int = 50,
    groups_per_batch: int = 2,
    timeout: float = 120.0,
) -> LoadResult:
    """Post clients x requests_per_client batches at once; bounded in count, and each request in time."""
    base_url = base_url.rstrip("/")
    # Ids unique to this run, so a shared stack's other users don't enter the counts.
    tag = f"{seed}-{uuid.uuid4().hex[:8]}"
    with requests.Session() as session:
        now = _simulated_now(session, base_url)
    result = LoadResult(clients=clients, requests=0, attempts=0, accepted_events=0, accepted_messages=0)
    lock = threading.Lock()
    auth = _auth(write_key)
    start = threading.Barrier(clients)

    def client(n: int) -> None:
        rng = random.Random(f"{seed}-{n}")
        bodies = [
            _body(rng, tag, now, users, hot_accounts, events_per_batch, groups_per_batch)
            for _ in range(requests_per_client)
        ]
        latencies: list[float] = []
        retries: Counter[int] = Counter()
        errors: Counter[int] = Counter()
        accepted_events = accepted_messages = 0
        seen: set[str] = set()
        with requests.Session() as session:
            session.headers.update({"Authorization": auth})
            start.wait()
            for body, tracks in bodies:
                for attempt in range(MAX_ATTEMPTS):
                    began = time.perf_counter()
                    try:
                        response = session.post(f"{base_url}/v1/batch", json=body, timeout=timeout)
                        status = response.status_code
                    except requests.RequestException:
                        status = 0  # no answer: connection refused, reset or timed out
                    latencies.append(time.perf_counter() - began)
                    if status != 503 or attempt == MAX_ATTEMPTS - 1:
                        break
                    retries[status] += 1
                    time.sleep(min(1.0, 0.05 * 2**attempt))
                if status == 200:
                    accepted_events += sum(tracks.values())
                    accepted_messages += int(response.json()["accepted"])
                    seen.update(tracks)
                else:
                    errors[status] += 1
        with lock:
            result.requests += len(bodies)
            result.attempts += len(latencies)
            result.latencies.extend(latencies)
            result.retries.update(retries)
            result.errors.update(errors)
            result.accepted_events += accepted_events
            result.accepted_messages += accepted_messages
            result.users.update(seen)

    began = time.perf_counter()
    with ThreadPoolExecutor(max_workers=clients, thread_name_prefix="load-client") as pool:
        for future in [pool.submit(client, n) for n in range(clients)]:
            future.result()
    result.wall_seconds = time.perf_counter() - began
    return result


def verify(
    base_url: str, result: LoadResult, *, readers: int = 8, settle_timeout: float = 1800.0
) -> LoadResult:
    """Read every user that holds an accepted event back, and sum their event counts.

    A local read first lets the stream settle (the evaluator works through the backlog the load
    left), so the first read waits for that; the rest are quick."""
    base_url = base_url.rstrip("/")
    local = threading.local()
    with requests.Session() as session:
        session.get(f"{base_url}/_local/clock", timeout=30).raise_for_status()
        session.get(f"{base_url}/_local/outbox", timeout=settle_timeout).raise_for_status()

    def count(user: str) -> int | None:
        if not hasattr(local, "session"):
            local.session = requests.Session()
        response = local.session.get(f"{base_url}/_local/users/{user}", timeout=settle_timeout)
        if response.status_code == 404:
            return None
        response.raise_for_status()
        return sum(int(n) for n in response.json()["event_counts"].values())

    with ThreadPoolExecutor(max_workers=readers, thread_name_prefix="load-verify") as pool:
        counts = list(pool.map(count, sorted(result.users)))
    result.missing_users = sum(1 for c in counts if c is None)
    result.counted_events = sum(c for c in counts if c is not None)
    return result


def cpu_seconds() -> float:
    """CPU time (user + system) of this process and its live children (the stack's containers),
    from /proc; this process alone where there is no /proc."""
    try:
        tick = os.sysconf("SC_CLK_TCK")
        total = 0.0
        for pid in [os.getpid(), *(child.pid for child in multiprocessing.active_children())]:
            with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
        return total
    except (OSError, ValueError):
        return time.process_time()


def summary(result: LoadResult) -> list[str]:
    """The figures, as lines for a report."""
    retries = ", ".join(f"{s}: {n}" for s, n in sorted(result.retries.items())) or "none"
    errors = ", ".join(f"{s}: {n}" for s, n in sorted(result.errors.items())) or "none"
    lines = [
        f"  batches {result.requests:,} ({result.attempts:,} HTTP requests), {result.clients} clients, "
        f"{result.wall_seconds:.1f} s wall",
        f"  requests/s {result.requests_per_second:,.1f}   events/s {result.events_per_second:,.0f}   "
        f"latency p50 {result.p50 * 1000:,.0f} ms   p99 {result.p99 * 1000:,.0f} ms",
        f"  accepted: {result.accepted_events:,} track events ({result.accepted_messages:,} messages with "
        f"the group calls) for {len(result.users):,} users",
        f"  retried (503 + Retry-After): {retries}   errors: {errors}",
    ]
    if result.cpu_seconds:
        # What the wall time would be with the machine to itself: on a shared machine the wall
        # time measures the neighbours too, the CPU the stack (and the clients) really used does not.
        cores = os.cpu_count() or 1
        bound = cores * result.accepted_events / result.cpu_seconds
        lines.append(
            f"  CPU: {result.cpu_seconds:,.1f} s (stack, its containers and the clients) = "
            f"{result.accepted_events / result.cpu_seconds:,.0f} events per CPU-second, "
            f"at most {bound:,.0f} events/s on {cores} idle cores"
        )
    if result.counted_events is not None:
        verdict = "nothing lost" if result.lost == 0 and not result.missing_users else "MISMATCH"
        settle = f" (settle + read-back {result.settle_seconds:,.1f} s)" if result.settle_seconds else ""
        lines.append(
            f"  loss check{settle}: {result.counted_events:,} events in state for {result.accepted_events:,} "
            f"accepted, {result.missing_users} users missing: {verdict}"
        )
    return lines
