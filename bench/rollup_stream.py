"""The rollup function as Lambda drives it, on moto: read the usage table's stream since the last
call, keep what the RollupFunction's FilterCriteria (template.yaml) lets through, put each record
in the shape Lambda delivers (nudge.adapters.dynamo.stream_range.lambda_record) and hand the real handler
(nudge.entrypoints.rollups) batches of at most the event source's BatchSize.

bench/cost.py and bench/ingest.py call `pump()` every `quiet_requests_per_batch()` ingest requests
by default (the quiet stream: a request every QUIET_INTERVAL seconds, gathered for as long as the
event source's MaximumBatchingWindowInSeconds lets Lambda wait), or every N requests when told (a
busy stream fills BatchSize sooner). Integration tests use it to settle rollups.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from moto.events.models import EventPattern

from nudge.adapters.dynamo.rollups import DynamoRollupLedger
from nudge.adapters.dynamo.stream_range import lambda_record
from nudge.domain.rollups import StreamDelta
from nudge.entrypoints.rollups import RollupStreamHandler, stream_deltas
from nudge.observability import metrics
from nudge.ports import RollupLedger
from nudge.tools.local.sources import StreamSource, stream_sources
from nudge.tools.local.template import load_template

ROOT = Path(__file__).resolve().parent.parent
FUNCTION = "RollupFunction"
# The quiet stream the benchmarks model: an SDK-sized request (100 events) every 5 seconds, 20
# events/s (with the 5 s window the template had before, exactly one request a batch).
QUIET_INTERVAL = 5.0


def rollup_source(template: Path = ROOT / "template.yaml") -> StreamSource:
    found = [s for s in stream_sources(load_template(template)) if s.function == FUNCTION]
    if len(found) != 1:
        raise LookupError(f"{template}: {FUNCTION} has no single DynamoDB event source")
    return found[0]


def batching_window(template: Path = ROOT / "template.yaml") -> float:
    """The RollupFunction event source's MaximumBatchingWindowInSeconds (Lambda's default: 0)."""
    events = load_template(template)["Resources"][FUNCTION]["Properties"]["Events"]
    (props,) = [e["Properties"] for e in events.values() if e["Type"] == "DynamoDB"]
    return float(props.get("MaximumBatchingWindowInSeconds", 0))


def quiet_requests_per_batch(
    interval: float = QUIET_INTERVAL, template: Path = ROOT / "template.yaml"
) -> int:
    """Requests whose records one rollup batch gathers on the quiet stream: Lambda waits up to the
    batching window (or until BatchSize records, which `pump` enforces) before it invokes."""
    return max(1, int(batching_window(template) // interval))


@dataclass
class RollupPump:
    """One reader of one table's stream (moto keeps a table's stream in one shard)."""

    dynamodb: Any
    streams: Any
    table: str
    shards: int = 16
    ledger: RollupLedger | None = None
    source: StreamSource = field(default_factory=rollup_source)
    records: int = 0  # delivered to the handler (after the filter)
    invocations: int = 0
    deltas: list[StreamDelta] = field(default_factory=list)  # every delta delivered, in order
    events: list[dict[str, Any]] = field(default_factory=list)  # every event the handler was given

    def __post_init__(self) -> None:
        arn = self.dynamodb.describe_table(TableName=self.table)["Table"]["LatestStreamArn"]
        self.arn = arn
        shard = self.streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]["ShardId"]
        self._iterator = self.streams.get_shard_iterator(
            StreamArn=arn, ShardId=shard, ShardIteratorType=self.source.starting_position
        )["ShardIterator"]
        self._patterns = [EventPattern.load(p) for p in self.source.filters]
        self.handler = RollupStreamHandler(
            self.ledger
            if self.ledger is not None
            else DynamoRollupLedger(self.dynamodb, self.table, self.shards)
        )

    def read(self) -> list[dict[str, Any]]:
        """The records written since the last read that the event source's filter passes, as Lambda
        delivers them."""
        out: list[dict[str, Any]] = []
        while True:
            got = self.streams.get_records(ShardIterator=self._iterator, Limit=1000)
            self._iterator = got["NextShardIterator"]
            for raw in got["Records"]:
                record = lambda_record(raw, self.arn)
                if not self._patterns or any(p.matches_event(cast(Any, record)) for p in self._patterns):
                    out.append(record)
            if not got["Records"]:
                return out

    def pump(self) -> int:
        """Deliver what was written since the last call, in batches of BatchSize; the records delivered."""
        records = self.read()
        size = self.source.batch_size
        for start in range(0, len(records), size):
            event = {"Records": records[start : start + size]}
            self.deltas += stream_deltas(event)
            self.events.append(event)
            self.handler.handle(event)
            # The function's decorator flushes its metrics per invocation: here, nobody reads them.
            metrics.clear_metrics()
            self.invocations += 1
        self.records += len(records)
        return len(records)


def event_of(records: list[dict[str, Any]]) -> dict[str, Any]:
    """A stream event of `records` (a copy, as each Lambda invocation gets its own)."""
    return {"Records": json.loads(json.dumps(records))}
