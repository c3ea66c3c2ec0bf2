"""The bench's report text for the engine's sections: rules, sweep, dispatch, cold start, journeys and
the load over loopback."""

from __future__ import annotations

import tempfile
import time
from datetime import datetime
from pathlib import Path

from bench import coldstart as coldstart_bench
from bench import dispatch as dispatch_bench
from bench import journeys as journeys_bench
from bench import rules as rules_bench
from bench import sweep as sweep_bench
from bench.report_store import WRITES, ratio, table
from nudge.rulebook.ruleset import RuleSet


def journeys_report(repeats: int, users: int = 2_000, dynamo_users: int = 300) -> str:
    rules = journeys_bench.journey_rules()
    population = journeys_bench.users(rules, users)
    cpu = journeys_bench.throughput(rules, population, repeats)
    requests = journeys_bench.dynamo_requests(rules, population[:dynamo_users])
    return "\n".join(
        [
            f"  engine  : {cpu.steps:,} steps of {cpu.users:,} users in {cpu.seconds:.3f} s CPU: "
            f"{cpu.per_second:,.0f} steps advanced per second per core",
            f"  dynamo  : {requests.evaluations:,} evaluations, {requests.advancing:,} advanced an instance "
            f"({requests.steps:,} steps): {requests.writes:,} PutItem "
            f"({requests.writes_per_advancing:.2f} per advancing evaluation, floor 1.00; "
            f"{requests.writes / requests.steps:.2f} per step), "
            f"{requests.reads:,} BatchGetItem (the record's load)",
            "  note    : an update step also writes the user's state once (an identify through ingest); "
            "not counted here (in-memory usage store)",
        ]
    )


LOAD_CONTAINERS = 3


def load_report(clients: int, per_client: int, users: int, accounts: int, batch: int) -> str:
    from bench import load as load_bench
    from nudge.tools.local.http import LocalApiServer
    from nudge.tools.local.stack import LocalStack

    key = "bench-load-key"
    with tempfile.TemporaryDirectory(prefix="nudge-load-") as logs:
        # The functions' logs and metrics go to a file, not into this report.
        stack = LocalStack(
            write_keys=[key],
            containers=LOAD_CONTAINERS,
            log_level="WARNING",
            function_logs=Path(logs) / "functions.log",
        )
        with LocalApiServer(stack) as api, stack:  # the server first: links point at its port
            before = load_bench.cpu_seconds()
            result = load_bench.run_load(
                api.base_url, key, clients, per_client, users, accounts, seed=6, events_per_batch=batch
            )
            result.cpu_seconds = load_bench.cpu_seconds() - before
            began = time.perf_counter()
            result = load_bench.verify(api.base_url, result)
            result.settle_seconds = time.perf_counter() - began
    return "\n".join(load_bench.summary(result))


def rules_report(rules: RuleSet, pop: rules_bench.Population, repeats: int) -> str:
    agreement = rules_bench.check_agreement(rules, pop)
    timings = rules_bench.throughput(rules, pop, repeats)
    ours = next(t for t in timings if t.name == rules_bench.OURS)
    baseline = next(t for t in timings if t.name == rules_bench.BASELINE)
    rows = [("step (one core)", "users", "CPU s", "evaluations/s", "us each", "time / baseline")]
    for t in (baseline, ours):
        rows.append(
            (
                t.name,
                f"{t.evaluations:,}",
                f"{t.seconds:.3f}",
                f"{t.per_second:,.0f}",
                f"{t.micros:.0f}",
                f"{t.seconds / baseline.seconds:.2f}x",
            )
        )
    stages = rules_bench.stages(rules, pop, repeats)
    parts = [("where evaluate()'s time goes (each stage alone)", "us each", "of evaluate", "/ baseline")]
    for t in stages:
        parts.append((t.name, f"{t.micros:.0f}", f"{t.seconds / ours.seconds:.0%}", ""))
    rest = ours.seconds - sum(t.seconds for t in stages)
    parts.append(
        (
            "the rest, by difference (contexts, scores, transition, the engine)",
            f"{rest / ours.evaluations * 1e6:.0f}",
            f"{rest / ours.seconds:.0%}",
            "",
        )
    )
    matching = sum(t.seconds for t in stages[:4])
    parts.append(
        (
            "matching alone: facts + the three durable_rules passes",
            f"{matching / ours.evaluations * 1e6:.0f}",
            f"{matching / ours.seconds:.0%}",
            f"{matching / baseline.seconds:.2f}x",
        )
    )
    segments = ", ".join(f"{name} {n:,}" for name, n in agreement.segments.items())
    fired = ", ".join(f"{name} {n:,}" for name, n in agreement.fired.items())
    return "\n".join(
        [
            f"  users: the {len(pop.users):,} sample users, all {pop.messages:,} messages ingested (in "
            f"memory) at {pop.now:%Y-%m-%d %H:%M}Z; {pop.with_account:,} with an account "
            f"({len(pop.account_states)} accounts: traits from group calls, rollup from ingest)",
            f"  segments: {segments}",
            f"  fired: {fired}; escalations {agreement.escalated:,}",
            f"  agreement: hand-written predicates = evaluate() (segment, scores, bands, fired, "
            f"escalations) on all {agreement.users:,} users",
            "",
            table(rows),
            "",
            table(parts),
        ]
    )


def sweep_sizes(users: int, small: int, percent: float) -> list[sweep_bench.Size]:
    due = max(1, round(users * percent / 100))
    sizes = [sweep_bench.Size(users, due)]
    if small < users:
        sizes += [
            sweep_bench.Size(small, min(due, small)),
            sweep_bench.Size(small, max(1, round(small * percent / 100))),
        ]
    return list(dict.fromkeys(sizes))


def sweep_report(runs: list[sweep_bench.SweepRun]) -> str:
    rows = [
        (
            "users in table",
            "users due",
            "index queries",
            "index items read",
            "/ users due",
            "all items read",
            "per user due",
            "read requests",
            "RCU",
            "RCU per due",
            "WCU",
        )
    ]
    for run in runs:
        reads, due = run.reads, run.size.due
        rows.append(
            (
                f"{run.size.users:,}",
                f"{due:,}",
                f"{run.index_queries}",
                f"{run.index_items:,}",
                f"{run.index_items / due:.2f}x",
                f"{reads.total_items:,}",
                f"{reads.total_items / due:.2f}",
                f"{reads.total_requests:,}",
                f"{reads.total_units:,.0f}",
                f"{reads.total_units / due:.2f}",
                f"{run.tally.write_units:,}",
            )
        )
    largest = runs[0]
    sources = [("items read by source, largest table", "items", "per user due", "requests", "RCU")]
    for source in sweep_bench.SOURCES:
        items = largest.reads.items[source]
        sources.append(
            (
                source,
                f"{items:,}",
                f"{items / largest.size.due:.2f}",
                f"{largest.reads.requests[source]:,}",
                f"{largest.reads.units[source]:,.1f}",
            )
        )
    r = largest.result
    times = "; ".join(
        f"{run.size.users:,} users: setup {run.setup_seconds:.0f} s, sweep {run.sweep_seconds:.0f} s"
        for run in runs
    )
    return "\n".join(
        [
            f"  table: UsageTable from template.yaml; every user has a SEGMENTS item with a re-check "
            f"scheduled (all are in the sparse index); the due ones fell due in the "
            f"{sweep_bench.SWEEP_EVERY.seconds // 60} min since the previous run, the others over the "
            f"next {sweep_bench.FUTURE.days} days",
            f"  due users: sample users (usage state, account traits and rollup, the record of their "
            f"evaluation at {largest.now - sweep_bench.SWEEP_AT:%Y-%m-%d %H:%M}Z); sweep at "
            f"{largest.now:%Y-%m-%d %H:%M}Z from the watermark {r.started_from:%Y-%m-%d %H:%M}Z",
            "",
            table(rows),
            "",
            table(sources),
            f"  largest table: {r.due:,} due, {r.evaluated:,} evaluated, {r.skipped} skipped, "
            f"{r.failed} failed, {largest.published} decisions published; writes: "
            + ", ".join(f"{op} {n:,}" for op, n in sorted(largest.tally.requests.items()) if op in WRITES),
            "  RCU: ceil(size / 4 KB) per item (BatchGetItem, GetItem; strongly consistent) or per "
            "Query response; the index is eventually consistent (half). WCU: bench.units.Meter",
            f"  moto wall time, for information: {times}",
        ]
    )


def dispatch_report(work: dispatch_bench.Workload, rules: RuleSet, repeats: int) -> str:
    batches, decisions = work.batches, work.decisions
    rounds = work.rounds
    results = dispatch_bench.replay(work, rules)
    dispatch_bench.check_replay(work, results, "replay")
    m = dispatch_bench.mix(results)
    sizes = [len(b.decisions) for b in batches]
    returning = sum(len(b.returning) for b in batches)
    lapsed = sum(len(b.lapsed) for b in batches)
    verdicts = sorted(set(m.messages) | set(m.escalations), key=lambda k: (k.split(":")[0] != "send", k))
    outcome_rows = [("verdict (outcome: reason)", "messages", "escalations")]
    outcome_rows += [(k, f"{m.messages[k]:,}", f"{m.escalations[k]:,}") for k in verdicts]
    outcome_rows += [
        ("cancelled: no_longer_holds (lapsed deferrals)", f"{m.cancelled:,}", ""),
        ("duplicate: already in the ledger (not judged)", f"{m.duplicates:,}", ""),
    ]

    timings, guard_calls = dispatch_bench.throughput(work, rules, repeats)
    whole, alone = timings
    cpu = [("step (one core)", "CPU s", "batches/s", "decisions/s", "us per batch", "of dispatch")]
    for name, seconds in (
        (whole.name, whole.seconds),
        (f"{alone.name}, the {guard_calls:,} calls dispatch made", alone.seconds),
        ("the rest, by difference (loads, ledger, entries, routing)", whole.seconds - alone.seconds),
    ):
        cpu.append(
            (
                name,
                f"{seconds:.3f}",
                f"{len(batches) / seconds:,.0f}",
                f"{decisions / seconds:,.0f}",
                f"{seconds / len(batches) * 1e6:.0f}",
                f"{seconds / whole.seconds:.0%}",
            )
        )

    run = dispatch_bench.dynamo_requests(work, rules)
    first, again = run.first, run.again
    ledger, usage = dispatch_bench.LEDGER_TABLE, dispatch_bench.USAGE_TABLE
    suppression = dispatch_bench.SUPPRESSION_TABLE
    n = len(batches)
    reads = ("BatchGetItem", "GetItem", "Query")
    ledger_reads = first.of(ledger, reads)
    ledger_writes = first.of(ledger) - ledger_reads
    usage_reads = first.of(usage)
    suppression_reads = first.of(suppression)
    floor_reads = dispatch_bench.FLOOR_READS * n
    floor_writes = dispatch_bench.FLOOR_WRITES * run.claiming
    floor = floor_reads + floor_writes
    total = ledger_reads + ledger_writes + usage_reads + suppression_reads
    again_ledger_reads = again.of(ledger, reads)
    again_writes = again.of(ledger) - again_ledger_reads + again.of(usage) - again.of(usage, reads)
    dynamo = [
        ("per decision batch", "measured", "floor", "ratio"),
        (
            "ledger reads (BatchGetItem)",
            f"{ledger_reads / n:.2f}",
            f"{floor_reads / n:.2f}",
            ratio(ledger_reads, floor_reads),
        ),
        (
            "ledger writes (PutItem, TransactWriteItems)",
            f"{ledger_writes / n:.2f}",
            f"{floor_writes / n:.2f}",
            ratio(ledger_writes, floor_writes),
        ),
        (
            "ledger requests",
            f"{(ledger_reads + ledger_writes) / n:.2f}",
            f"{floor / n:.2f}",
            ratio(ledger_reads + ledger_writes, floor),
        ),
        ("usage-table read, the user's traits (BatchGetItem)", f"{usage_reads / n:.2f}", "", ""),
        (
            "suppression list, the email / SMS addresses (Query)",
            f"{suppression_reads / n:.2f}",
            "",
            "",
        ),
        ("all requests", f"{total / n:.2f}", f"{floor / n:.2f}", ratio(total, floor)),
        (
            "all requests, per decision",
            f"{total / decisions:.2f}",
            f"{floor / decisions:.2f}",
            ratio(total, floor),
        ),
        ("write units (WCU)", f"{first.tally.write_units / n:.2f}", "", ""),
        (
            "read units (RCU): ledger / usage table / suppression list",
            f"{first.read_units[ledger] / n:.2f} / {first.read_units[usage] / n:.2f}"
            f" / {first.read_units[suppression] / n:.2f}",
            "",
            "",
        ),
        (
            "redelivered: ledger reads / usage reads",
            f"{again_ledger_reads / n:.2f} / {again.of(usage, reads) / n:.2f}",
            f"{floor_reads / n:.2f}",
            ratio(again_ledger_reads, floor_reads),
        ),
        (
            "redelivered: write requests / WCU",
            f"{again_writes / n:.3f} / {again.tally.write_units / n:.3f}",
            "0",
            "",
        ),
    ]
    t = first.tally
    kinds = [
        ("write units by ledger item kind (first delivery)", "items", "in txn", "WCU", "mean B", "max B")
    ]
    for kind in sorted(t.items, key=lambda k: -t.units[k]):
        kinds.append(
            (
                kind,
                f"{t.items[kind]:,}",
                f"{t.transaction_items[kind]:,}",
                f"{t.units[kind]:,}",
                f"{t.item_bytes[kind] / t.items[kind]:,.0f}",
                f"{t.largest[kind]:,}",
            )
        )
    names = {ledger: "ledger", usage: "usage table", suppression: "suppression list"}
    ops = ", ".join(f"{names[table]} {op} {count:,}" for (table, op), count in sorted(first.requests.items()))
    again_ops = ", ".join(
        f"{names[table]} {op} {count:,}" for (table, op), count in sorted(again.requests.items())
    )
    judged = run.judged_again
    hours = dispatch_bench.EVERY.total_seconds() / 3600
    return "\n".join(
        [
            f"  batches: the first {work.users:,} sample users ({work.messages:,} messages, ingested in "
            f"memory round by round); {len(rounds)} rounds {hours:.0f} h apart, "
            f"{rounds[0].at:%Y-%m-%d %H:%M}Z to {rounds[-1].at:%Y-%m-%d %H:%M}Z; {work.evaluations:,} "
            f"evaluate_user calls published {n:,} batches, {decisions:,} decisions ({decisions / n:.2f} per "
            f"batch, at most {max(sizes)}); returning {returning}, lapsed {lapsed}",
            "  every replay (each batch at its decided_at, the usage state of its round) decides what the "
            "generation's dispatch decided: checked",
            "",
            table(outcome_rows),
            f"  routed {m.routed:,} deliveries (MemoryRouter); {decisions - m.duplicates:,} decisions judged",
            "",
            table(cpu),
            "",
            table(dynamo),
            f"  floor: per batch, 1 read (delivery record + the batch's entries, one BatchGetItem), and 1 "
            f"write (one transaction: claims + record) for the {run.claiming:,} of {n:,} batches with "
            f"anything to claim; the other {n - run.claiming:,} hold only decisions already in the ledger",
            f"  against a flat floor of 2 requests per batch ({2 * n:,}): ledger requests "
            f"{ratio(ledger_reads + ledger_writes, 2 * n)}, all requests {ratio(total, 2 * n)}",
            f"  requests, first delivery: {ops}",
            f"  requests, redelivered at once: {again_ops}",
            f"  judged again on redelivery: {sum(judged.messages.values())} decisions "
            f"({', '.join(f'{k} {v}' for k, v in judged.messages.items()) or 'none'}): a returning deferral "
            "deferred again is still `deferred` in the ledger",
            "",
            table(kinds),
            "  WCU = ceil(item size / 1 KB) per item (larger of before and after), x2 inside "
            "TransactWriteItems; RCU = ceil(size / 4 KB) per item, 1 per key not found",
            f"  tables: {run.table_source}; {run.setup_puts:,} usage states put before their round (not "
            f"counted); moto time {first.seconds:.1f} s (first), {again.seconds:.1f} s (redelivered)",
        ]
    )


def coldstart_report(
    timings: list[coldstart_bench.Timing], built: tuple[list[coldstart_bench.Size], datetime] | None
) -> str:
    baseline = next(t for t in timings if t.name == coldstart_bench.BASELINE)
    sizes = {s.logical_id: s for s in built[0]} if built else {}
    rows = [
        (
            "function",
            "import+init ms",
            "min-max ms",
            "/ baseline",
            "CPU ms",
            "CPU / baseline",
            "modules",
            "package MB",
            "of 250 MB",
        )
    ]
    for t in timings:
        size = sizes.get(t.name)
        rows.append(
            (
                "minimal Powertools handler (baseline)" if t is baseline else t.name,
                f"{t.median_ms:.0f}",
                f"{min(t.runs) * 1000:.0f}-{max(t.runs) * 1000:.0f}",
                f"{t.median_ms / baseline.median_ms:.2f}x",
                f"{t.median_cpu_ms:.0f}",
                f"{t.median_cpu_ms / baseline.median_cpu_ms:.2f}x",
                f"{t.modules:,}",
                f"{size.total / coldstart_bench.MB:.1f}" if size else "",
                f"{size.total / coldstart_bench.LAMBDA_LIMIT_BYTES:.1%}" if size else "",
            )
        )
    lines = [table(rows)]
    if built:
        first = built[0][0]
        layers = ", ".join(f"{name} {n / coldstart_bench.MB:.2f} MB" for name, n in first.layer_bytes.items())
        lines.append(
            f"  package = the function's directory in .aws-sam/build + its layers ({layers}); unzipped "
            f"bytes; build of {built[1]:%Y-%m-%d %H:%M} UTC"
        )
    else:
        lines.append("  package sizes: no .aws-sam/build (run `make sam-build`)")
    lines.append(
        "  baseline: Logger + Metrics + one boto3 client (dynamodb) at import; the functions run with "
        "LAMBDA_TASK_ROOT set, so Powertools' Tracer is on as in Lambda; modules = len(sys.modules) after; "
        "CPU = the child's time.process_time() over the same span (less moved by other processes on a "
        "busy machine than the wall clock; an SSM read's round trip is in the wall time only)"
    )
    return "\n".join(lines)
