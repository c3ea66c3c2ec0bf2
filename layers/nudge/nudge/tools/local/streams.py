"""The usage table's stream, for the local stack: ``StreamPump``, Lambda's event source mapping.

``StreamPump`` reads the table's stream from moto (DescribeStream, GetShardIterator, GetRecords,
every shard, keeping its iterators), turns each record into the shape Lambda delivers (binary as
base64, times in epoch seconds, ``eventSourceARN``), keeps only what the event source's
``FilterCriteria`` lets through, batches by ``BatchSize`` and invokes the real handler. Failures
are handled as Lambda does: a ``batchItemFailures`` answer retries from the first failed record,
an error retries the batch (bisected first when ``BisectBatchOnFunctionError``), and after
``MaximumRetryAttempts`` the batch's description goes to the ``OnFailure`` destination queue and
the pump moves on.

The source comes from template.yaml (``nudge.tools.local.sources``); the stack decides when to
pump. ``PumpStats`` counts what a pump did; queue pumps count in the same terms.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
import zlib
from collections import deque
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, cast

from botocore.exceptions import ClientError
from moto.events.models import EventPattern

from nudge.adapters.dynamo.stream_range import lambda_record
from nudge.tools.local.aws import HandlerFailed
from nudge.tools.local.functions import Invoker, destination_time, function_arn
from nudge.tools.local.moto_peek import DirectStream
from nudge.tools.local.simulated_clock import Now
from nudge.tools.local.sources import StreamSource

if TYPE_CHECKING:
    from mypy_boto3_dynamodbstreams.client import DynamoDBStreamsClient
    from mypy_boto3_sqs.client import SQSClient

GET_RECORDS_LIMIT = 1000  # the most GetRecords returns at once
# Between retries of a failed batch: Lambda backs off too, and a transient failure (contention
# on a user's record) usually clears in that time. Capped: the local stack waits for it.
RETRY_BACKOFF_SECONDS = 0.05
RETRY_BACKOFF_CAP_SECONDS = 1.0


@dataclass
class PumpStats:
    """What a stream pump has done since the stack started (or in one `pump` call)."""

    read: int = 0
    delivered: int = 0
    filtered_out: int = 0
    invocations: int = 0
    retries: int = 0
    bisections: int = 0
    failed_batches: int = 0
    failed_records: int = 0
    seconds: float = 0.0

    def add(self, other: PumpStats) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))


# What lambda_record needs of a record's `dynamodb` part, whatever the filters read.
_ALWAYS = ("SequenceNumber", "SizeBytes", "StreamViewType")


def _fields_of(patterns: Sequence[Any]) -> dict[str, Any]:
    """The record fields a list of filter patterns reads: a tree of names ({} for "all of it")."""
    fields: dict[str, Any] = {}
    for pattern in patterns:
        if not isinstance(pattern, dict):
            continue
        for name, sub in pattern.items():
            if name == "$or":
                for alternative in _fields_of(sub).items():
                    _merge(fields, *alternative)
            else:
                _merge(fields, name, _fields_of([sub]) if isinstance(sub, dict) else {})
    return fields


def _merge(fields: dict[str, Any], name: str, sub: dict[str, Any]) -> None:
    if name in fields and (not fields[name] or not sub):
        fields[name] = {}  # one pattern reads all of it
    elif name in fields:
        for inner in sub.items():
            _merge(fields[name], *inner)
    else:
        fields[name] = sub


def _view(record: Mapping[str, Any], fields: Mapping[str, Any]) -> dict[str, Any]:
    """`record` cut down to `fields` (what the filters read) and to what lambda_record needs."""
    stream = record["dynamodb"]
    wanted = fields.get("dynamodb")
    return {
        **{name: value for name, value in record.items() if name != "dynamodb"},
        "dynamodb": {
            **{name: stream[name] for name in _ALWAYS if name in stream},
            **_cut(stream, wanted if isinstance(wanted, dict) and wanted else None),
        },
    }


def _cut(value: Mapping[str, Any], fields: Mapping[str, Any] | None) -> dict[str, Any]:
    if fields is None:
        return dict(value)
    out: dict[str, Any] = {}
    for name, sub in fields.items():
        if name in value:
            inner = value[name]
            out[name] = _cut(inner, sub) if sub and isinstance(inner, Mapping) else inner
    return out


class _Outcome:
    OK = "ok"
    PARTIAL = "partial"
    ERROR = "error"


class StreamPump:
    """Lambda's event source mapping for one DynamoDB stream -> one function.

    Lambda runs one batch per shard at a time, and DynamoDB spreads a table's stream over shards
    by partition key. moto keeps every table in one shard, so the pump splits what it reads into
    `lanes` by partition key the same way: one item's records stay in order (as in AWS), while
    different users' batches run at once, on as many handler containers as there are lanes.
    """

    def __init__(
        self,
        source: StreamSource,
        *,
        stream_arn: str,
        streams: DynamoDBStreamsClient,
        sqs: SQSClient,
        failure_queue_url: str | None,
        invoke: Invoker,
        now: Now,
        lanes: int = 1,
    ) -> None:
        self.source = source
        self.stream_arn = stream_arn
        self._streams = streams
        self._sqs = sqs
        self._failure_queue_url = failure_queue_url
        self._invoke = invoke
        self._now = now
        self._lanes = max(1, lanes)
        self._patterns = [EventPattern.load(pattern) for pattern in source.filters]
        # What of a record the filters read: the rest (large images, mostly) need not be converted.
        self._fields = _fields_of([json.loads(pattern) for pattern in source.filters])
        # shard id -> iterator (None once the shard is closed and read to its end)
        self._iterators: dict[str, str | None] = {}
        # shard id -> last sequence number read, to get a fresh iterator if one expires
        self._positions: dict[str, str] = {}
        # moto's shard read directly when moto runs in this process (moto_peek): shard id -> the
        # sequence number to read next.
        self._direct = DirectStream.find(streams.meta.endpoint_url, stream_arn)
        self._next: dict[str, int] = {}
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=self._lanes, thread_name_prefix=f"pump-{source.function}")
        self.stats = PumpStats()

    def start(self) -> None:
        """Take the starting position (LATEST: what is written from now on), as a new mapping does."""
        with self._lock:
            self._discover(self.source.starting_position)

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    def pump(self) -> PumpStats:
        """Deliver every record written since the last call; return what this call did."""
        with self._lock:
            began = time.monotonic()
            stats = PumpStats()
            # Shards that appeared since (a split's children) are read from their beginning.
            self._discover("TRIM_HORIZON")
            raw = self._read()
            stats.read = len(raw)
            real_now, simulated_now = datetime.now(UTC), self._now()
            lanes: list[list[dict[str, Any]]] = [[] for _ in range(self._lanes)]
            for shard_id, record in raw:
                # The record's time on the simulated clock: records are read moments after they are
                # written (the stack pumps before it moves the clock), so its real age will do.
                created = record["dynamodb"].get("ApproximateCreationDateTime")
                age = real_now - created if isinstance(created, datetime) else timedelta(0)
                created_at = simulated_now - max(age, timedelta(0))
                # Most records are filtered out (rollups, the evaluator's own writes): match them on
                # the few fields the filters name before converting their images.
                view = lambda_record(_view(record, self._fields), self.stream_arn, created_at)
                if self._patterns and not self._passes(view):
                    stats.filtered_out += 1
                    continue
                event_record = lambda_record(record, self.stream_arn, created_at)
                lane = zlib.crc32(json.dumps(event_record["dynamodb"]["Keys"], sort_keys=True).encode())
                lanes[lane % self._lanes].append({"shard": shard_id, "record": event_record})
            busy = [lane for lane in lanes if lane]
            for lane_stats in self._pool.map(self._deliver_lane, busy):
                stats.add(lane_stats)
            stats.seconds = time.monotonic() - began
            self.stats.add(stats)
            return stats

    # -- reading

    def _discover(self, position: str) -> None:
        if self._direct is not None:
            for shard_id in self._direct.shards():
                if shard_id not in self._next:
                    self._next[shard_id] = self._direct.first(shard_id, position)
            return
        kwargs: dict[str, Any] = {"StreamArn": self.stream_arn}
        while True:
            description = self._streams.describe_stream(**kwargs)["StreamDescription"]
            for shard in description.get("Shards", []):
                shard_id = shard["ShardId"]
                if shard_id not in self._iterators:
                    self._iterators[shard_id] = self._streams.get_shard_iterator(
                        StreamArn=self.stream_arn,
                        ShardId=shard_id,
                        ShardIteratorType=position,  # type: ignore[arg-type]
                    ).get("ShardIterator")
            last = description.get("LastEvaluatedShardId")
            if not last:
                return
            kwargs["ExclusiveStartShardId"] = last

    def _read(self) -> list[tuple[str, dict[str, Any]]]:
        records: list[tuple[str, dict[str, Any]]] = []
        if self._direct is not None:
            for shard_id, first in self._next.items():
                kept = self._direct.read(shard_id, first)
                if kept:
                    records.extend((shard_id, r) for r in kept)
                    self._next[shard_id] = int(kept[-1]["dynamodb"]["SequenceNumber"]) + 1
            return records
        for shard_id, iterator in self._iterators.items():
            while iterator is not None:
                try:
                    response = self._streams.get_records(ShardIterator=iterator, Limit=GET_RECORDS_LIMIT)
                except ClientError as exc:
                    if exc.response.get("Error", {}).get("Code") != "ExpiredIteratorException":
                        raise
                    # Iterators expire after 15 minutes (a quiet `nudge serve`): resume where we were.
                    iterator = self._fresh_iterator(shard_id)
                    continue
                got = response.get("Records", [])
                records.extend((shard_id, dict(r)) for r in got)
                if got:
                    self._positions[shard_id] = str(got[-1]["dynamodb"]["SequenceNumber"])
                iterator = response.get("NextShardIterator")
                self._iterators[shard_id] = iterator
                if not got:
                    break
        return records

    def _fresh_iterator(self, shard_id: str) -> str | None:
        position = self._positions.get(shard_id)
        kwargs: dict[str, Any] = {"StreamArn": self.stream_arn, "ShardId": shard_id}
        if position is None:
            kwargs["ShardIteratorType"] = "TRIM_HORIZON"
        else:
            kwargs.update(ShardIteratorType="AFTER_SEQUENCE_NUMBER", SequenceNumber=position)
        return self._streams.get_shard_iterator(**kwargs).get("ShardIterator")

    def _passes(self, record: dict[str, Any]) -> bool:
        # Lambda keeps a record when any filter matches it; with no filters, every record.
        # moto's EventBridge matcher: Lambda's filter rules are EventBridge's pattern syntax.
        event = cast(Any, record)
        return not self._patterns or any(pattern.matches_event(event) for pattern in self._patterns)

    # -- delivering

    def _deliver_lane(self, items: list[dict[str, Any]]) -> PumpStats:
        stats = PumpStats(delivered=len(items))
        size = self.source.batch_size
        # (batch, retries so far), in stream order: a retried batch blocks the lane, as a shard's does.
        pending: deque[tuple[list[dict[str, Any]], int]] = deque(
            (items[start : start + size], 0) for start in range(0, len(items), size)
        )
        while pending:
            batch, retries = pending.popleft()
            outcome, failed_at = self._invoke_batch(batch)
            stats.invocations += 1
            if outcome == _Outcome.OK:
                continue
            if outcome == _Outcome.ERROR and self.source.bisect and len(batch) > 1:
                # Splitting does not count against the retries: it narrows a poison record down, so
                # the rest of its batch still gets through.
                half = len(batch) // 2
                pending.appendleft((batch[half:], retries))
                pending.appendleft((batch[:half], retries))
                stats.bisections += 1
                continue
            remaining = batch[failed_at:]
            if retries < self.source.max_retries:
                stats.retries += 1
                time.sleep(min(RETRY_BACKOFF_CAP_SECONDS, RETRY_BACKOFF_SECONDS * 2**retries))
                pending.appendleft((remaining, retries + 1))
                continue
            self._give_up(remaining, retries + 1, function_error=outcome == _Outcome.ERROR)
            stats.failed_batches += 1
            stats.failed_records += len(remaining)
        return stats

    def _invoke_batch(self, batch: list[dict[str, Any]]) -> tuple[str, int]:
        """(outcome, index of the first record to retry)."""
        records = [item["record"] for item in batch]
        try:
            response = self._invoke(self.source.function, {"Records": records})
        except HandlerFailed:
            return _Outcome.ERROR, 0
        if not self.source.report_item_failures:
            return _Outcome.OK, len(batch)
        failures = response.get("batchItemFailures") if isinstance(response, dict) else None
        if not failures:
            return _Outcome.OK, len(batch)
        positions = {r["dynamodb"]["SequenceNumber"]: i for i, r in enumerate(records)}
        indexes = [positions.get(str((f or {}).get("itemIdentifier") or "")) for f in failures]
        if any(index is None for index in indexes):
            # Lambda's rule: an empty or unknown itemIdentifier fails the whole batch.
            return _Outcome.ERROR, 0
        return _Outcome.PARTIAL, min(i for i in indexes if i is not None)

    def _give_up(self, batch: list[dict[str, Any]], attempts: int, *, function_error: bool) -> None:
        """What Lambda sends to a stream source's on-failure destination: where, not the records."""
        if self._failure_queue_url is None:
            return
        first, last = batch[0]["record"]["dynamodb"], batch[-1]["record"]["dynamodb"]
        message = {
            "requestContext": {
                "requestId": str(uuid.uuid4()),
                "functionArn": function_arn(self.source.function),
                "condition": "RetryAttemptsExhausted",
                "approximateInvokeCount": attempts,
            },
            "responseContext": {
                "statusCode": 200,
                "executedVersion": "$LATEST",
                "functionError": "Unhandled" if function_error else "",
            },
            "version": "1.0",
            "timestamp": destination_time(self._now()),
            "DDBStreamBatchInfo": {
                "shardId": batch[0]["shard"],
                "startSequenceNumber": first["SequenceNumber"],
                "endSequenceNumber": last["SequenceNumber"],
                "approximateArrivalOfFirstRecord": destination_time(
                    datetime.fromtimestamp(first["ApproximateCreationDateTime"], UTC)
                ),
                "approximateArrivalOfLastRecord": destination_time(
                    datetime.fromtimestamp(last["ApproximateCreationDateTime"], UTC)
                ),
                "batchSize": len(batch),
                "streamArn": self.stream_arn,
            },
        }
        self._sqs.send_message(QueueUrl=self._failure_queue_url, MessageBody=json.dumps(message))
