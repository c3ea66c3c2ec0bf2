"""`make bench` (python -m bench): ingest CPU per core and DynamoDB cost per event, rule
evaluations per core against hand-written predicates, the sweep's reads against users due, and
dispatch: decisions per second per core through the guardrails, DynamoDB requests per decision;
cold start (import and init of each function against a minimal Powertools handler, package sizes),
dollars per million events, adversarial bodies' time per KB through the ingest handler, and
event-to-decision and event-to-send latency on the local stack under an open-loop load."""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pydantic

from bench import bodies as bodies_bench
from bench import coldstart as coldstart_bench
from bench import cost as cost_bench
from bench import dispatch as dispatch_bench
from bench import front_door as front_door_bench
from bench import latency as latency_bench
from bench import latency_report, sample
from bench import rules as rules_bench
from bench import sweep as sweep_bench
from bench.ingest import (
    dynamo_writes,
    fixed_now,
    throughput,
)
from bench.report_engine import (
    LOAD_CONTAINERS,
    coldstart_report,
    dispatch_report,
    journeys_report,
    load_report,
    rules_report,
    sweep_report,
    sweep_sizes,
)
from bench.report_store import (
    bodies_report,
    cost_report,
    cpu_table,
    dynamo_report,
    profile,
    rollup_batches,
)
from bench.rollup_stream import quiet_requests_per_batch
from nudge.rulebook.loader import load_rules
from nudge.rulebook.plan import load_plan

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
        print(cpu_table(throughput(cpu_bodies, plan, now, args.repeats)))

        print(
            f"\n3. DynamoDB: the ingest service on DynamoUsageStore (moto), first "
            f"{sum(b.messages for b in dynamo_bodies):,} messages in {len(dynamo_bodies)} requests, "
            "each posted twice"
        )
        print(rollup_batches(args.rollup_every))
        print(
            dynamo_report(dynamo_writes(dynamo_bodies, plan, args.rollup_every or quiet_requests_per_batch()))
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
                print(rules_report(rules, population, args.rule_repeats))
            if "sweep" in only:
                sizes = sweep_sizes(args.sweep_users, args.sweep_small, args.sweep_due)
                print(
                    f"\n5. Sweep: items read against users due; nudge.services.evaluate.sweep on the `due` "
                    f"index (moto), {args.sweep_due:g}% of the users due"
                )
                print(sweep_report(sweep_bench.sweep_reads(rules, population, sizes)))
            if args.profile and "rules" in only:
                rules_bench.profile(rules, population)
        if "dispatch" in only:
            work = dispatch_bench.workload(messages, rules, end, args.dispatch_users, args.dispatch_rounds)
            print(
                f"\n6. Dispatch: nudge.services.dispatch.dispatch over the decision batches the rules "
                f"published; one process, one thread; best of {args.repeats}"
            )
            print(dispatch_report(work, rules, args.repeats))
            if args.profile:
                dispatch_bench.profile(work, rules)

    if "coldstart" in only:
        print(
            f"\n7. Cold start: import + init of each function's app.py in a fresh process (template "
            f"environment, AWS on a local moto server), median of {args.coldstart_runs}; package sizes"
        )
        print(coldstart_report(coldstart_bench.measure(args.coldstart_runs), coldstart_bench.sizes()))

    if "cost" in only:
        rules = load_rules(ROOT / "rules")
        cost_bodies = sample.batches(messages[: args.cost_events])
        print(
            f"\n8. Cost per million events, sends excluded: first "
            f"{sum(b.messages for b in cost_bodies):,} messages in {len(cost_bodies)} requests; requests "
            "counted on moto, CPU of the pure work in memory"
        )
        cpu = cost_bench.cpu_pass(cost_bodies, rules)
        print(rollup_batches(args.cost_rollup_every))
        print(
            cost_report(
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
            load_report(
                args.load_clients, args.load_requests, args.load_users, args.load_accounts, args.load_batch
            )
        )

    if "bodies" in only:
        print(
            f"\n10. Adversarial bodies: POST /v1/batch through nudge.entrypoints.http.ingest_api.resolve "
            f"(the ingest handler) on in-memory stores; CPU time, best of {args.body_repeats}"
        )
        print(bodies_report(bodies_bench.measure(repeats=args.body_repeats)))

    if "journeys" in only:
        print(
            "\n11. Journeys: nudge.domain.journeys.run_journeys (in memory, facts computed beforehand), "
            f"one process, one thread, best of {args.repeats}; DynamoDB requests of evaluate_user on the "
            "segment records (moto) per step, against the floor of one conditional write per evaluation "
            "that advances"
        )
        print(journeys_report(args.repeats))

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
        profile(cpu_bodies, plan, now)
    print(f"\nTotal bench time: {time.perf_counter() - started:.0f} s")
    return 0


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


if __name__ == "__main__":
    raise SystemExit(main())
