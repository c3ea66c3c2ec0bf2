"""The latency bench's figures (bench.latency measures them): what one run at one offered rate
recorded (`Run`: posts and per-user stamps) and its latencies and rates, the report's lines, and
what template.yaml's event sources and Lambda's polling would add on AWS (`hops`, `aws_implied`).
Arithmetic only: nothing here starts a stack or posts anything.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from nudge.tools.local.template import load_template

ROOT = Path(__file__).resolve().parent.parent
EVALUATE, DISPATCH, EMAIL = "EvaluateFunction", "DispatchFunction", "EmailFunction"


@dataclass
class Stamps:
    """When each user's event reached each stage (wall clock, seconds); first time only."""

    decided: dict[str, float] = field(default_factory=dict)  # decision on the decision queue
    dispatched: dict[str, float] = field(default_factory=dict)  # dispatch invocation returned
    sent: dict[str, float] = field(default_factory=dict)  # email invocation returned
    durations: dict[str, list[float]] = field(default_factory=dict)  # function -> invocation seconds


@dataclass
class Post:
    """One /v1/batch body of the run: its users, when it was due, when it went and came back."""

    users: list[str]
    scheduled: float
    started: float = 0.0
    acked: float = 0.0
    status: int = 0
    accepted: int = 0
    attempts: int = 0


@dataclass
class Run:
    offered: float  # events/s
    seconds: float  # offered for this long
    batch: int
    posts: list[Post]
    stamps: Stamps
    durations: dict[str, list[float]] = field(default_factory=dict)  # function -> seconds, this run
    drained: bool = False  # every accepted event was sent before the deadline
    ledger_sent: int = 0  # ledger entries `sent` for the run's rule and users
    ledger_decisions: int = 0

    @property
    def users(self) -> list[str]:
        return [u for p in self.posts if p.status == 200 for u in p.users]

    @property
    def events(self) -> int:
        return sum(len(p.users) for p in self.posts)

    @property
    def accepted(self) -> int:
        return sum(p.accepted for p in self.posts if p.status == 200)

    @property
    def errors(self) -> int:
        return sum(1 for p in self.posts if p.status != 200)

    @property
    def retries(self) -> int:
        return sum(p.attempts - 1 for p in self.posts)

    def _posted_at(self) -> dict[str, float]:
        return {u: p.scheduled for p in self.posts if p.status == 200 for u in p.users}

    def latencies(self, stage: str) -> list[float]:
        """Seconds from each event's scheduled post to `stage` (ack, decided, dispatched, sent)."""
        if stage == "ack":
            return [p.acked - p.scheduled for p in self.posts if p.status == 200 for _ in p.users]
        stamps: dict[str, float] = getattr(self.stamps, stage)
        return [stamps[u] - at for u, at in self._posted_at().items() if u in stamps]

    @property
    def achieved(self) -> float:
        """Events accepted per second, from the first scheduled post to the last 200."""
        done = [p for p in self.posts if p.status == 200]
        if not done:
            return 0.0
        span = max(p.acked for p in done) - min(p.scheduled for p in self.posts)
        return self.accepted / span if span > 0 else 0.0

    @property
    def throughput(self) -> float:
        """Events sent per second, end to end: from the first scheduled post to the last send."""
        sent = [self.stamps.sent[u] for u in self.users if u in self.stamps.sent]
        if not sent:
            return 0.0
        span = max(sent) - min(p.scheduled for p in self.posts)
        return len(sent) / span if span > 0 else 0.0

    @property
    def lag(self) -> float:
        """How late the last body left (every sender busy): the generator's own shortfall."""
        return max((p.started - p.scheduled for p in self.posts), default=0.0)

    @property
    def lost(self) -> int:
        """Accepted events with no send (0 when nothing was lost)."""
        return len(self.users) - sum(1 for u in self.users if u in self.stamps.sent)


def percentile(values: Sequence[float], p: float) -> float:
    """The p-th percentile (nearest rank); 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, round(p / 100 * len(ordered) + 0.5 - 1e-9))
    return ordered[min(rank, len(ordered)) - 1]


# -- what the template's settings imply on AWS


@dataclass(frozen=True)
class Hop:
    """One event source mapping on the way from event to send, as template.yaml sets it."""

    function: str
    source: str  # DynamoDB | SQS
    batch_size: int
    window: float  # MaximumBatchingWindowInSeconds (0: none)
    poll: float  # seconds between polls when idle (see POLLING)


# Lambda polls a DynamoDB stream's shards 4 times a second
# (https://docs.aws.amazon.com/lambda/latest/dg/with-ddb.html, "Polling and batching streams");
# an SQS event source long-polls, so a message is received as soon as it is visible
# (https://docs.aws.amazon.com/lambda/latest/dg/with-sqs.html).
POLLING = {"DynamoDB": 0.25, "SQS": 0.0}
# Lambda's defaults when the template leaves them out (services-ddb-params, services-sqs-parameters).
DEFAULT_BATCH = {"DynamoDB": 100, "SQS": 10}


def hops(template_path: Path | None = None) -> list[Hop]:
    """The evaluate, dispatch and email functions' event sources, read from template.yaml."""
    resources = load_template(template_path or ROOT / "template.yaml")["Resources"]
    out = []
    for function in (EVALUATE, DISPATCH, EMAIL):
        events = resources[function]["Properties"]["Events"]
        kind, props = next(
            (e["Type"], e["Properties"]) for e in events.values() if e["Type"] in ("DynamoDB", "SQS")
        )
        out.append(
            Hop(
                function=function,
                source=kind,
                batch_size=int(props.get("BatchSize", DEFAULT_BATCH[kind])),
                window=float(props.get("MaximumBatchingWindowInSeconds", 0)),
                poll=POLLING[kind],
            )
        )
    return out


def window_wait(hop: Hop, rate: float) -> float:
    """The longest an event waits for its batch at `rate` events/s into this hop: the window, or
    less when a full batch arrives sooner (one poller; more pollers split the rate, and wait longer)."""
    if hop.window <= 0:
        return 0.0
    return min(hop.window, hop.batch_size / rate) if rate > 0 else hop.window


def aws_implied(hop_list: Sequence[Hop], rate: float) -> tuple[float, float]:
    """(to decision, to send): seconds the template's windows and Lambda's polling add at most, at
    `rate` events/s, each event leading to one decision and one send. Handler run times not included."""
    evaluate = next(h for h in hop_list if h.function == EVALUATE)
    later = [h for h in hop_list if h.function != EVALUATE]
    decision = evaluate.poll + window_wait(evaluate, rate)
    return decision, decision + sum(h.poll + window_wait(h, rate) for h in later)


# -- the report


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:,.0f}"


def _triple(values: Sequence[float]) -> str:
    return " / ".join(_ms(percentile(values, p)) for p in (50, 95, 99))


def report(runs: Sequence[Run], hop_list: Sequence[Hop]) -> list[str]:
    """The figures of `runs` as lines: a table per load, then how they map to AWS."""
    rows = [
        (
            "offered ev/s",
            "events",
            "accepted ev/s",
            "sent ev/s",
            "ack p50/p95/p99 ms",
            "decision p50/p95/p99 ms",
            "send p50/p95/p99 ms",
            "AWS adds: decision / send s",
            "accounted for",
        )
    ]
    for run in runs:
        to_decision, to_send = aws_implied(hop_list, run.offered)
        rows.append(
            (
                f"{run.offered:,.0f}",
                f"{run.events:,}",
                f"{run.achieved:,.0f}",
                f"{run.throughput:,.1f}",
                _triple(run.latencies("ack")),
                _triple(run.latencies("decided")),
                _triple(run.latencies("sent")),
                f"{to_decision:.2f} / {to_send:.2f}",
                _accounted(run),
            )
        )
    lines = [_table(rows)]
    lines.append(
        "  latency from each event's scheduled post (open loop) to: ack = its body's 200; decision = the "
        "decision on the decision queue (SQS SentTimestamp); send = the email function's invocation that "
        "sent it returned"
    )
    lines.append(
        "  accepted ev/s: events answered 200 per second from the first scheduled post to the last 200; "
        "sent ev/s: events sent per second from the first scheduled post to the last send (end to end)"
    )
    for run in runs:
        stage = []
        for name, fid in (("evaluate", EVALUATE), ("dispatch", DISPATCH), ("email", EMAIL)):
            runs_of = run.durations.get(fid, [])
            stage.append(f"{name} {_ms(percentile(runs_of, 50))} ms x {len(runs_of)}")
        lines.append(
            f"  {run.offered:,.0f} ev/s: {run.errors} errors, {run.retries} retried 503s, the generator "
            f"{run.lag:.2f} s late at most; handler runs (median x invocations): {', '.join(stage)}; "
            f"decision -> dispatched -> sent p50: {_ms(_gap(run, 'decided', 'dispatched'))} ms, "
            f"{_ms(_gap(run, 'dispatched', 'sent'))} ms"
        )
    best = max(runs, key=lambda r: r.throughput)
    lines.append(
        f"  sustained, end to end on this machine: {best.throughput:,.1f} events/s decided and sent (the "
        f"{best.offered:,.0f} ev/s run); accepted at the API: up to {max(r.achieved for r in runs):,.0f} ev/s"
    )
    lines.append("  on AWS, the template's event sources (template.yaml) and Lambda's polling:")
    for hop in hop_list:
        poll = "4 polls/s per shard" if hop.source == "DynamoDB" else "long polling"
        window = f"window {hop.window:g} s" if hop.window else "no window"
        lines.append(f"    {hop.function}: {hop.source}, BatchSize {hop.batch_size}, {window}, {poll}")
    evaluate = next(h for h in hop_list if h.function == EVALUATE)
    later = sum(h.window for h in hop_list if h.function != EVALUATE)
    lines.append(
        f"  AWS adds (column above): Lambda's stream poll ({evaluate.poll:g} s) + the stream window, or the "
        f"time a full batch of {evaluate.batch_size} takes to arrive at that rate if sooner, to a decision; "
        f"then the same for the decision queue (BatchSize, window) and the email queue, to a send: "
        f"with one shard and one poller per queue; handler run times (above, on moto) come on top"
    )
    quiet = evaluate.poll + evaluate.window
    lines.append(
        f"  at low traffic the windows run out: up to {quiet:.2f} s to a decision and "
        f"{quiet + later:.2f} s to a send, plus handler run times (and up to 20 s "
        "on the decision queue when it is nearly idle: AWS's note on SQS batching windows)"
    )
    lines.append(
        "  the local stack waits for none of these windows: `nudge serve` pumps the stream and the queues "
        "every second (start_background), one after the other, so its latency is that loop plus the work "
        "queued ahead on 2 shared cores and one moto server"
    )
    return lines


def _gap(run: Run, first: str, then: str) -> float:
    a: dict[str, float] = getattr(run.stamps, first)
    b: dict[str, float] = getattr(run.stamps, then)
    return percentile([b[u] - a[u] for u in run.users if u in a and u in b], 50)


def _accounted(run: Run) -> str:
    users = run.users
    decided = sum(1 for u in users if u in run.stamps.decided)
    sent = sum(1 for u in users if u in run.stamps.sent)
    if run.errors == 0 and decided == sent == run.ledger_sent == len(users) == run.events:
        return f"all {run.events:,}"
    return (
        f"MISMATCH: {run.events:,} posted, {len(users):,} accepted, {decided:,} decided, {sent:,} sent, "
        f"ledger {run.ledger_sent:,} sent"
    )


def _table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    out = []
    for n, row in enumerate(rows):
        cells = [row[0].rjust(widths[0])]
        cells.extend(cell.rjust(width) for cell, width in zip(row[1:], widths[1:], strict=True))
        out.append("  " + "  ".join(cells))
        if n == 0:
            out.append("  " + "  ".join("-" * width for width in widths))
    return "\n".join(out)
