"""What the pipeline costs per million events, sends excluded: ingest API and function, the
rollup function, the stream evaluator, the decision queue, dispatch and the channel queues it fills.

Two passes over the same SDK-sized /v1/batch bodies (bench.sample):

- **Requests** (moto, `mock_aws`): the real services on the real adapters, wired as the functions
  wire them. Each body is ingested (`ingest` on DynamoUsageStore); the rollup function's handler
  then gets the stream records since the previous body that its FilterCriteria passes, as Lambda
  delivers them (bench.rollup_stream: the real handler on DynamoRollupLedger, one batch per body,
  before the evaluator as in the local stack); the usage table's stream
  records since the previous body (moto's DynamoDB Streams, filtered as the template's
  FilterCriteria filter) are evaluated as the evaluate function does (`account_from_stream`,
  `evaluate_account`, `user_from_stream`, `evaluate_user`; one AccountFactsCache per body) with
  SqsDecisionPublisher on the decision queue; each published batch is then dispatched at once
  (`dispatch` on DynamoLedger, DynamoUsageStore, SegmentRechecks and SqsDeliveryRouter onto the
  channel queues). DynamoDB requests and units by stage come from `bench.units.Meter`, SQS
  requests from a hook on the SQS client; index writes from a shadow of each item's index keys.
- **CPU** (in memory, one thread, `time.process_time`): the same bodies through the same
  services on the in-memory ports: parse + validate + ingest per body, `evaluate_user` per user
  a body touched, `dispatch` per published batch. That is the work a function does besides
  waiting for AWS. The rollup function's is its handler run again over the same events on the
  in-memory ledger.

The dollars are computed from those counts with the public us-east-1 prices below and the
assumptions in ASSUMPTIONS.
"""

from __future__ import annotations

import json
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from bench.dispatch import KEYING, LedgerMeter, Phase
from bench.ingest import _create_table, _fake_aws_env, _no_table_backup_per_transaction, item_kind
from bench.sample import Body
from bench.units import Tally
from nudge.adapters.dynamo.segments import DynamoSegmentStore
from nudge.adapters.dynamo.stream import account_from_stream, user_from_stream
from nudge.adapters.dynamo.suppression import DynamoSuppressionStore
from nudge.adapters.memory import (
    MemoryDecisionPublisher,
    MemoryLedger,
    MemoryRouter,
    MemorySegmentStore,
    MemorySuppressionStore,
    MemoryUsageStore,
)
from nudge.model.messages import Batch, InvalidMessage
from nudge.model.queue import DecisionBatch
from nudge.model.segments import DuePage
from nudge.model.versioned import Versioned
from nudge.observability import quiet_logs
from nudge.rulebook.ruleset import RuleSet
from nudge.services.account_facts import AccountFactsCache
from nudge.services.dispatch import DispatchPorts, dispatch
from nudge.services.evaluate import (
    RulesPorts,
    SegmentRechecks,
    evaluate_account,
    evaluate_user,
)
from nudge.services.ingest import ingest
from nudge.services.suppression import SuppressionList
from nudge.services.sweep import sweep

ROOT = Path(__file__).resolve().parent.parent
USAGE_TABLE = "nudge-usage-bench"  # bench.ingest creates the usage table under this name
LEDGER_TABLE = "nudge-ledger-bench"

# Public us-east-1 prices (on-demand, x86), dollars.
PRICE_HTTP_API_REQUEST = 1.00 / 1e6
PRICE_LAMBDA_REQUEST = 0.20 / 1e6
PRICE_LAMBDA_GB_SECOND = 0.0000166667
PRICE_DYNAMO_WRITE_UNIT = 0.625 / 1e6  # per write request unit
PRICE_DYNAMO_READ_UNIT = 0.125 / 1e6  # per read request unit
PRICE_SQS_REQUEST = 0.40 / 1e6  # standard queue, per request (64 KB chunk)

# Assumptions (stated in BENCHMARKS.md section 8).
MEMORY_GB = 512 / 1024  # the template's MemorySize
ROUND_TRIP_SECONDS = 0.010  # billed wall time per AWS request a function makes, one after another
INVOCATION_OVERHEAD_SECONDS = 0.005  # handler decorators, Powertools logging and metrics flush
SQS_BATCH_SIZE = 10  # the dispatch event source's BatchSize
STREAM_BATCH_SIZE = 100  # the evaluate event source's BatchSize
STAGES = ("ingest", "rollups", "evaluate", "dispatch")

ASSUMPTIONS = [
    "prices: public us-east-1 on-demand: HTTP API $1.00/M requests; Lambda $0.20/M requests and "
    "$0.0000166667 per GB-s (x86); DynamoDB $0.625/M write and $0.125/M read request units; "
    "SQS standard $0.40/M requests",
    f"Lambda memory {MEMORY_GB * 1024:.0f} MB (template MemorySize); billed duration = CPU of the "
    f"pure work (measured) + {INVOCATION_OVERHEAD_SECONDS * 1000:.0f} ms per invocation + "
    f"{ROUND_TRIP_SECONDS * 1000:.0f} ms per AWS request the function makes (made one after another)",
    "ingest: one HTTP API request and one ingest invocation per body of 100 messages",
    f"evaluate: the stream records one ingest request writes reach the evaluator together: one "
    f"invocation per body per {STREAM_BATCH_SIZE} records (low traffic; busier streams batch more)",
    "rollups: the records of the bodies one batching window gathers reach the rollup function together "
    "(one invocation, one transaction per 99 accounts with its marker; by default a quiet stream, a body "
    "every 5 s within RollupFunction's MaximumBatchingWindowInSeconds, bench/rollup_stream.py); busier "
    "streams sum more writes per account update",
    f"dispatch: the batches one evaluate invocation publishes arrive together: one invocation per "
    f"{SQS_BATCH_SIZE} of them",
    "SQS: every message is sent, received and deleted by its own request (no batching of receives "
    "and deletes: the dearest case); the sends are counted as made",
    "DynamoDB Streams reads by Lambda are free; index writes: 1 WRU per index entry put or "
    "removed (2 when its key moves), entries under 1 KB",
    "the sweep: run at each body's time, so each re-check that comes due during the history is "
    "handled (read, evaluated, rescheduled) as the scheduled sweep would; counted: its work per user "
    "due (state and record reads, evaluations, writes, index moves; CPU as evaluate's per user); "
    "not counted: its fixed cost per run (one index query per shard and day bucket, the watermark, "
    "the invocation: every 15 minutes whatever the traffic)",
    "not counted: the sends (email/notify/escalate functions, SES, SNS), idle queue polling, "
    "storage, PITR, CloudWatch Logs and metrics, X-Ray traces, data transfer, free tiers",
]


# -- counting --------------------------------------------------------------------------------


@dataclass
class Stage:
    name: str
    invocations: int = 0
    tally: Tally = field(default_factory=Tally)
    sqs: Counter[str] = field(default_factory=Counter)  # requests by operation
    index_writes: int = 0
    cpu: float = 0.0  # seconds of pure work (the in-memory pass)
    units: int = 0  # users evaluated, batches dispatched, bodies ingested

    @property
    def aws_requests(self) -> int:
        return sum(self.tally.requests.values()) + sum(self.sqs.values())


INDEX_KEYS = {"due": ("due_bucket", "due_at"), "by_account": ("account_id",)}


class Counters:
    """Meters the DynamoDB and SQS clients into the current stage."""

    def __init__(self) -> None:
        # bench.dispatch's meter prices the ledger's updates (SET of any type) too.
        self.meter = LedgerMeter(kind_of=item_kind)
        self.stage = Stage("setup")
        self.index_shadow: dict[tuple[str, str], dict[str, tuple[Any, ...]]] = {}

    def into(self, stage: Stage) -> None:
        self.stage = stage
        self.meter.count_into(Phase(stage.name, tally=stage.tally))

    def attach(self, dynamodb: Any, sqs: Any) -> None:
        self.meter.attach(dynamodb)
        dynamodb.meta.events.register("provide-client-params.dynamodb.*", self._index_writes)
        sqs.meta.events.register("provide-client-params.sqs.*", self._sqs)

    def _sqs(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        self.stage.sqs[model.name] += 1
        if model.name == "SendMessageBatch":
            self.stage.sqs["messages in SendMessageBatch"] += len(params["Entries"]) - 1

    def _index_writes(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        """1 WRU per index entry added or removed, 2 when its key moves (puts of whole items)."""
        items = []
        if model.name == "PutItem":
            items.append(params["Item"])
        elif model.name == "TransactWriteItems":
            items += [entry["Put"]["Item"] for entry in params["TransactItems"] if "Put" in entry]
        for item in items:
            key = (item["pk"]["S"], item["sk"]["S"])
            before = self.index_shadow.setdefault(key, {})
            for index, names in INDEX_KEYS.items():
                new = (
                    tuple(json.dumps(item.get(n), sort_keys=True) for n in names)
                    if names[0] in item
                    else None
                )
                old = before.get(index)
                if new != old:
                    self.stage.index_writes += 2 if (new and old) else 1
                before[index] = new  # type: ignore[assignment]


# -- the request pass (moto) -----------------------------------------------------------------


@dataclass
class Run:
    bodies: int
    events: int
    stages: dict[str, Stage]
    stream_records: int  # after the template's filter
    rollup_records: int  # delivered to the rollup function (after its filter)
    rollup_cpu_seconds: float  # its handler's pure work over the same events, in memory
    evaluate_invocations: int
    users_evaluated: int
    account_changes: int
    swept: int  # users the sweep found due (their re-check came due during the history)
    batches: int
    decisions: int
    routed: int
    seconds: float


def requests_pass(bodies: list[Body], rules: RuleSet, rollup_every: int = 1) -> Run:
    """`rollup_every`: bodies whose stream records reach the rollup function in one batch (1: each
    body's own; bench.front_door passes more for one-event requests under busy traffic)."""
    import boto3
    from boto3.dynamodb.types import TypeDeserializer
    from moto import mock_aws

    from bench.rollup_stream import RollupPump
    from nudge.adapters.dynamo.ledger import DynamoLedger
    from nudge.adapters.dynamo.usage import DynamoUsageStore
    from nudge.adapters.memory.rollups import MemoryRollupLedger
    from nudge.adapters.sqs import SqsDecisionPublisher, SqsDeliveryRouter
    from nudge.entrypoints.rollups import RollupStreamHandler
    from nudge.settings import Settings
    from nudge.tools.local.aws import create_usage_resources

    stages = {name: Stage(name) for name in (*STAGES, "sweep", "sweep runs")}
    started = time.perf_counter()
    deserialize = TypeDeserializer().deserialize
    stream_records = evaluate_invocations = users = account_changes = 0
    all_batches: list[DecisionBatch] = []
    routed = 0
    with _fake_aws_env(), mock_aws(), _no_table_backup_per_transaction(), quiet_logs():
        dynamodb = boto3.client("dynamodb", region_name="us-east-1")
        sqs = boto3.client("sqs", region_name="us-east-1")
        ssm = boto3.client("ssm", region_name="us-east-1")
        streams = boto3.client("dynamodbstreams", region_name="us-east-1")
        _create_table(dynamodb)
        settings = Settings(usage_table=USAGE_TABLE, ledger_table=LEDGER_TABLE)
        create_usage_resources(dynamodb, ssm, ROOT / "template.yaml", settings, ["bench-write-key"])
        queues = {
            name: sqs.create_queue(QueueName=f"bench-{name}")["QueueUrl"]
            for name in ("decisions", "email", "notify", "escalation", "webhook")
        }
        counters = Counters()
        counters.attach(dynamodb, sqs)
        usage = DynamoUsageStore(
            dynamodb, USAGE_TABLE, settings.rollup_shards, account_index=settings.account_index
        )
        segments = _SweepRunsApart(
            counters, stages, dynamodb, USAGE_TABLE, index=settings.due_index, due_shards=settings.due_shards
        )
        published: list[DecisionBatch] = []

        class Recording(SqsDecisionPublisher):
            def publish(self, batch: DecisionBatch) -> None:
                super().publish(batch)
                published.append(batch)

        rules_ports = RulesPorts(usage, segments, Recording(sqs, queues["decisions"]))
        router = SqsDeliveryRouter(
            sqs,
            {
                "email": queues["email"],
                "push": queues["notify"],
                "sms": queues["notify"],
                "in_app": queues["notify"],
                "cs": queues["escalation"],
                "webhook": queues["webhook"],
            },
        )
        ledger = DynamoLedger(dynamodb, LEDGER_TABLE, timedelta(days=settings.ledger_retention_days))
        suppressions = SuppressionList(
            DynamoSuppressionStore(dynamodb, settings.suppression_table), lambda: [KEYING]
        )
        dispatch_ports = DispatchPorts(ledger, usage, router, SegmentRechecks(segments), suppressions)
        rollups = RollupPump(dynamodb, streams, USAGE_TABLE, settings.rollup_shards)
        arn = dynamodb.describe_table(TableName=USAGE_TABLE)["Table"]["LatestStreamArn"]
        shard = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]["ShardId"]
        iterator = streams.get_shard_iterator(StreamArn=arn, ShardId=shard, ShardIteratorType="TRIM_HORIZON")[
            "ShardIterator"
        ]
        swept = 0
        for n, body in enumerate(bodies, 1):
            # The sweep first: the checks due by the time this body arrives (its decisions are
            # dispatched with the body's).
            published.clear()
            counters.into(stages["sweep"])
            swept += sweep(rules, rules_ports, body.received).due
            counters.into(stages["ingest"])
            stages["ingest"].invocations += 1
            batch = Batch.model_validate(json.loads(body.json))
            messages = [(i, m) for i, m in enumerate(batch.batch) if not isinstance(m, InvalidMessage)]
            result = ingest(messages, rules.plan, usage, body.received)
            if result.errors:
                raise RuntimeError(f"sample messages refused: {result.errors[:3]}")
            # The rollup function first (its writes are filtered out of the evaluator's stream).
            counters.into(stages["rollups"])
            if n % rollup_every == 0 or n == len(bodies):
                rollups.pump()

            got: dict[str, Any] = dict(streams.get_records(ShardIterator=iterator))
            iterator = got["NextShardIterator"]
            records: list[dict[str, Any]] = [r for r in got["Records"] if _passes_filter(r)]
            stream_records += len(records)
            counters.into(stages["evaluate"])
            if records:
                evaluate_invocations += -(-len(records) // STREAM_BATCH_SIZE)
            accounts = AccountFactsCache(usage, rules.reads_account_usage)
            for record in records:
                ddb = record["dynamodb"]
                keys = {k: deserialize(v) for k, v in ddb["Keys"].items()}
                new = {k: deserialize(v) for k, v in ddb.get("NewImage", {}).items()}
                old = {k: deserialize(v) for k, v in ddb.get("OldImage", {}).items()}
                account = account_from_stream(keys, new, old or None)
                if account is not None:
                    account_changes += 1
                    outcome = evaluate_account(
                        account.account_id, rules, rules_ports, body.received, accounts=accounts
                    )
                    users += len(outcome.outcomes)
                    continue
                change = user_from_stream(keys, new)
                if change is None:
                    continue
                users += 1
                evaluate_user(
                    change.value,
                    rules,
                    rules_ports,
                    body.received,
                    state_version=change.version,
                    accounts=accounts,
                )
            counters.into(stages["dispatch"])
            if published:
                stages["dispatch"].invocations += -(-len(published) // SQS_BATCH_SIZE)
            for decision_batch in list(published):
                all_batches.append(decision_batch)
                routed += dispatch(decision_batch, rules, dispatch_ports, decision_batch.decided_at).routed
        stages["evaluate"].invocations = evaluate_invocations
        stages["rollups"].invocations = rollups.invocations
        for stage in stages.values():
            if stage.tally.failed_requests:
                raise RuntimeError(f"{stage.tally.failed_requests} DynamoDB requests failed ({stage.name})")
    # The rollup function's own work: its handler over the same events, on the in-memory ledger.
    memory = RollupStreamHandler(MemoryRollupLedger())
    began = time.process_time()
    with quiet_logs():
        for event in rollups.events:
            memory.handle(event)
    rollup_cpu = time.process_time() - began
    return Run(
        bodies=len(bodies),
        events=sum(b.messages for b in bodies),
        stages=stages,
        stream_records=stream_records,
        rollup_records=rollups.records,
        rollup_cpu_seconds=rollup_cpu,
        evaluate_invocations=evaluate_invocations,
        users_evaluated=users,
        account_changes=account_changes,
        swept=swept,
        batches=len(all_batches),
        decisions=sum(len(b.decisions) for b in all_batches),
        routed=routed,
        seconds=time.perf_counter() - started,
    )


class _SweepRunsApart(DynamoSegmentStore):
    """DynamoSegmentStore counting the sweep's fixed work per run (index queries, watermark) into
    its own stage, so the "sweep" stage holds only its work per user due."""

    def __init__(self, counters: Counters, stages: dict[str, Stage], *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.counters = counters
        self.stages = stages

    def due(self, since: datetime, now: datetime, page_size: int = 100) -> Iterator[DuePage]:
        pages = super().due(since, now, page_size)
        while True:
            self.counters.into(self.stages["sweep runs"])
            page = next(pages, None)
            self.counters.into(self.stages["sweep"])
            if page is None:
                return
            yield page

    def load_watermark(self) -> Versioned[datetime] | None:
        self.counters.into(self.stages["sweep runs"])
        try:
            return super().load_watermark()
        finally:
            self.counters.into(self.stages["sweep"])

    def save_watermark(self, through: datetime, version: int, now: datetime) -> None:
        self.counters.into(self.stages["sweep runs"])
        try:
            super().save_watermark(through, version, now)
        finally:
            self.counters.into(self.stages["sweep"])


def _passes_filter(record: dict[str, Any]) -> bool:
    """The evaluate event source's FilterCriteria: INSERT/MODIFY of USER#/STATE or ACCOUNT#/TRAITS."""
    if record["eventName"] not in ("INSERT", "MODIFY"):
        return False
    keys = record["dynamodb"]["Keys"]
    pk, sk = keys["pk"]["S"], keys["sk"]["S"]
    return bool((pk.startswith("USER#") and sk == "STATE") or (pk.startswith("ACCOUNT#") and sk == "TRAITS"))


# -- the CPU pass (in memory) ----------------------------------------------------------------


@dataclass
class Cpu:
    ingest_seconds: float
    bodies: int
    evaluate_seconds: float
    users: int
    dispatch_seconds: float
    batches: int


def cpu_pass(bodies: list[Body], rules: RuleSet) -> Cpu:
    """CPU time of the pure work per body, per user evaluation and per dispatched batch."""
    store = MemoryUsageStore()
    segments = MemorySegmentStore()
    publisher = MemoryDecisionPublisher()
    rules_ports = RulesPorts(store, segments, publisher)
    dispatch_ports = DispatchPorts(
        MemoryLedger(),
        store,
        MemoryRouter(),
        SegmentRechecks(segments),
        SuppressionList(MemorySuppressionStore(), lambda: [KEYING]),
    )
    spent: defaultdict[str, float] = defaultdict(float)
    users = batches = 0
    clock = time.process_time
    with quiet_logs():
        for body in bodies:
            t = clock()
            batch = Batch.model_validate(json.loads(body.json))
            messages = [(i, m) for i, m in enumerate(batch.batch) if not isinstance(m, InvalidMessage)]
            ingest(messages, rules.plan, store, body.received)
            spent["ingest"] += clock() - t
            touched = list(dict.fromkeys(m.identity for _, m in messages))
            before = len(publisher.batches)
            t = clock()
            accounts = AccountFactsCache(store, rules.reads_account_usage)
            for user_id in touched:
                state = store.users[user_id]
                evaluate_user(
                    state.value,
                    rules,
                    rules_ports,
                    body.received,
                    state_version=state.version,
                    accounts=accounts,
                )
            spent["evaluate"] += clock() - t
            users += len(touched)
            new = publisher.batches[before:]
            t = clock()
            for decision_batch in new:
                dispatch(decision_batch, rules, dispatch_ports, decision_batch.decided_at)
            spent["dispatch"] += clock() - t
            batches += len(new)
    return Cpu(spent["ingest"], len(bodies), spent["evaluate"], users, spent["dispatch"], batches)
