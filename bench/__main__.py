"""`make bench` (python -m bench): ingest CPU per core and DynamoDB cost per event, rule
evaluations per core against hand-written predicates, the sweep's reads against users due, and
dispatch: decisions per second per core through the guardrails, DynamoDB requests per decision;
cold start (import and init of each function against a minimal Powertools handler, package sizes),
dollars per million events, adversarial bodies' time per KB through the ingest handler, and
event-to-decision and event-to-send latency on the local stack under an open-loop load."""

from __future__ import annotations

import argparse
import cProfile
import os
import platform
import pstats
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pydantic

from bench import bodies as bodies_bench
from bench import coldstart as coldstart_bench
from bench import cost as cost_bench
from bench import cost_prices, latency_report, sample
from bench import dispatch as dispatch_bench
from bench import front_door as front_door_bench
from bench import journeys as journeys_bench
from bench import latency as latency_bench
from bench import rules as rules_bench
from bench import sweep as sweep_bench
from bench.ingest import (
    DynamoRun,
    Throughput,
    dynamo_writes,
    fixed_now,
    throughput,
    validate_and_fold,
)
from bench.rollup_stream import QUIET_INTERVAL, batching_window, quiet_requests_per_batch
from nudge.rulebook.loader import load_rules
from nudge.rulebook.plan import TrackingPlan, load_plan
from nudge.rulebook.ruleset import RuleSet

ROOT = Path(__file__).resolve().parent.parent
SECTIONS = (
    "ingest",
    "rules",
    "sweep",
    "dispatch",
    "coldstart",
    "cost",
    "load",
    "bodies",
    "journeys",
    "latency",
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--events", type=int, default=50_000, help="sample messages for the CPU benchmark")
    parser.add_argument(
        "--dynamo-events", type=int, default=20_000, help="sample messages for the DynamoDB benchmark"
    )
    parser.add_argument(
        "--rollup-every",
        type=int,
        default=None,
        help="DynamoDB benchmark: requests whose stream records reach the rollup function in one batch "
        "(default: a quiet stream, a request every 5 s within template.yaml's batching window; "
        "1: each request's own; 70: about 1,000 records, a busy one)",
    )
    parser.add_argument(
        "--cost-rollup-every",
        type=int,
        default=None,
        help="cost: requests whose stream records reach the rollup function in one batch (default: quiet)",
    )
    parser.add_argument("--repeats", type=int, default=5, help="CPU timings: best of this many runs")
    parser.add_argument(
        "--rule-repeats", type=int, default=5, help="rule evaluation timings: best of this many runs"
    )
    parser.add_argument(
        "--sweep-users", type=int, default=100_000, help="users in the table for the sweep benchmark"
    )
    parser.add_argument(
        "--sweep-small", type=int, default=10_000, help="the smaller table, to show reads do not follow it"
    )
    parser.add_argument("--sweep-due", type=float, default=1.0, help="percent of the users due")
    parser.add_argument(
        "--dispatch-users", type=int, default=sample.USERS, help="sample users for the dispatch benchmark"
    )
    parser.add_argument(
        "--dispatch-rounds",
        type=int,
        default=dispatch_bench.ROUNDS,
        help="dispatch benchmark: evaluation rounds, 25 h apart, over the history's last month",
    )
    parser.add_argument(
        "--coldstart-runs", type=int, default=5, help="cold start: fresh processes per function (median)"
    )
    parser.add_argument(
        "--cost-events", type=int, default=10_000, help="sample messages for the cost per million events"
    )
    parser.add_argument(
        "--cost-single-events",
        type=int,
        default=2_000,
        help="sample messages sent one a request for the one-event cost (each its own request on moto: slow)",
    )
    parser.add_argument(
        "--consumer-batch",
        type=int,
        default=front_door_bench.CONSUMER_BATCH,
        help="one-event cost: messages the ingest queue's consumer folds at a time",
    )
    parser.add_argument("--load-clients", type=int, default=8, help="load: concurrent clients")
    parser.add_argument("--load-requests", type=int, default=50, help="load: /v1/batch requests per client")
    parser.add_argument("--load-batch", type=int, default=100, help="load: track events per /v1/batch")
    parser.add_argument("--load-users", type=int, default=2_000, help="load: distinct users")
    parser.add_argument("--load-accounts", type=int, default=5, help="load: hot accounts")
    parser.add_argument(
        "--latency-rates",
        default=",".join(str(r) for r in latency_bench.RATES),
        help="latency: offered events/s, comma-separated (one run each)",
    )
    parser.add_argument(
        "--latency-seconds",
        type=float,
        default=latency_bench.SECONDS,
        help="latency: seconds offered per rate",
    )
    parser.add_argument("--latency-batch", type=int, default=100, help="latency: events per /v1/batch body")
    parser.add_argument(
        "--body-repeats", type=int, default=3, help="adversarial bodies: best of this many posts of each"
    )
    parser.add_argument(
        "--only",
        default=",".join(SECTIONS),
        help=f"comma-separated sections to run, of {', '.join(SECTIONS)} (default: all)",
    )
    parser.add_argument(
        "--profile", action="store_true", help="also profile validate+fold, evaluate and dispatch (cProfile)"
    )
    args = parser.parse_args(argv)
    only = {name.strip() for name in args.only.split(",") if name.strip()}
    if not only <= set(SECTIONS):
        parser.error(f"--only: unknown section(s) {', '.join(sorted(only - set(SECTIONS)))}")

    started = time.perf_counter()
    print(_machine(sys.argv[1:] if argv is None else argv))
    plan = load_plan(ROOT / "rules")
    # Rules, sweep and dispatch need the whole history; ingest takes its first messages; the
    # adversarial bodies and the latency section need none.
    whole = bool(only & {"rules", "sweep", "dispatch"})
    wanted = (
        max(args.events, args.dynamo_events, args.cost_events, args.cost_single_events)
        if only - {"bodies", "latency"}
        else 1
    )
    messages = sample.sample_messages(sys.maxsize if whole else wanted)
    cpu_bodies = sample.batches(messages[: args.events])
    dynamo_bodies = sample.batches(messages[: args.dynamo_events])
    now = fixed_now(cpu_bodies)
    print(
        f"  sample  : nudge.tools.samples.generator users={sample.USERS} accounts={sample.ACCOUNTS} "
        f"days={sample.DAYS} seed={sample.SEED} start={sample.START:%Y-%m-%d}, in /v1/batch bodies of "
        f"{sample.BATCH_SIZE} messages (JSON strings)"
    )

    if "ingest" in only:
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
        print(_rollup_batches(args.rollup_every))
        print(
            _dynamo_report(
                dynamo_writes(dynamo_bodies, plan, args.rollup_every or quiet_requests_per_batch())
            )
        )

    if whole:
        rules = load_rules(ROOT / "rules")
        end = sample.START + timedelta(days=sample.DAYS)
        if only & {"rules", "sweep"}:
            population = rules_bench.population(messages, rules, end)
            if "rules" in only:
                print(
                    f"\n4. Rules: evaluate() with the shipped rule set (rules/), one process, one thread; "
                    f"best of {args.rule_repeats}"
                )
                print(_rules_report(rules, population, args.rule_repeats))
            if "sweep" in only:
                sizes = _sweep_sizes(args.sweep_users, args.sweep_small, args.sweep_due)
                print(
                    f"\n5. Sweep: items read against users due; nudge.services.evaluate.sweep on the `due` "
                    f"index (moto), {args.sweep_due:g}% of the users due"
                )
                print(_sweep_report(sweep_bench.sweep_reads(rules, population, sizes)))
            if args.profile and "rules" in only:
                rules_bench.profile(rules, population)
        if "dispatch" in only:
            work = dispatch_bench.workload(messages, rules, end, args.dispatch_users, args.dispatch_rounds)
            print(
                f"\n6. Dispatch: nudge.services.dispatch.dispatch over the decision batches the rules "
                f"published; one process, one thread; best of {args.repeats}"
            )
            print(_dispatch_report(work, rules, args.repeats))
            if args.profile:
                dispatch_bench.profile(work, rules)

    if "coldstart" in only:
        print(
            f"\n7. Cold start: import + init of each function's app.py in a fresh process (template "
            f"environment, AWS on a local moto server), median of {args.coldstart_runs}; package sizes"
        )
        print(_coldstart_report(coldstart_bench.measure(args.coldstart_runs), coldstart_bench.sizes()))

    if "cost" in only:
        rules = load_rules(ROOT / "rules")
        cost_bodies = sample.batches(messages[: args.cost_events])
        print(
            f"\n8. Cost per million events, sends excluded: first "
            f"{sum(b.messages for b in cost_bodies):,} messages in {len(cost_bodies)} requests; requests "
            "counted on moto, CPU of the pure work in memory"
        )
        cpu = cost_bench.cpu_pass(cost_bodies, rules)
        print(_rollup_batches(args.cost_rollup_every))
        print(
            _cost_report(
                cost_bench.requests_pass(
                    cost_bodies, rules, args.cost_rollup_every or quiet_requests_per_batch()
                ),
                cpu,
            )
        )
        single = messages[: args.cost_single_events]
        print(
            f"\n8b. Cost per million events at one event a request: first {len(single):,} messages, each "
            f"its own request; the ingest queue's consumer folds {args.consumer_batch} at a time"
        )
        print(
            front_door_bench.report(
                front_door_bench.measure(
                    single, rules, args.consumer_batch, front_door_bench.CONSUMER_WINDOW_SECONDS
                )
            )
        )

    if "load" in only:
        print(
            f"\n9. Load: {args.load_clients} concurrent clients x {args.load_requests} /v1/batch requests "
            f"({args.load_batch} tracks + 2 group calls each) for {args.load_users:,} users and "
            f"{args.load_accounts} hot accounts, over loopback to LocalStack + LocalApiServer (moto, "
            f"{LOAD_CONTAINERS} containers)"
        )
        print(
            _load_report(
                args.load_clients, args.load_requests, args.load_users, args.load_accounts, args.load_batch
            )
        )

    if "bodies" in only:
        print(
            f"\n10. Adversarial bodies: POST /v1/batch through nudge.entrypoints.http.ingest_api.resolve "
            f"(the ingest handler) on in-memory stores; CPU time, best of {args.body_repeats}"
        )
        print(_bodies_report(bodies_bench.measure(repeats=args.body_repeats)))

    if "journeys" in only:
        print(
            "\n11. Journeys: nudge.domain.journeys.run_journeys (in memory, facts computed beforehand), "
            f"one process, one thread, best of {args.repeats}; DynamoDB requests of evaluate_user on the "
            "segment records (moto) per step, against the floor of one conditional write per evaluation "
            "that advances"
        )
        print(_journeys_report(args.repeats))

    if "latency" in only:
        rates = [float(r) for r in args.latency_rates.split(",") if r.strip()]
        print(
            f"\n12. Latency: event to decision and to send on the local stack (LocalStack + LocalApiServer, "
            f"moto, 3 containers, driven every second as `nudge serve` does); open loop, "
            f"{args.latency_seconds:g} s at each of {', '.join(f'{r:,.0f}' for r in rates)} events/s "
            f"offered, bodies of {args.latency_batch}; each event an email at once (bench rule set)"
        )
        with tempfile.TemporaryDirectory(prefix="nudge-latency-") as scratch:
            runs = latency_bench.measure(
                rates, args.latency_seconds, Path(scratch), batch=args.latency_batch, progress=print
            )
        print("\n".join(latency_report.report(runs, latency_report.hops())))

    if args.profile and "ingest" in only:
        _profile(cpu_bodies, plan, now)
    print(f"\nTotal bench time: {time.perf_counter() - started:.0f} s")
    return 0


def _journeys_report(repeats: int, users: int = 2_000, dynamo_users: int = 300) -> str:
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


def _machine(args: list[str]) -> str:
    command = " ".join(["python -m bench", *args])
    return "\n".join(
        [
            "Nudge benchmarks: ingest, rules, sweep, dispatch, cold start, cost",
            f"  command : make bench   ({command})",
            f"  date    : {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
            f"  machine : {_cpu_model()}, {os.cpu_count()} cores, {platform.system()} {platform.machine()}, "
            f"load average {_load()}",
            f"  python  : {platform.python_implementation()} {platform.python_version()}, "
            f"pydantic {pydantic.VERSION}",
        ]
    )


LOAD_CONTAINERS = 3


def _load_report(clients: int, per_client: int, users: int, accounts: int, batch: int) -> str:
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


def _rollup_batches(every: int | None) -> str:
    if every:
        return f"  rollup function: the stream records of {every} requests a batch (--rollup-every)"
    return (
        f"  rollup function: the stream records of {quiet_requests_per_batch()} requests a batch (a quiet "
        f"stream: a request every {QUIET_INTERVAL:g} s, RollupFunction's MaximumBatchingWindowInSeconds "
        f"{batching_window():g} in template.yaml)"
    )


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


def _rules_report(rules: RuleSet, pop: rules_bench.Population, repeats: int) -> str:
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
            _table(rows),
            "",
            _table(parts),
        ]
    )


def _sweep_sizes(users: int, small: int, percent: float) -> list[sweep_bench.Size]:
    due = max(1, round(users * percent / 100))
    sizes = [sweep_bench.Size(users, due)]
    if small < users:
        sizes += [
            sweep_bench.Size(small, min(due, small)),
            sweep_bench.Size(small, max(1, round(small * percent / 100))),
        ]
    return list(dict.fromkeys(sizes))


def _sweep_report(runs: list[sweep_bench.SweepRun]) -> str:
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
            _table(rows),
            "",
            _table(sources),
            f"  largest table: {r.due:,} due, {r.evaluated:,} evaluated, {r.skipped} skipped, "
            f"{r.failed} failed, {largest.published} decisions published; writes: "
            + ", ".join(f"{op} {n:,}" for op, n in sorted(largest.tally.requests.items()) if op in _WRITES),
            "  RCU: ceil(size / 4 KB) per item (BatchGetItem, GetItem; strongly consistent) or per "
            "Query response; the index is eventually consistent (half). WCU: bench.units.Meter",
            f"  moto wall time, for information: {times}",
        ]
    )


def _dispatch_report(work: dispatch_bench.Workload, rules: RuleSet, repeats: int) -> str:
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
            _ratio(ledger_reads, floor_reads),
        ),
        (
            "ledger writes (PutItem, TransactWriteItems)",
            f"{ledger_writes / n:.2f}",
            f"{floor_writes / n:.2f}",
            _ratio(ledger_writes, floor_writes),
        ),
        (
            "ledger requests",
            f"{(ledger_reads + ledger_writes) / n:.2f}",
            f"{floor / n:.2f}",
            _ratio(ledger_reads + ledger_writes, floor),
        ),
        ("usage-table read, the user's traits (BatchGetItem)", f"{usage_reads / n:.2f}", "", ""),
        (
            "suppression list, the email / SMS addresses (Query)",
            f"{suppression_reads / n:.2f}",
            "",
            "",
        ),
        ("all requests", f"{total / n:.2f}", f"{floor / n:.2f}", _ratio(total, floor)),
        (
            "all requests, per decision",
            f"{total / decisions:.2f}",
            f"{floor / decisions:.2f}",
            _ratio(total, floor),
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
            _ratio(again_ledger_reads, floor_reads),
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
            _table(outcome_rows),
            f"  routed {m.routed:,} deliveries (MemoryRouter); {decisions - m.duplicates:,} decisions judged",
            "",
            _table(cpu),
            "",
            _table(dynamo),
            f"  floor: per batch, 1 read (delivery record + the batch's entries, one BatchGetItem), and 1 "
            f"write (one transaction: claims + record) for the {run.claiming:,} of {n:,} batches with "
            f"anything to claim; the other {n - run.claiming:,} hold only decisions already in the ledger",
            f"  against a flat floor of 2 requests per batch ({2 * n:,}): ledger requests "
            f"{_ratio(ledger_reads + ledger_writes, 2 * n)}, all requests {_ratio(total, 2 * n)}",
            f"  requests, first delivery: {ops}",
            f"  requests, redelivered at once: {again_ops}",
            f"  judged again on redelivery: {sum(judged.messages.values())} decisions "
            f"({', '.join(f'{k} {v}' for k, v in judged.messages.items()) or 'none'}): a returning deferral "
            "deferred again is still `deferred` in the ledger",
            "",
            _table(kinds),
            "  WCU = ceil(item size / 1 KB) per item (larger of before and after), x2 inside "
            "TransactWriteItems; RCU = ceil(size / 4 KB) per item, 1 per key not found",
            f"  tables: {run.table_source}; {run.setup_puts:,} usage states put before their round (not "
            f"counted); moto time {first.seconds:.1f} s (first), {again.seconds:.1f} s (redelivered)",
        ]
    )


def _coldstart_report(
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
    lines = [_table(rows)]
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


def _cost_report(run: cost_bench.Run, cpu: cost_bench.Cpu) -> str:
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
            _table(rows),
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


def _bodies_report(rows: list[bodies_bench.Row]) -> str:
    sizes = [p.size_kb for p in rows[0].points]
    largest, smallest = max(sizes), min(sizes)
    header = (
        "body",
        *(f"{kb} KB us/KB" for kb in sizes),
        f"{largest}/{smallest} KB",
        "worst",
        "answer at 500 KB",
    )
    table = [header]
    for row in rows:
        last = row.points[-1].answer
        answer = (
            f"{last.status}, {last.accepted} accepted, {last.errors} refused, "
            f"{last.body_bytes / bodies_bench.KB:,.0f} KB"
        )
        worst = max(row.ratio(largest, kb) for kb in sizes)
        table.append(
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
        _table(table),
        f"  us/KB: CPU microseconds per KB of body; {largest}/{smallest} KB: time per KB of the largest body "
        f"over the smallest's; worst: the largest body's time per KB over any smaller body's",
        "  every body goes through the whole handler: size limit, depth scan, key, routing and validation, "
        "the batch's per-message checks, the ingest service and fold, each state encoded as DynamoDB's "
        "adapter does, the answer",
        f"  flat (worst under {bodies_bench.FLAT:.0f}x for every adversarial body): "
        + ("yes" if flat else "NO"),
    ]
    return "\n".join(lines)


_WRITES = ("PutItem", "UpdateItem", "DeleteItem", "TransactWriteItems", "BatchWriteItem")


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
