"""The bench's report text for the store's sections: ingest CPU, DynamoDB requests and units per 1,000
events, dollars per million, adversarial bodies; and the tables they share."""

from __future__ import annotations

import cProfile
import pstats
from collections.abc import Sequence
from datetime import datetime

from bench import bodies as bodies_bench
from bench import cost as cost_bench
from bench import cost_prices, sample
from bench.ingest import (
    DynamoRun,
    Throughput,
    validate_and_fold,
)
from bench.rollup_stream import QUIET_INTERVAL, batching_window, quiet_requests_per_batch
from nudge.rulebook.plan import TrackingPlan


def cpu_table(results: list[Throughput]) -> str:
    baseline = next(r for r in results if "baseline" in r.name)
    rows = [("step (one core)", "events", "CPU s", "events/s", "time / baseline")]
    for r in results:
        rows.append(
            (
                r.name,
                f"{r.events:,}",
                f"{r.seconds:.3f}",
                f"{r.per_second:,.0f}",
                f"{r.seconds / baseline.seconds:.2f}x",
            )
        )
    return table(rows)


def rollup_batches(every: int | None) -> str:
    if every:
        return f"  rollup function: the stream records of {every} requests a batch (--rollup-every)"
    return (
        f"  rollup function: the stream records of {quiet_requests_per_batch()} requests a batch (a quiet "
        f"stream: a request every {QUIET_INTERVAL:g} s, RollupFunction's MaximumBatchingWindowInSeconds "
        f"{batching_window():g} in template.yaml)"
    )


def dynamo_report(run: DynamoRun) -> str:
    first, twice = run.phases
    t, u = first.tally, twice.tally
    per = 1_000 / first.events
    floor = first.floor_requests  # one request, and one 1-KB write, per distinct user per request
    rows = [
        ("per 1,000 events", "measured", "floor", "ratio"),
        (
            "write requests",
            f"{t.write_requests * per:.1f}",
            f"{floor * per:.1f}",
            ratio(t.write_requests, floor),
        ),
        (
            "write units (WCU)",
            f"{t.write_units * per:.1f}",
            f"{floor * per:.1f}",
            ratio(t.write_units, floor),
        ),
        ("read requests", f"{t.read_requests * per:.1f}", "", ""),
        ("read units (RCU, strongly consistent)", f"{t.read_units * per:.1f}", "", ""),
        ("posted twice: write requests", f"{u.write_requests * per:.1f}", "0.0", ""),
        ("posted twice: write units (WCU)", f"{u.write_units * per:.1f}", "0.0", ""),
        ("posted twice: read requests", f"{u.read_requests * per:.1f}", "", ""),
        ("posted twice: read units (RCU)", f"{u.read_units * per:.1f}", "", ""),
    ]
    ops = ", ".join(f"{op} {n * per:.1f}" for op, n in sorted(t.requests.items()))
    kinds = [("write units by item kind, per 1,000 events", "items", "in txn", "WCU", "mean B", "max B")]
    for kind in sorted(t.items, key=lambda k: -t.units[k]):
        kinds.append(
            (
                kind,
                f"{t.items[kind] * per:.1f}",
                f"{t.transaction_items[kind] * per:.1f}",
                f"{t.units[kind] * per:.1f}",
                f"{t.item_bytes[kind] / t.items[kind]:,.0f}",
                f"{t.largest[kind]:,}",
            )
        )
    return "\n".join(
        [
            table(rows),
            f"  floor: per ingest request, one write of at most 1 KB per distinct user in it "
            f"({first.ingest_requests} requests, {floor:,} request-user pairs)",
            f"  requests by operation, per 1,000 events: {ops}",
            "",
            table(kinds),
            "  WCU = ceil(item size / 1 KB) per item (larger of before and after), x2 inside "
            "TransactWriteItems",
            f"  table: {run.table_source}; moto time {first.seconds:.1f} s (first post), "
            f"{twice.seconds:.1f} s (posted twice)",
        ]
    )


def cost_report(run: cost_bench.Run, cpu: cost_bench.Cpu) -> str:
    lines = cost_prices.price(run, cpu)
    total = sum(line.dollars_per_million for line in lines)
    rows = [("component", "per 1,000 events", "$ per million events", "share")]
    for line in lines:
        rows.append(
            (
                line.component,
                line.per_thousand,
                f"{line.dollars_per_million:.4f}",
                f"{line.dollars_per_million / total:.0%}",
            )
        )
    rows.append(("total", "", f"{total:.3f}", "100%"))
    groups: dict[str, float] = {}
    for line in lines:
        group = line.component.split(":")[0].split(" ")[0]
        groups[group] = groups.get(group, 0.0) + line.dollars_per_million
    per_k = 1_000 / run.events
    s = run.stages
    return "\n".join(
        [
            table(rows),
            "  by service: " + ", ".join(f"{name} ${dollars:.3f}" for name, dollars in groups.items()),
            f"  pipeline per 1,000 events: {run.bodies * per_k:.0f} ingest requests; "
            f"{run.rollup_records * per_k:.1f} rollup records "
            f"({s['rollups'].invocations * per_k:.2f} batches); "
            f"{run.stream_records * per_k:.1f} stream records after the evaluator's filter "
            f"({run.account_changes * per_k:.1f} account trait changes); "
            f"{run.users_evaluated * per_k:.1f} user evaluations; {run.batches * per_k:.1f} decision batches "
            f"({run.decisions * per_k:.1f} decisions); {run.routed * per_k:.1f} deliveries routed",
            "  AWS requests per invocation: "
            + ", ".join(
                f"{name} {stage.aws_requests / max(stage.invocations, 1):.1f}" for name, stage in s.items()
            ),
            f"  CPU of the pure work (in memory): ingest {cpu.ingest_seconds / cpu.bodies * 1000:.1f} ms per "
            f"request; evaluate {cpu.evaluate_seconds / max(cpu.users, 1) * 1e6:.0f} us per user; dispatch "
            f"{cpu.dispatch_seconds / max(cpu.batches, 1) * 1e6:.0f} us per batch",
            "  DynamoDB requests per 1,000 events: "
            + "; ".join(
                f"{name} "
                + ", ".join(f"{op} {n * per_k:.1f}" for op, n in sorted(stage.tally.requests.items()))
                for name, stage in s.items()
            ),
            *(f"  assumption: {text}" for text in cost_bench.ASSUMPTIONS),
            f"  moto wall time, for information: {run.seconds:.0f} s",
        ]
    )


def bodies_report(rows: list[bodies_bench.Row]) -> str:
    sizes = [p.size_kb for p in rows[0].points]
    largest, smallest = max(sizes), min(sizes)
    header = (
        "body",
        *(f"{kb} KB us/KB" for kb in sizes),
        f"{largest}/{smallest} KB",
        "worst",
        "answer at 500 KB",
    )
    grid = [header]
    for row in rows:
        last = row.points[-1].answer
        answer = (
            f"{last.status}, {last.accepted} accepted, {last.errors} refused, "
            f"{last.body_bytes / bodies_bench.KB:,.0f} KB"
        )
        worst = max(row.ratio(largest, kb) for kb in sizes)
        grid.append(
            (
                row.kind,
                *(f"{p.us_per_kb:,.0f}" for p in row.points),
                f"{row.ratio(largest, smallest):.2f}x",
                f"{worst:.2f}x",
                answer,
            )
        )
    flat = all(row.flat for row in rows if row.kind != bodies_bench.PLAIN)
    lines = [
        table(grid),
        f"  us/KB: CPU microseconds per KB of body; {largest}/{smallest} KB: time per KB of the largest body "
        f"over the smallest's; worst: the largest body's time per KB over any smaller body's",
        "  every body goes through the whole handler: size limit, depth scan, key, routing and validation, "
        "the batch's per-message checks, the ingest service and fold, each state encoded as DynamoDB's "
        "adapter does, the answer",
        f"  flat (worst under {bodies_bench.FLAT:.0f}x for every adversarial body): "
        + ("yes" if flat else "NO"),
    ]
    return "\n".join(lines)


WRITES = ("PutItem", "UpdateItem", "DeleteItem", "TransactWriteItems", "BatchWriteItem")


def ratio(measured: float, floor: float) -> str:
    return f"{measured / floor:.2f}x" if floor else "-"


def table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    out = []
    for n, row in enumerate(rows):
        cells = [row[0].ljust(widths[0])]
        cells.extend(cell.rjust(width) for cell, width in zip(row[1:], widths[1:], strict=True))
        out.append("  " + "  ".join(cells))
        if n == 0:
            out.append("  " + "  ".join("-" * width for width in widths))
    return "\n".join(out)


def profile(bodies: list[sample.Body], plan: TrackingPlan, now: datetime) -> None:
    print("\nProfile of json.loads + Batch + group + fold (cProfile; times inflated by profiling):")
    profiler = cProfile.Profile()
    profiler.runcall(validate_and_fold, bodies, plan, now)
    stats = pstats.Stats(profiler)
    stats.sort_stats("tottime").print_stats(15)
    stats.sort_stats("cumulative").print_stats(20)
