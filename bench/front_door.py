"""Cost per million events at one event a request (browser and mobile SDKs), and the front doors
compared (BENCHMARKS.md section 8).

The same sample as section 8's batched case, each message its own request. Designs:

- **today**: HTTP API -> ingest Lambda writing each request at once (one user write per event).
- **function URL, at once**: the same function behind a Lambda function URL (no API Gateway fee).
- **HTTP API + queue**, **function URL + queue** (built): the function checks and answers each
  request, puts its messages on the ingest queue (SQS); the queue's consumer folds a batch of
  `consumer_batch` queued messages at a time with the same ingest service (one write per user per
  batch).
- **function URL + Kinesis** (priced, not built): the same with a Kinesis data stream in place of
  the queue.

The per-request work is counted as bench.cost counts it: the ingest service on moto for the
writes, the pure work's CPU in memory. The consumer's batches are the sample's messages in arrival
order, `consumer_batch` at a time, which is exactly how section 8 cuts its bodies: the consumer's
rows are section 8's rows for that batch size, less the HTTP API.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace
from datetime import datetime

from bench.cost import (
    INVOCATION_OVERHEAD_SECONDS,
    MEMORY_GB,
    PRICE_DYNAMO_WRITE_UNIT,
    PRICE_HTTP_API_REQUEST,
    PRICE_LAMBDA_GB_SECOND,
    PRICE_LAMBDA_REQUEST,
    PRICE_SQS_REQUEST,
    ROUND_TRIP_SECONDS,
    SQS_BATCH_SIZE,
    STREAM_BATCH_SIZE,
    Cpu,
    Run,
    cpu_pass,
    requests_pass,
)
from bench.cost_prices import Line, price
from bench.sample import Body, batches
from nudge.adapters.memory import MemoryIngestBuffer
from nudge.domain.keys import DEFAULT_RATE_LIMIT
from nudge.model.messages import Batch, InvalidMessage
from nudge.observability import quiet_logs
from nudge.rulebook.ruleset import RuleSet
from nudge.services.buffer import enqueue
from nudge.services.rate_limit import LEASE_SHARE, WINDOW_SECONDS

# Kinesis Data Streams, provisioned, us-east-1: $0.014 per million PUT payload units (25 KB each:
# one event is one unit) and $0.015 per shard-hour (1,000 records/s or 1 MB/s in per shard).
PRICE_KINESIS_PUT_UNIT = 0.014 / 1e6
PRICE_KINESIS_SHARD_HOUR = 0.015
# The ingest queue's event source (template.yaml IngestQueueFunction): Lambda's pollers receive up
# to 10 messages per ReceiveMessage and delete them 10 per DeleteMessageBatch.
SQS_RECEIVE_BATCH = 10
# Client keys (browsers, apps) are rate-limited per key on the rate-limit table, 1 WRU per
# conditional UpdateItem (the item is under 1 KB): today (main) one per request; with
# LeasedRateCounter one per lease, 1% of the window's budget: 10 messages at the default 100/s
# (traffic near the key's limit; a container seeing less takes a lease per window instead).
RATE_WRU_PER_REQUEST_TODAY = 1.0
RATE_WRU_PER_REQUEST_LEASED = 1 / max(1, DEFAULT_RATE_LIMIT * WINDOW_SECONDS // LEASE_SHARE)
# template.yaml's IngestQueueFunction event source: BatchSize and MaximumBatchingWindowInSeconds.
CONSUMER_BATCH = 1000
CONSUMER_WINDOW_SECONDS = 5

ASSUMPTIONS = [
    "one event a request: each sample message its own request (the SDK's /v1/t, /v1/p, ... as a "
    "body of one message), with a client key at its default limit (100 messages/s): today one "
    "rate-limit UpdateItem (1 WRU, 10 ms) per request; leased (LeasedRateCounter), one per 10",
    "the evaluator and dispatch under one-event traffic: busy stream and queue, full batches "
    f"({STREAM_BATCH_SIZE} stream records, {SQS_BATCH_SIZE} decision batches per invocation)",
    "the front door function: CPU of parse + validate + checks + packing (measured in memory), "
    f"{INVOCATION_OVERHEAD_SECONDS * 1000:.0f} ms per invocation, {ROUND_TRIP_SECONDS * 1000:.0f} ms "
    "per AWS request (the queue send; the rate counter's on its own line)",
    f"the ingest queue: one SendMessageBatch per request; Lambda's pollers receive and delete "
    f"{SQS_RECEIVE_BATCH} messages per request; SQS standard $0.40/M requests",
    "Kinesis (priced only): provisioned, $0.014/M PUT payload units (one per event), "
    "$0.015 per shard-hour not per event (shown apart)",
    "HTTP API $1.00/M requests; a function URL costs its Lambda invocation only",
]


@dataclass(frozen=True)
class Design:
    name: str
    lines: list[Line]
    latency: str

    @property
    def total(self) -> float:
        return sum(line.dollars_per_million for line in self.lines)


@dataclass(frozen=True)
class FrontCpu:
    seconds: float
    requests: int
    bodies_put: int


def one_event_bodies(messages: list[dict]) -> list[Body]:  # type: ignore[type-arg]
    """Each message as its own request, received when its SDK would send it."""
    return batches(messages, 1)


def front_cpu(bodies: list[Body], rules: RuleSet) -> FrontCpu:
    """CPU of the buffered front door's pure work per request: parse, validate, check, pack."""
    buffer = MemoryIngestBuffer()
    clock = time.process_time
    spent = 0.0
    with quiet_logs():
        for body in bodies:
            t = clock()
            batch = Batch.model_validate(json.loads(body.json))
            messages = [(i, m) for i, m in enumerate(batch.batch) if not isinstance(m, InvalidMessage)]
            enqueue(messages, rules.plan, buffer, body.received)
            spent += clock() - t
    return FrontCpu(spent, len(bodies), len(buffer.bodies))


def busy(run: Run) -> Run:
    """The run with the evaluator's and dispatch's invocations as full batches (busy traffic)."""
    stages = dict(run.stages)
    stages["evaluate"] = replace(stages["evaluate"], invocations=-(-run.stream_records // STREAM_BATCH_SIZE))
    stages["dispatch"] = replace(stages["dispatch"], invocations=-(-run.batches // SQS_BATCH_SIZE))
    return replace(run, stages=stages, evaluate_invocations=stages["evaluate"].invocations)


def rate_counter_lines(events: int, requests: int, per_request: float) -> list[Line]:
    per_k = 1_000 / events
    m = 1_000
    wru = requests * per_request
    return [
        Line(
            "DynamoDB rate counter",
            f"{wru * per_k:.1f} WRU",
            wru * per_k * m * PRICE_DYNAMO_WRITE_UNIT,
        ),
        Line(
            "Lambda rate counter: duration",
            f"{wru * per_k * ROUND_TRIP_SECONDS * 1000:,.0f} ms ({wru * per_k:.1f} AWS requests)",
            wru * per_k * ROUND_TRIP_SECONDS * m * MEMORY_GB * PRICE_LAMBDA_GB_SECOND,
        ),
    ]


def front_lines(cpu: FrontCpu, events: int, queue: str) -> list[Line]:
    """The front door function per request: invocation, duration (CPU, overhead, the send and the
    rate counter), and the buffer's own price."""
    per_k = 1_000 / events
    m = 1_000
    aws = cpu.requests  # the put (the rate counter is its own line)
    seconds = cpu.seconds + cpu.requests * INVOCATION_OVERHEAD_SECONDS + aws * ROUND_TRIP_SECONDS
    lines = [
        Line(
            "Lambda front door: requests",
            f"{cpu.requests * per_k:.2f} invocations",
            cpu.requests * per_k * m * PRICE_LAMBDA_REQUEST,
        ),
        Line(
            "Lambda front door: duration",
            f"{seconds * per_k * 1000:,.0f} ms ({cpu.seconds * per_k * 1000:,.0f} CPU + "
            f"{aws * per_k:.1f} AWS requests)",
            seconds * per_k * m * MEMORY_GB * PRICE_LAMBDA_GB_SECOND,
        ),
    ]
    if queue == "sqs":
        sends = cpu.requests
        polled = 2 * -(-cpu.bodies_put // SQS_RECEIVE_BATCH)  # receives and deletes
        lines.append(
            Line(
                "SQS ingest queue",
                f"{(sends + polled) * per_k:.1f} requests ({cpu.bodies_put * per_k:.1f} messages)",
                (sends + polled) * per_k * m * PRICE_SQS_REQUEST,
            )
        )
    else:
        lines.append(
            Line(
                "Kinesis PUT payload units",
                f"{events * per_k:.1f} units",
                events * per_k * m * PRICE_KINESIS_PUT_UNIT,
            )
        )
    return lines


def consumer_lines(run: Run, cpu: Cpu) -> list[Line]:
    """bench.cost's lines for the consumer's batches, less the HTTP API; its ingest stage is the
    queue consumer."""
    return [
        replace(line, component=line.component.replace("ingest", "ingest queue consumer"))
        for line in price(run, cpu)
        if not line.component.startswith("HTTP API")
    ]


def http_api_line(requests: int, events: int) -> Line:
    per_k = 1_000 / events
    return Line(
        "HTTP API requests",
        f"{requests * per_k:.1f} requests",
        requests * per_k * 1_000 * PRICE_HTTP_API_REQUEST,
    )


@dataclass(frozen=True)
class OneEvent:
    events: int
    today: Run
    today_cpu: Cpu
    front: FrontCpu
    consumer: Run
    consumer_cpu: Cpu
    consumer_batch: int
    window_seconds: int
    started: datetime | None = None

    def designs(self) -> list[Design]:
        n = self.events
        today_rate = rate_counter_lines(n, n, RATE_WRU_PER_REQUEST_TODAY)
        rate = rate_counter_lines(n, n, RATE_WRU_PER_REQUEST_LEASED)
        at_once = [
            line
            for line in price(busy(self.today), self.today_cpu)
            if not line.component.startswith("HTTP API")
        ]
        consumer = consumer_lines(self.consumer, self.consumer_cpu)
        wait = f"up to {self.window_seconds} s batching window + poll"
        return [
            Design("today: HTTP API, written at once", [http_api_line(n, n), *at_once, *today_rate], "none"),
            Design("function URL, written at once (leased counts)", [*at_once, *rate], "none"),
            Design(
                "HTTP API + SQS ingest queue",
                [http_api_line(n, n), *front_lines(self.front, n, "sqs"), *rate, *consumer],
                wait,
            ),
            Design(
                "function URL + SQS ingest queue (built)",
                [*front_lines(self.front, n, "sqs"), *rate, *consumer],
                wait,
            ),
            Design(
                "function URL + Kinesis (priced)",
                [*front_lines(self.front, n, "kinesis"), *rate, *consumer],
                f"{wait}; + $0.015 per shard-hour",
            ),
        ]


def measure(messages: list[dict], rules: RuleSet, consumer_batch: int, window_seconds: int) -> OneEvent:  # type: ignore[type-arg]
    single = one_event_bodies(messages)
    consumer_bodies = batches(messages, consumer_batch)
    return OneEvent(
        events=len(messages),
        # Busy one-event traffic: 100 requests' writes reach the rollup function in one batch.
        today=requests_pass(single, rules, rollup_every=100),
        today_cpu=cpu_pass(single, rules),
        front=front_cpu(single, rules),
        consumer=requests_pass(consumer_bodies, rules),
        consumer_cpu=cpu_pass(consumer_bodies, rules),
        consumer_batch=consumer_batch,
        window_seconds=window_seconds,
    )


def report(result: OneEvent) -> str:
    """Section 8's second table (the built design, component by component), today's path the same
    way, and the designs compared."""
    designs = result.designs()
    out: list[str] = []
    for design in (designs[0], designs[3]):
        rows: list[tuple[str, ...]] = [("component", "per 1,000 events", "$ per million events", "share")]
        rows += [
            (
                line.component,
                line.per_thousand,
                f"{line.dollars_per_million:.4f}",
                f"{line.dollars_per_million / design.total:.0%}",
            )
            for line in design.lines
        ]
        rows.append(("total", "", f"{design.total:.3f}", "100%"))
        out += [f"  {design.name}:", _table(rows), ""]
    table: list[tuple[str, ...]] = [("design", "$ per million events", "latency added")]
    table += [(d.name, f"{d.total:.3f}", d.latency) for d in designs]
    out += ["  designs at one event a request:", _table(table)]
    today, consumer = result.today, result.consumer
    per_k = 1_000 / result.events
    out += [
        f"  written at once: {today.stream_records * per_k:.1f} stream records, "
        f"{today.users_evaluated * per_k:.1f} user evaluations per 1,000 events; queue consumer "
        f"(batches of {result.consumer_batch}): {consumer.stream_records * per_k:.1f} stream records, "
        f"{consumer.users_evaluated * per_k:.1f} user evaluations",
        "  front door CPU (in memory): "
        f"{result.front.seconds / max(result.front.requests, 1) * 1e6:.0f} us per request",
        *(f"  assumption: {text}" for text in ASSUMPTIONS),
        f"  moto wall time, for information: {today.seconds + consumer.seconds:.0f} s",
    ]
    return "\n".join(out)


def _table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for n, row in enumerate(rows):
        cells = [
            cell.ljust(w) if i == 0 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  " + " | ".join(cells))
        if n == 0:
            lines.append("  " + "-+-".join("-" * w for w in widths))
    return "\n".join(lines)
