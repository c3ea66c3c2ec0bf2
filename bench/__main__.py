"""`make bench` (python -m bench): ingest CPU per core and DynamoDB cost per event, in one run."""

from __future__ import annotations

import argparse
import cProfile
import os
import platform
import pstats
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import pydantic

from bench import sample
from bench.ingest import (
    DynamoRun,
    Throughput,
    dynamo_writes,
    fixed_now,
    throughput,
    validate_and_fold,
)
from nudge.rules.plan import TrackingPlan, load_plan

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--events", type=int, default=50_000, help="sample messages for the CPU benchmark")
    parser.add_argument(
        "--dynamo-events", type=int, default=20_000, help="sample messages for the DynamoDB benchmark"
    )
    parser.add_argument("--repeats", type=int, default=3, help="CPU timings: best of this many runs")
    parser.add_argument("--profile", action="store_true", help="also profile validate+fold (cProfile)")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    print(_machine(sys.argv[1:] if argv is None else argv))
    plan = load_plan(ROOT / "rules")
    messages = sample.sample_messages(max(args.events, args.dynamo_events))
    cpu_bodies = sample.batches(messages[: args.events])
    dynamo_bodies = sample.batches(messages[: args.dynamo_events])
    now = fixed_now(cpu_bodies)
    print(
        f"  sample  : nudge.samples.generator users={sample.USERS} accounts={sample.ACCOUNTS} "
        f"days={sample.DAYS} seed={sample.SEED} start={sample.START:%Y-%m-%d}, in /v1/batch bodies of "
        f"{sample.BATCH_SIZE} messages (JSON strings)"
    )

    print(
        f"\n1-2. Validate + fold: first {sum(b.messages for b in cpu_bodies):,} messages, "
        f"{len(cpu_bodies)} bodies; one process, one thread; best of {args.repeats}; "
        f"now = {now:%Y-%m-%d %H:%M}Z"
    )
    print(_cpu_table(throughput(cpu_bodies, plan, now, args.repeats)))

    print(
        f"\n3. DynamoDB: the ingest service on DynamoUsageStore (moto), first "
        f"{sum(b.messages for b in dynamo_bodies):,} messages in {len(dynamo_bodies)} requests, "
        "each posted twice"
    )
    print(_dynamo_report(dynamo_writes(dynamo_bodies, plan)))

    if args.profile:
        _profile(cpu_bodies, plan, now)
    print(f"\nTotal bench time: {time.perf_counter() - started:.0f} s")
    return 0


def _machine(args: list[str]) -> str:
    command = " ".join(["python -m bench", *args])
    return "\n".join(
        [
            "Nudge ingest benchmark",
            f"  command : make bench   ({command})",
            f"  date    : {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
            f"  machine : {_cpu_model()}, {os.cpu_count()} cores, {platform.system()} {platform.machine()}, "
            f"load average {_load()}",
            f"  python  : {platform.python_implementation()} {platform.python_version()}, "
            f"pydantic {pydantic.VERSION}",
        ]
    )


def _load() -> str:
    try:
        return f"{os.getloadavg()[0]:.1f}"
    except OSError:
        return "unknown"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _cpu_table(results: list[Throughput]) -> str:
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
    return _table(rows)


def _dynamo_report(run: DynamoRun) -> str:
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
            _ratio(t.write_requests, floor),
        ),
        (
            "write units (WCU)",
            f"{t.write_units * per:.1f}",
            f"{floor * per:.1f}",
            _ratio(t.write_units, floor),
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
            _table(rows),
            f"  floor: per ingest request, one write of at most 1 KB per distinct user in it "
            f"({first.ingest_requests} requests, {floor:,} request-user pairs)",
            f"  requests by operation, per 1,000 events: {ops}",
            "",
            _table(kinds),
            "  WCU = ceil(item size / 1 KB) per item (larger of before and after), x2 inside "
            "TransactWriteItems",
            f"  table: {run.table_source}; moto time {first.seconds:.1f} s (first post), "
            f"{twice.seconds:.1f} s (posted twice)",
        ]
    )


def _ratio(measured: float, floor: float) -> str:
    return f"{measured / floor:.2f}x" if floor else "-"


def _table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    out = []
    for n, row in enumerate(rows):
        cells = [row[0].ljust(widths[0])]
        cells.extend(cell.rjust(width) for cell, width in zip(row[1:], widths[1:], strict=True))
        out.append("  " + "  ".join(cells))
        if n == 0:
            out.append("  " + "  ".join("-" * width for width in widths))
    return "\n".join(out)


def _profile(bodies: list[sample.Body], plan: TrackingPlan, now: datetime) -> None:
    print("\nProfile of json.loads + Batch + group + fold (cProfile; times inflated by profiling):")
    profiler = cProfile.Profile()
    profiler.runcall(validate_and_fold, bodies, plan, now)
    stats = pstats.Stats(profiler)
    stats.sort_stats("tottime").print_stats(15)
    stats.sort_stats("cumulative").print_stats(20)


if __name__ == "__main__":
    raise SystemExit(main())
