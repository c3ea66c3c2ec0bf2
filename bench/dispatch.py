"""What dispatch costs: decisions per second per core through the guardrails (in memory), and
DynamoDB requests per decision against the floor (the ledger and usage tables on moto).

The decision batches are the real ones. The sample history is ingested in memory round by round;
at each round every user is evaluated by the rules' own service (`evaluate_user`, in-memory
ports, a MemoryDecisionPublisher), and the round's batches are then dispatched, as the decision
queue would, with deferrals kept in the users' segment records (`SegmentRechecks`): a later round
brings a deferred decision back (`returning`) or cancels it (`lapsed`), as in production. The
measurements replay exactly these batches, in order, each at its `decided_at`, with every user's
usage state as it was at that round, and check that they decide what the generation decided.
"""

from __future__ import annotations

import bisect
import cProfile
import gc
import pstats
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from unittest import mock

from bench.ingest import _fake_aws_env, _no_table_backup_per_transaction
from bench.units import Meter, Tally, _clauses, _key_id, item_size, read_units, value_size
from nudge.adapters.dynamo.suppression import DynamoSuppressionStore
from nudge.adapters.memory import (
    MemoryDecisionPublisher,
    MemoryLedger,
    MemoryRechecks,
    MemoryRouter,
    MemorySegmentStore,
    MemorySuppressionStore,
    MemoryUsageStore,
)
from nudge.domain.verdicts import guard
from nudge.model.messages import Batch, InvalidMessage, Message
from nudge.model.queue import DecisionBatch
from nudge.model.state import UserState
from nudge.model.versioned import Versioned
from nudge.observability import quiet_logs
from nudge.ports import SuppressionStore
from nudge.rulebook.ruleset import RuleSet
from nudge.services import dispatch as dispatch_service
from nudge.services.account_facts import AccountFactsCache
from nudge.services.dispatch import DispatchPorts, DispatchResult, dispatch
from nudge.services.evaluate import RulesPorts, SegmentRechecks, evaluate_user
from nudge.services.ingest import IngestLimits, ingest
from nudge.services.suppression import SuppressionList

ROOT = Path(__file__).resolve().parent.parent
# Rounds of evaluation: 30, 25 hours apart, the first 31 days before the end of the history, so
# the hour of day moves one hour per round (quiet hours fall on every timezone in turn).
ROUNDS = 30
EVERY = timedelta(hours=25)
FIRST_BEFORE_END = timedelta(days=31)
USAGE_TABLE = "nudge-usage-bench"
LEDGER_TABLE = "nudge-ledger-bench"
SUPPRESSION_TABLE = "nudge-suppression-bench"
# Dispatch looks up the addresses of a batch's email and SMS decisions on the suppression list
# (empty here: the sample has no unsubscribes), as the deployed function does.
KEYING = b"bench-suppression-keying-secret"
# Least requests a design that claims before it sends can make per decision batch: one read (the
# delivery record and the batch's entries, one BatchGetItem) and one write (claims + record, one
# transaction). A redelivered batch needs the read only.
FLOOR_READS = 1
FLOOR_WRITES = 1


# -- the workload: real decision batches --------------------------------------------------------


@dataclass(frozen=True)
class Round:
    at: datetime
    states: dict[str, Versioned[UserState]]  # every user's usage state at this round
    batches: list[DecisionBatch]


@dataclass(frozen=True)
class Workload:
    rounds: list[Round]
    users: int  # sample users taken
    messages: int  # their messages, ingested round by round
    evaluations: int  # evaluate_user calls
    outcomes: list[Counter[str]]  # what the generation's dispatch decided, batch by batch

    @property
    def batches(self) -> list[DecisionBatch]:
        return [b for r in self.rounds for b in r.batches]

    @property
    def decisions(self) -> int:
        return sum(len(b.decisions) for b in self.batches)


def workload(
    raw: Sequence[dict[str, Any]],
    rules: RuleSet,
    end: datetime,
    users: int | None = None,
    rounds: int = ROUNDS,
    every: timedelta = EVERY,
) -> Workload:
    """The first `users` sample users (in order of their first message; all when None), evaluated
    at `rounds` times `every` apart
    from `end - FIRST_BEFORE_END`; the decision batches they publish, dispatched round by round."""
    validated = Batch.model_validate({"batch": list(raw)})
    messages: list[Message] = [m for m in validated.batch if not isinstance(m, InvalidMessage)]
    if len(messages) != len(raw):
        raise RuntimeError(f"{len(raw) - len(messages)} sample messages are invalid")
    chosen = set(list(dict.fromkeys(m.identity for m in messages))[:users])
    messages = sorted((m for m in messages if m.identity in chosen), key=_stamp)
    stamps = [_stamp(m) for m in messages]
    first = end - FIRST_BEFORE_END
    times = [first + every * n for n in range(rounds)]
    if times[-1] > end:
        raise ValueError(f"{rounds} rounds {every} apart run past the end of the history ({end})")

    store = MemoryUsageStore()
    segments = MemorySegmentStore()
    publisher = MemoryDecisionPublisher()
    rules_ports = RulesPorts(store, segments, publisher)
    ports = DispatchPorts(
        MemoryLedger(),
        store,
        MemoryRouter(),
        SegmentRechecks(segments),
        _suppressions(MemorySuppressionStore()),
    )
    done = 0
    evaluations = 0
    out: list[Round] = []
    outcomes: list[Counter[str]] = []
    with quiet_logs():
        for at in times:
            upto = bisect.bisect_right(stamps, at)
            if upto > done:
                chunk = list(enumerate(messages[done:upto]))
                result = ingest(chunk, rules.plan, store, at, IngestLimits(), sleep=lambda _s: None)
                if result.errors:
                    raise RuntimeError(f"sample messages refused: {result.errors[:3]}")
                done = upto
            states = dict(store.users)
            accounts = AccountFactsCache(store, rules.reads_account_usage)
            published = len(publisher.batches)
            for user_id in sorted(states):
                evaluate_user(states[user_id].value, rules, rules_ports, at, accounts=accounts)
                evaluations += 1
            batches = publisher.batches[published:]
            # The decision queue: the round's batches dispatched after its evaluations.
            outcomes += [dispatch(b, rules, ports, b.decided_at).outcomes() for b in batches]
            out.append(Round(at, states, batches))
    return Workload(out, len(chosen), done, evaluations, outcomes)


def _suppressions(store: SuppressionStore) -> SuppressionList:
    return SuppressionList(store, lambda: [KEYING])


def _stamp(message: Message) -> datetime:
    if message.timestamp is None:
        raise RuntimeError("a sample message has no timestamp")
    return message.timestamp


# -- CPU: decisions per second, per core ---------------------------------------------------------


def replay(work: Workload, rules: RuleSet) -> list[DispatchResult]:
    """Every batch through `dispatch` on in-memory ports (a fresh ledger), each at its decided_at,
    the usage store holding the users' states of the batch's round."""
    usage = MemoryUsageStore()
    ports = DispatchPorts(
        MemoryLedger(), usage, MemoryRouter(), MemoryRechecks(), _suppressions(MemorySuppressionStore())
    )
    results: list[DispatchResult] = []
    for r in work.rounds:
        usage.users = r.states
        for b in r.batches:
            results.append(dispatch(b, rules, ports, b.decided_at))
    return results


def check_replay(work: Workload, results: Sequence[DispatchResult], what: str) -> None:
    """A replay must decide, batch by batch, exactly what the generation's dispatch decided."""
    differ = sum(1 for r, o in zip(results, work.outcomes, strict=True) if r.outcomes() != o)
    if differ:
        raise RuntimeError(f"{what}: {differ} batches decided differently from the generation")


GuardArgs = tuple[Any, ...]


def guard_calls(work: Workload, rules: RuleSet) -> list[GuardArgs]:
    """The arguments dispatch passes to `guard` (decisions, delivery record as loaded, traits,
    escalation flag, rules, guardrails, now), recorded over one replay."""
    calls: list[GuardArgs] = []
    real = guard  # what nudge.services.dispatch calls

    def recording(*args: Any) -> Any:
        calls.append(args)
        return real(*args)

    with mock.patch.object(dispatch_service, "guard", recording):
        check_replay(work, replay(work, rules), "recorded replay")
    return calls


@dataclass(frozen=True)
class Timing:
    name: str
    seconds: float  # CPU seconds of this process, best of the repeats


def throughput(work: Workload, rules: RuleSet, repeats: int) -> tuple[list[Timing], int]:
    """`dispatch` over every batch, and `guard` alone over the calls dispatch made, round-robin,
    `repeats` times; each one's best CPU time. Also how many guard calls there were."""
    calls = guard_calls(work, rules)
    # Dispatch judges a batch only when it carries something new (a batch of decisions already in
    # the ledger, like an account escalation another user raised first, is not judged again), and
    # never twice (a retry would mean contention, which a single thread cannot have).
    if not 0 < len(calls) <= len(work.batches):
        raise RuntimeError(f"{len(calls)} guard calls for {len(work.batches)} batches (a retry?)")

    def guard_alone() -> None:
        for args in calls:
            guard(*args)

    steps: list[tuple[str, Callable[[], object]]] = [
        ("dispatch() on in-memory ports", lambda: replay(work, rules)),
        ("guard() alone (pure)", guard_alone),
    ]
    best: dict[str, float] = {}
    with quiet_logs():
        for _ in range(repeats):
            for name, step in steps:
                gc.collect()
                started = time.process_time()
                step()
                elapsed = time.process_time() - started
                best[name] = min(best.get(name, elapsed), elapsed)
    return [Timing(name, best[name]) for name, _ in steps], len(calls)


@dataclass
class Mix:
    """Verdicts by outcome and reason, messages and escalations apart, over one replay."""

    messages: Counter[str] = field(default_factory=Counter)
    escalations: Counter[str] = field(default_factory=Counter)
    cancelled: int = 0
    duplicates: int = 0
    routed: int = 0


def mix(results: Sequence[DispatchResult]) -> Mix:
    m = Mix()
    for result in results:
        for v in result.verdicts:
            counts = m.escalations if v.decision.action == "escalate" else m.messages
            counts[f"{v.outcome}: {v.reason}" if v.reason else v.outcome] += 1
        m.cancelled += len(result.cancelled)
        m.duplicates += len(result.duplicates)
        m.routed += result.routed
    return m


# -- DynamoDB: requests per decision against the floor, on moto ---------------------------------


@dataclass
class Phase:
    name: str
    tally: Tally = field(default_factory=Tally)
    requests: Counter[tuple[str, str]] = field(default_factory=Counter)  # (table, operation)
    read_units: Counter[str] = field(default_factory=Counter)  # RCU by table
    batches: int = 0
    decisions: int = 0
    seconds: float = 0.0

    def of(self, table: str, operations: Sequence[str] | None = None) -> int:
        return sum(
            n for (t, op), n in self.requests.items() if t == table and (not operations or op in operations)
        )


class LedgerMeter(Meter):
    """bench.units.Meter, plus what the ledger's writes and two tables need: an UpdateItem that
    SETs any type (the delivery record's `SET v = :new, rec = :rec`, a binary), and requests and
    read units by table, into `phase`."""

    def __init__(self, kind_of: Callable[[dict[str, Any]], str]) -> None:
        super().__init__(kind_of=kind_of)
        self.phase = Phase("unset")
        self.attributes: dict[tuple[str, ...], dict[str, int]] = {}
        self._asked_by_table: Counter[str] = Counter()
        self._table = ""

    def count_into(self, phase: Phase) -> None:
        self.phase = phase
        self.tally = phase.tally

    def _before(self, params: dict[str, Any], model: Any, **rest: Any) -> None:
        super()._before(params=params, model=model, **rest)
        operation = model.name
        if operation == "BatchGetItem":
            self._asked_by_table = Counter(
                {t: len(spec["Keys"]) for t, spec in params["RequestItems"].items()}
            )
            tables = list(params["RequestItems"])
        elif operation == "TransactWriteItems":
            tables = list(
                dict.fromkeys(next(iter(entry.values()))["TableName"] for entry in params["TransactItems"])
            )
        else:
            tables = [params["TableName"]]
            self._table = params["TableName"]
        for table in tables:
            self.phase.requests[(table, operation)] += 1

    def _after(self, parsed: dict[str, Any], model: Any, **rest: Any) -> None:
        super()._after(parsed=parsed, model=model, **rest)
        if "Error" in parsed:
            return
        if model.name == "Query":
            # As bench.units prices it: the items' sizes together, at least 1 unit.
            found = parsed.get("Items", [])
            self.phase.read_units[self._table] += read_units(sum(item_size(i) for i in found))
            return
        if model.name != "BatchGetItem":
            return
        retried = {t: len(spec["Keys"]) for t, spec in (parsed.get("UnprocessedKeys") or {}).items()}
        responses = parsed.get("Responses", {})
        for table, asked in self._asked_by_table.items():
            found = responses.get(table, [])
            missing = asked - retried.get(table, 0) - len(found)
            self.phase.read_units[table] += sum(read_units(item_size(i)) for i in found) + missing

    def _update(self, update: dict[str, Any], factor: int) -> None:
        values = update.get("ExpressionAttributeValues", {})
        if all("N" in value for value in values.values()):
            super()._update(update, factor)
            return
        # `SET a = :x, b = :y` of any types: the item after it holds those attributes.
        key = update["Key"]
        names = update.get("ExpressionAttributeNames", {})
        attributes = self.attributes.setdefault(_key_id(key), {})
        for action, clause in _clauses(update["UpdateExpression"]):
            if action == "REMOVE":  # a delivery record's expiry, once it holds an unsubscribe
                attributes.pop(names.get(clause, clause), None)
                continue
            if action != "SET":
                raise ValueError(f"unpriced update: {update['UpdateExpression']}")
            name, placeholder = clause.replace("=", " ").split()
            attributes[names.get(name, name)] = value_size(values[placeholder])
        after = item_size(key) + sum(len(name.encode()) + size for name, size in attributes.items())
        self._charge(key, self.sizes.get(_key_id(key), 0), after, factor)


def item_kind(key: dict[str, Any]) -> str:
    """The kind of a ledger item, from its key (see nudge.adapters.dynamo.ledger)."""
    pk, sk = key["pk"]["S"], key["sk"]["S"]
    if sk == "DELIVERY":
        return "delivery record (user)"
    if sk == "ESCALATION":
        return "escalation (account)"
    if sk.startswith("DECISION#"):
        return "entry, escalation (account)" if pk.startswith("ACCOUNT#") else "entry, message (user)"
    if sk == "STATE":
        return "usage state (setup)"
    return "other"


@dataclass
class DynamoRun:
    first: Phase
    again: Phase
    setup_puts: int
    table_source: str
    judged_again: Mix  # what redeliveries judged a second time (returning deferrals deferred again)
    claiming: int  # first deliveries with anything to claim (not all of it already in the ledger)


def dynamo_requests(work: Workload, rules: RuleSet) -> DynamoRun:
    """Every batch through `dispatch` on DynamoLedger + DynamoUsageStore (moto, tables from
    template.yaml), then at once a second time (a redelivery); the two counted apart. Before a
    round, the states of the users it dispatches to are written to the usage table (not counted)."""
    import boto3
    from moto import mock_aws

    from nudge.adapters.dynamo.ledger import DynamoLedger
    from nudge.adapters.dynamo.usage import DynamoUsageStore
    from nudge.settings import Settings
    from nudge.tools.local.aws import create_usage_resources

    first, again, setup = Phase("first delivery"), Phase("redelivered"), Phase("setup")
    setup_puts = 0
    with _fake_aws_env(), mock_aws(), _no_table_backup_per_transaction(), quiet_logs():
        client = boto3.client("dynamodb", region_name="us-east-1")
        ssm = boto3.client("ssm", region_name="us-east-1")
        settings = Settings(
            usage_table=USAGE_TABLE, ledger_table=LEDGER_TABLE, suppression_table=SUPPRESSION_TABLE
        )
        create_usage_resources(client, ssm, ROOT / "template.yaml", settings, ["bench-write-key"])
        meter = LedgerMeter(item_kind)
        meter.attach(client)
        usage = DynamoUsageStore(client, USAGE_TABLE, settings.rollup_shards)
        ledger = DynamoLedger(client, LEDGER_TABLE, timedelta(days=settings.ledger_retention_days))
        suppressions = _suppressions(DynamoSuppressionStore(client, SUPPRESSION_TABLE))
        ports = DispatchPorts(ledger, usage, MemoryRouter(), MemoryRechecks(), suppressions)
        written: dict[str, tuple[UserState, int]] = {}  # user -> (state in the table, its version)
        results: list[DispatchResult] = []
        again_judged: list[DispatchResult] = []
        for r in work.rounds:
            meter.count_into(setup)
            for user_id in dict.fromkeys(b.user for b in r.batches):
                state = r.states[user_id].value
                stored, version = written.get(user_id, (None, 0))
                if stored is not state:
                    usage.save_user(state, version, None, r.at)
                    written[user_id] = (state, version + 1)
                    setup_puts += 1
            for b in r.batches:
                for phase in (first, again):
                    meter.count_into(phase)
                    started = time.perf_counter()
                    result = dispatch(b, rules, ports, b.decided_at)
                    phase.seconds += time.perf_counter() - started
                    phase.batches += 1
                    phase.decisions += len(b.decisions)
                    if phase is first:
                        results.append(result)
                    elif result.verdicts or result.cancelled:
                        # A returning decision deferred again is still `deferred` in the ledger,
                        # so a redelivery judges it (and writes it) once more.
                        again_judged.append(result)
    for phase in (first, again, setup):
        if phase.tally.failed_requests:
            raise RuntimeError(f"{phase.tally.failed_requests} DynamoDB requests failed ({phase.name})")
    check_replay(work, results, "DynamoDB replay")
    claiming = sum(1 for r in results if r.verdicts or r.cancelled)
    return DynamoRun(
        first,
        again,
        setup_puts,
        "LedgerTable and UsageTable from template.yaml (nudge.tools.local.aws.create_usage_resources)",
        mix(again_judged),
        claiming,
    )


def profile(work: Workload, rules: RuleSet) -> None:
    print("\nProfile of dispatch() over every batch, in-memory ports (cProfile; times inflated):")
    profiler = cProfile.Profile()
    with quiet_logs():
        profiler.runcall(replay, work, rules)
    stats = pstats.Stats(profiler)
    stats.sort_stats("tottime").print_stats(15)
    stats.sort_stats("cumulative").print_stats(20)
