"""Section 8's dollars: the counted requests, units and CPU of one run (bench.cost) priced at AWS's
public on-demand rates, component by component (the prices and billing assumptions live in
bench.cost, beside what they price)."""

from __future__ import annotations

from dataclasses import dataclass

from bench.cost import (
    INVOCATION_OVERHEAD_SECONDS,
    MEMORY_GB,
    PRICE_DYNAMO_READ_UNIT,
    PRICE_DYNAMO_WRITE_UNIT,
    PRICE_HTTP_API_REQUEST,
    PRICE_LAMBDA_GB_SECOND,
    PRICE_LAMBDA_REQUEST,
    PRICE_SQS_REQUEST,
    ROUND_TRIP_SECONDS,
    STAGES,
    Cpu,
    Run,
)


@dataclass(frozen=True)
class Line:
    component: str
    per_thousand: str  # what is counted, per 1,000 events
    dollars_per_million: float


def price(run: Run, cpu: Cpu) -> list[Line]:
    per_k = 1_000 / run.events
    m = 1_000  # per million events = per thousand x 1,000
    s = run.stages
    cpu_per = {
        "ingest": cpu.ingest_seconds / cpu.bodies,
        "evaluate": cpu.evaluate_seconds / max(cpu.users, 1),
        "dispatch": cpu.dispatch_seconds / max(cpu.batches, 1),
    }
    work = {
        "ingest": cpu_per["ingest"] * run.bodies,
        "rollups": run.rollup_cpu_seconds,
        "evaluate": cpu_per["evaluate"] * run.users_evaluated,
        "dispatch": cpu_per["dispatch"] * run.batches,
    }
    lines = [
        Line(
            "HTTP API requests",
            f"{run.bodies * per_k:.1f} requests",
            run.bodies * per_k * m * PRICE_HTTP_API_REQUEST,
        )
    ]
    for name in STAGES:
        stage = s[name]
        seconds = (
            work[name]
            + stage.invocations * INVOCATION_OVERHEAD_SECONDS
            + stage.aws_requests * ROUND_TRIP_SECONDS
        )
        lines.append(
            Line(
                f"Lambda {name}: requests",
                f"{stage.invocations * per_k:.2f} invocations",
                stage.invocations * per_k * m * PRICE_LAMBDA_REQUEST,
            )
        )
        lines.append(
            Line(
                f"Lambda {name}: duration",
                f"{seconds * per_k * 1000:,.0f} ms ({work[name] * per_k * 1000:,.0f} CPU + "
                f"{stage.aws_requests * per_k:.1f} AWS requests)",
                seconds * per_k * m * MEMORY_GB * PRICE_LAMBDA_GB_SECOND,
            )
        )
    # The sweep's work per user due: reads, evaluations and writes (its fixed cost per run apart).
    sweep_seconds = cpu_per["evaluate"] * run.swept + s["sweep"].aws_requests * ROUND_TRIP_SECONDS
    lines.append(
        Line(
            "Lambda sweep: duration",
            f"{sweep_seconds * per_k * 1000:,.0f} ms ({run.swept * per_k:.1f} users due, "
            f"{s['sweep'].aws_requests * per_k:.1f} AWS requests)",
            sweep_seconds * per_k * m * MEMORY_GB * PRICE_LAMBDA_GB_SECOND,
        )
    )
    for name in (*STAGES, "sweep"):
        t = s[name].tally
        wru = t.write_units + s[name].index_writes
        lines.append(
            Line(
                f"DynamoDB {name}: writes",
                f"{wru * per_k:.1f} WRU ({t.write_units * per_k:.1f} table + "
                f"{s[name].index_writes * per_k:.1f} index)",
                wru * per_k * m * PRICE_DYNAMO_WRITE_UNIT,
            )
        )
        lines.append(
            Line(
                f"DynamoDB {name}: reads",
                f"{t.read_units * per_k:.1f} RRU",
                t.read_units * per_k * m * PRICE_DYNAMO_READ_UNIT,
            )
        )
    # The decisions the stream evaluator and the sweep publish.
    published = s["evaluate"].sqs + s["sweep"].sqs
    decision_messages = (
        published["SendMessage"] + published["SendMessageBatch"] + published["messages in SendMessageBatch"]
    )
    decision_requests = published["SendMessage"] + published["SendMessageBatch"] + 2 * decision_messages
    lines.append(
        Line(
            "SQS decision queue",
            f"{decision_requests * per_k:.1f} requests ({decision_messages * per_k:.1f} messages)",
            decision_requests * per_k * m * PRICE_SQS_REQUEST,
        )
    )
    channel_sends = s["dispatch"].sqs["SendMessage"] + s["dispatch"].sqs["SendMessageBatch"]
    channel_messages = (
        s["dispatch"].sqs["SendMessage"]
        + s["dispatch"].sqs["SendMessageBatch"]
        + s["dispatch"].sqs["messages in SendMessageBatch"]
    )
    channel_requests = channel_sends + 2 * channel_messages
    lines.append(
        Line(
            "SQS channel queues",
            f"{channel_requests * per_k:.1f} requests ({channel_messages * per_k:.1f} messages)",
            channel_requests * per_k * m * PRICE_SQS_REQUEST,
        )
    )
    return lines
