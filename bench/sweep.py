"""What the sweep reads: items read against users due, on moto.

The sweep is the real one (`nudge.services.evaluate.sweep`) over the real repositories: the sparse
`due` index of `DynamoSegmentStore` and the usage states of `DynamoUsageStore`, on the usage
table built from template.yaml. The table holds one SEGMENTS item per user, every one with a
re-check scheduled (the whole table is in the index: the worst case for a sweep that must read
only the users due); a share of them is due. Due users are sample users (their real usage state,
account and rollup, and the segment record of their evaluation at the end of the history); the
others are records only, since a sweep that never reads them never needs their state.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast

from bench.ingest import TABLE, _create_table, _fake_aws_env, _no_table_backup_per_transaction
from bench.rules import Population
from bench.units import Meter, Tally, item_size, read_units
from nudge.adapters.dynamo.segments import DynamoSegmentStore
from nudge.adapters.memory import MemoryDecisionPublisher
from nudge.domain.evaluate import evaluate
from nudge.domain.fold import rollup_delta
from nudge.model.decisions import SegmentState
from nudge.model.outcomes import SweepResult
from nudge.model.segments import SegmentRecord, bucket_start
from nudge.model.state import UserState
from nudge.observability import quiet_logs
from nudge.rulebook.ruleset import RuleSet
from nudge.services.evaluate import RulesPorts, decision_key
from nudge.services.sweep import SweepOptions, sweep

BATCH_WRITE_LIMIT = 25
# The sweep runs every 15 minutes (template.yaml); this run starts 12 h 07 min after the end of
# the sample history, and the previous one ran 15 minutes before it.
SWEEP_AT = timedelta(hours=12, minutes=7)
SWEEP_EVERY = timedelta(minutes=15)
# Users not due have their re-check spread over the next week (a closing week, a cooldown, a
# dormancy threshold): some later today, in the very bucket the sweep queries.
FUTURE = timedelta(days=7)
SEGMENTS = ("dormant", "not_activated", "newly_activated", "declining", "power", "habitual")


@dataclass(frozen=True)
class Size:
    users: int  # SEGMENTS items in the table, each with a re-check scheduled
    due: int  # of which due now


@dataclass
class Reads:
    """Items and requests read, by where they come from (read from the responses)."""

    items: Counter[str] = field(default_factory=Counter)
    requests: Counter[str] = field(default_factory=Counter)
    units: dict[str, float] = field(default_factory=lambda: defaultdict(float))  # RCU, per consistency

    @property
    def total_items(self) -> int:
        return sum(self.items.values())

    @property
    def total_requests(self) -> int:
        return sum(self.requests.values())

    @property
    def total_units(self) -> float:
        return sum(self.units.values())


INDEX = "due index entries (keys only)"
SOURCES = (
    INDEX,
    "segment records (BatchGetItem)",
    "user states (BatchGetItem)",
    "account traits (GetItem)",
    "account rollup + traits (Query)",
    "watermark (GetItem)",
)


class ReadCounter:
    """Counts the items each read returns, by source, and prices it: a Query on the GSI is
    eventually consistent (half units), every other read here is strongly consistent."""

    def __init__(self) -> None:
        self.reads = Reads()
        self._params: dict[str, Any] = {}

    def attach(self, client: Any) -> None:
        client.meta.events.register("provide-client-params.dynamodb.*", self._before)
        client.meta.events.register("after-call.dynamodb.*", self._after)

    def _before(self, params: dict[str, Any], **_: Any) -> None:
        self._params = params

    def _after(self, parsed: dict[str, Any], model: Any, **_: Any) -> None:
        if "Error" in parsed:
            return
        operation = model.name
        if operation == "Query":
            items = parsed.get("Items", [])
            index = "IndexName" in self._params
            source = INDEX if index else "account rollup + traits (Query)"
            self._count(source, len(items), read_units(sum(map(item_size, items))) / (2 if index else 1))
        elif operation == "BatchGetItem":
            found: Counter[str] = Counter()
            priced: dict[str, float] = defaultdict(float)
            for table_items in parsed.get("Responses", {}).values():
                for item in table_items:
                    found[_source(item)] += 1
                    priced[_source(item)] += read_units(item_size(item))
            for source, count in found.items():
                self._count(source, count, priced[source])
        elif operation == "GetItem":
            item = parsed.get("Item") or {}
            source = _source(item or self._params.get("Key", {}), single=True)
            self._count(source, 1 if item else 0, read_units(item_size(item)))

    def _count(self, source: str, items: int, units: float) -> None:
        self.reads.items[source] += items
        self.reads.requests[source] += 1
        self.reads.units[source] += units


def _source(item: dict[str, Any], single: bool = False) -> str:
    sort = item.get("sk", {}).get("S", "")
    if sort == "SEGMENTS":
        return "segment records (BatchGetItem)"
    if sort == "STATE":
        return "user states (BatchGetItem)"
    if sort == "WATERMARK":
        return "watermark (GetItem)"
    if sort == "TRAITS" and single:
        return "account traits (GetItem)"
    return f"other ({sort})"


@dataclass
class SweepRun:
    size: Size
    result: SweepResult
    reads: Reads
    tally: Tally  # requests, RCU and WCU as bench.units.Meter bills them
    index_queries: int
    index_keys: int  # distinct bucket#shard keys queried
    now: datetime
    setup_seconds: float
    sweep_seconds: float
    published: int

    @property
    def index_items(self) -> int:
        return self.reads.items[INDEX]


class _Collect:
    """Stands in for the DynamoDB client under DynamoSegmentStore.save: keeps the item it would
    put, so the bench writes exactly the repository's items, 25 to a BatchWriteItem."""

    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []

    def put_item(self, **kwargs: Any) -> None:
        self.items.append(kwargs["Item"])


def sweep_reads(rules: RuleSet, pop: Population, sizes: list[Size]) -> list[SweepRun]:
    return [_one(rules, pop, size) for size in sizes]


def _one(rules: RuleSet, pop: Population, size: Size) -> SweepRun:
    import boto3
    from moto import mock_aws

    from nudge.adapters.dynamo.usage import DynamoUsageStore

    if size.due > size.users:
        raise ValueError("more users due than users")
    now = pop.now + SWEEP_AT
    options = SweepOptions()
    started = time.perf_counter()
    with _fake_aws_env(), mock_aws(), _no_table_backup_per_transaction(), _partition_queries(), quiet_logs():
        client = boto3.client("dynamodb", region_name="us-east-1")
        _create_table(client)
        usage = DynamoUsageStore(client, TABLE)
        segments = DynamoSegmentStore(client, TABLE)
        _fill(client, usage, rules, pop, size, now)
        # The previous run, SWEEP_EVERY ago, moved the watermark as the sweep does.
        segments.save_watermark(bucket_start(now - SWEEP_EVERY - options.settle), 0, pop.now)
        setup = time.perf_counter() - started

        meter = Meter()
        meter.attach(client)
        counter = ReadCounter()
        counter.attach(client)
        queries = _IndexQueries()
        queries.attach(client)
        publisher = MemoryDecisionPublisher()
        started = time.perf_counter()
        result = sweep(rules, RulesPorts(usage, segments, publisher), now, options=options)
        seconds = time.perf_counter() - started
    if meter.tally.failed_requests or result.failed:
        raise RuntimeError(f"sweep failed: {meter.tally.failed_requests} requests, {result.failed} users")
    if result.due != size.due or result.evaluated != size.due:
        raise RuntimeError(f"sweep found {result.due} due, evaluated {result.evaluated}; {size.due} are due")
    return SweepRun(
        size,
        result,
        counter.reads,
        meter.tally,
        queries.count,
        len(queries.keys),
        now,
        setup,
        seconds,
        len(publisher.published),
    )


def _fill(client: Any, usage: Any, rules: RuleSet, pop: Population, size: Size, now: datetime) -> None:
    """The table as the evaluator and ingest leave it: `size.users` SEGMENTS items, `size.due` of
    them due since the previous run (with their usage state, account traits and rollup)."""
    end = pop.now
    collect = _Collect()
    writer = DynamoSegmentStore(cast(Any, collect), TABLE)
    due_users = _due_users(pop, size.due)
    for account_id in sorted({u.account_id for u, _ in due_users if u.account_id}):
        usage.save_account(pop.account_states[account_id], 0, end)
    step = SWEEP_EVERY / max(1, size.due)
    for n, (user, account) in enumerate(due_users):
        usage.save_user(user, 0, rollup_delta(None, user), end)
        # What the evaluator recorded at the end of the history (segment, decisions published),
        # with a re-check that fell due since the previous sweep.
        evaluation = evaluate(rules, user, account, None, end)
        record = SegmentRecord(
            segments=evaluation.segments,
            decided={decision_key(d): d.decision_id for d in evaluation.decisions},
            state_version=1,
            next_check_at=now - SWEEP_EVERY + step * (n + 1),
        )
        writer.save(user.user_id, record, 0, end)
    # Everyone else: a record with a re-check some time in the coming week.
    spread = FUTURE.total_seconds()
    for n in range(size.users - size.due):
        segment = SEGMENTS[n % len(SEGMENTS)]
        record = SegmentRecord(
            segments=SegmentState(segment=segment, since=end - timedelta(days=n % 60)),
            state_version=1,
            next_check_at=now + timedelta(seconds=1 + (n * 7_919) % spread),
        )
        writer.save(f"bench-{n:07d}", record, 0, end)
    for start in range(0, len(collect.items), BATCH_WRITE_LIMIT):
        puts = [{"PutRequest": {"Item": item}} for item in collect.items[start : start + BATCH_WRITE_LIMIT]]
        request: dict[str, Any] = {TABLE: puts}
        while request:
            request = client.batch_write_item(RequestItems=request).get("UnprocessedItems") or {}


def _due_users(pop: Population, due: int) -> list[tuple[UserState, Any]]:
    """`due` users from the sample; past its size, copies under new ids (same state, account)."""
    chosen: list[tuple[UserState, Any]] = []
    for n in range(due):
        user, account = pop.users[n % len(pop.users)], pop.accounts[n % len(pop.users)]
        if n >= len(pop.users):
            user = user.model_copy(update={"user_id": f"{user.user_id}-copy{n // len(pop.users)}"})
        chosen.append((user, account))
    return chosen


class _IndexQueries:
    """Queries on the index, and the distinct key conditions they asked (bucket and shard)."""

    def __init__(self) -> None:
        self.count = 0
        self.keys: set[str] = set()

    def attach(self, client: Any) -> None:
        client.meta.events.register("provide-client-params.dynamodb.Query", self._query)

    def _query(self, params: dict[str, Any], **_: Any) -> None:
        if "IndexName" in params:
            self.count += 1
            values = params.get("ExpressionAttributeValues", {}).values()
            self.keys.add("|".join(sorted(v["S"] for v in values if "S" in v)))


@contextmanager
def _partition_queries() -> Iterator[None]:
    """Let moto answer a Query on the table's key from that one partition.

    moto sorts every item of the table for every Query (O(table) per account rollup read: minutes
    at 100,000 users) and then keeps the partition asked for. The answer is the same when it only
    looks at that partition, which is what this does for queries on the table's own key; queries
    on the `due` index are left as moto runs them. Only moto's time changes, not what is read.
    """
    from unittest import mock

    from moto.dynamodb.models.table import Table

    original = Table.query

    def query(self: Table, hash_key: Any, *args: Any, **kwargs: Any) -> Any:
        index_name = kwargs.get("index_name", args[6] if len(args) > 6 else None)
        if index_name or hash_key is None:
            return original(self, hash_key, *args, **kwargs)
        everything = self.items
        partition: Any = {hash_key: everything[hash_key]} if hash_key in everything else {}
        self.items = partition
        try:
            return original(self, hash_key, *args, **kwargs)
        finally:
            self.items = everything

    with mock.patch.object(Table, "query", query):
        yield
