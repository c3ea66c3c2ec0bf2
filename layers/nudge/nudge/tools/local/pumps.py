"""Lambda's event sources, for the local stack: the table's stream, the schedule, and a queue tap.

In AWS nobody calls the evaluate and sweep functions: Lambda polls the usage table's stream
(an event source mapping) and EventBridge invokes the sweep on its schedule. Locally these
classes stand in for them, configured from template.yaml so they can't drift from what deploys:

* ``StreamPump`` reads the table's stream from moto (DescribeStream, GetShardIterator,
  GetRecords, every shard, keeping its iterators), turns each record into the shape Lambda
  delivers (binary as base64, times in epoch seconds, ``eventSourceARN``), keeps only what the
  event source's ``FilterCriteria`` lets through, batches by ``BatchSize`` and invokes the real
  handler. Failures are handled as Lambda does: a ``batchItemFailures`` answer retries from the
  first failed record, an error retries the batch (bisected first when
  ``BisectBatchOnFunctionError``), and after ``MaximumRetryAttempts`` the batch's description
  goes to the ``OnFailure`` destination queue and the pump moves on.
* ``ScheduledFunction`` invokes a function with EventBridge's "Scheduled Event" at the
  template's ``rate(...)``, with the async-invoke retries and on-failure destination of its
  ``EventInvokeConfig``.
* ``QueueTap`` drains a queue no local function consumes yet (the decision queue: the action
  functions come later) and keeps what it read, so the local API can show it.

Nothing here runs on its own; ``nudge.tools.local.stack.LocalStack`` decides when (after each request
it is asked to settle, after each clock move) and says why there. So the event source's
``MaximumBatchingWindowInSeconds`` is not waited out: a pump delivers what the stream holds when
it is called, in batches of up to ``BatchSize``.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time
import uuid
import zlib
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, cast

from botocore.exceptions import ClientError
from moto.events.models import EventPattern

from nudge.tools.local.aws import ACCOUNT_ID, REGION, HandlerFailed
from nudge.tools.local.template import TemplateError

if TYPE_CHECKING:
    from mypy_boto3_dynamodbstreams.client import DynamoDBStreamsClient
    from mypy_boto3_sqs.client import SQSClient

# function logical id, event -> the handler's answer; raises HandlerFailed when the handler raised.
Invoker = Callable[[str, dict[str, Any]], dict[str, Any]]
Clock = Callable[[], datetime]

FUNCTION_TYPE = "AWS::Serverless::Function"
# Lambda's defaults for DynamoDB event sources.
DEFAULT_BATCH_SIZE = 100
# Lambda's default is -1: retry until the record leaves the stream (24 hours). Locally that
# would spin on a poison record for ever, so an unset or infinite count is bounded to this.
LOCAL_MAX_RETRIES = 3
# Lambda retries an async invocation that raised twice unless EventInvokeConfig says otherwise.
DEFAULT_ASYNC_RETRIES = 2
GET_RECORDS_LIMIT = 1000  # the most GetRecords returns at once
SQS_RECEIVE_LIMIT = 10
# A queue pump stops after this many rounds in a row in which every message failed; the messages
# stay on the queue for the next pump (a queue with a DLQ moves them there long before).
MAX_STALLED_ROUNDS = 25
# Between retries of a failed batch: Lambda backs off too, and a transient failure (contention
# on a user's record) usually clears in that time. Capped: the local stack waits for it.
RETRY_BACKOFF_SECONDS = 0.05
RETRY_BACKOFF_CAP_SECONDS = 1.0

_RATE = re.compile(r"rate\(\s*(\d+)\s+(minute|minutes|hour|hours|day|days)\s*\)")
_UNITS = {"minute": 60, "hour": 3600, "day": 86400}


def function_arn(logical_id: str) -> str:
    """The ARN a local function goes by (its name is its logical id, as in LocalLambdaContext)."""
    return f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{logical_id}"


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# ---------------------------------------------------------------------------- the template's sources


@dataclass(frozen=True)
class StreamSource:
    """A function's `Type: DynamoDB` event, with Lambda's defaults filled in."""

    function: str
    event: str
    table: str  # logical id of the table whose stream it reads
    starting_position: str
    batch_size: int
    max_retries: int
    bisect: bool
    report_item_failures: bool
    on_failure_queue: str | None  # logical id of an SQS queue
    filters: tuple[str, ...]  # FilterCriteria patterns, as JSON text


@dataclass(frozen=True)
class ScheduleSource:
    """A function's `Type: Schedule` event (EventBridge rule) and its async-invoke config."""

    function: str
    event: str
    rate: timedelta
    enabled: bool
    retries: int
    on_failure_queue: str | None

    @property
    def rule_name(self) -> str:
        return f"nudge-local-{self.function}{self.event}"

    @property
    def rule_arn(self) -> str:
        return f"arn:aws:events:{REGION}:{ACCOUNT_ID}:rule/{self.rule_name}"


def _get_att(value: Any, attribute: str, where: str) -> str:
    """The logical id in `!GetAtt Id.<attribute>`; anything else can't be followed locally."""
    if isinstance(value, dict) and isinstance(value.get("Fn::GetAtt"), list):
        target, att = value["Fn::GetAtt"][0], value["Fn::GetAtt"][1]
        if att == attribute:
            return str(target)
    raise TemplateError(f"{where}: expected !GetAtt <LogicalId>.{attribute}, got {value!r}")


def _events(
    template: Mapping[str, Any], kind: str
) -> Iterable[tuple[str, str, dict[str, Any], dict[str, Any]]]:
    """(function id, event name, event properties, function properties) of every `kind` event."""
    for logical_id, resource in template["Resources"].items():
        if resource.get("Type") != FUNCTION_TYPE:
            continue
        props = resource.get("Properties") or {}
        for name, event in (props.get("Events") or {}).items():
            if event.get("Type") == kind:
                yield logical_id, name, event.get("Properties") or {}, props


def _on_failure_queue(config: Mapping[str, Any] | None, where: str) -> str | None:
    on_failure = ((config or {}).get("DestinationConfig") or {}).get("OnFailure")
    if not on_failure:
        return None
    if on_failure.get("Type", "SQS") != "SQS":
        raise TemplateError(f"{where}: only SQS on-failure destinations run locally")
    return _get_att(on_failure.get("Destination"), "Arn", f"{where}.DestinationConfig")


def stream_sources(template: Mapping[str, Any]) -> list[StreamSource]:
    sources: list[StreamSource] = []
    for function, name, props, _ in _events(template, "DynamoDB"):
        where = f"{function}.Events.{name}"
        retries = int(props.get("MaximumRetryAttempts", -1))
        filters = ((props.get("FilterCriteria") or {}).get("Filters")) or []
        sources.append(
            StreamSource(
                function=function,
                event=name,
                table=_get_att(props.get("Stream"), "StreamArn", where),
                starting_position=str(props.get("StartingPosition", "LATEST")),
                batch_size=int(props.get("BatchSize", DEFAULT_BATCH_SIZE)),
                max_retries=retries if retries >= 0 else LOCAL_MAX_RETRIES,
                bisect=str(props.get("BisectBatchOnFunctionError", False)).lower() == "true",
                report_item_failures="ReportBatchItemFailures" in (props.get("FunctionResponseTypes") or []),
                on_failure_queue=_on_failure_queue(props, where),
                filters=tuple(str(f["Pattern"]) for f in filters if "Pattern" in f),
            )
        )
    return sources


def parse_rate(expression: str, where: str = "Schedule") -> timedelta:
    """`rate(15 minutes)` -> 15 minutes. Cron expressions are refused: nothing here evaluates them."""
    found = _RATE.fullmatch(expression.strip())
    if found is None:
        raise TemplateError(
            f"{where}: only rate(N minutes|hours|days) schedules run locally, not {expression!r}"
        )
    count, unit = int(found.group(1)), found.group(2).rstrip("s")
    if count < 1:
        raise TemplateError(f"{where}: {expression!r} is not a positive rate")
    return timedelta(seconds=count * _UNITS[unit])


def schedule_sources(template: Mapping[str, Any]) -> list[ScheduleSource]:
    sources: list[ScheduleSource] = []
    for function, name, props, fn_props in _events(template, "Schedule"):
        where = f"{function}.Events.{name}"
        invoke_config = fn_props.get("EventInvokeConfig") or {}
        enabled = props.get("Enabled", props.get("State", True))
        sources.append(
            ScheduleSource(
                function=function,
                event=name,
                rate=parse_rate(str(props.get("Schedule", "")), where),
                enabled=str(enabled).lower() not in ("false", "disabled"),
                retries=int(invoke_config.get("MaximumRetryAttempts", DEFAULT_ASYNC_RETRIES)),
                on_failure_queue=_on_failure_queue(invoke_config, f"{function}.EventInvokeConfig"),
            )
        )
    return sources


# ---------------------------------------------------------------------------- stream records


def _as_delivered(value: Mapping[str, Any]) -> dict[str, Any]:
    """An AttributeValue as Lambda delivers it: boto3 decoded binary to bytes, the event has base64."""
    kind, inner = next(iter(value.items()))
    if kind == "B":
        return {"B": base64.b64encode(inner).decode("ascii")}
    if kind == "BS":
        return {"BS": [base64.b64encode(b).decode("ascii") for b in inner]}
    if kind == "M":
        return {"M": {k: _as_delivered(v) for k, v in inner.items()}}
    if kind == "L":
        return {"L": [_as_delivered(v) for v in inner]}
    return {kind: inner}


def lambda_record(record: Mapping[str, Any], stream_arn: str, created: datetime) -> dict[str, Any]:
    """A GetRecords record (boto3 shape) as Lambda puts it in the event's Records list."""
    stream = record["dynamodb"]
    dynamodb: dict[str, Any] = {"ApproximateCreationDateTime": int(created.timestamp())}
    for image in ("Keys", "NewImage", "OldImage"):
        if image in stream:
            dynamodb[image] = {name: _as_delivered(v) for name, v in stream[image].items()}
    dynamodb["SequenceNumber"] = str(stream["SequenceNumber"])
    dynamodb["SizeBytes"] = int(stream.get("SizeBytes", 0))
    dynamodb["StreamViewType"] = str(stream.get("StreamViewType", "NEW_AND_OLD_IMAGES"))
    return {
        "eventID": str(record["eventID"]),
        "eventName": str(record["eventName"]),
        # What Lambda sends today, whatever version the stream API itself reports.
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": str(record.get("awsRegion") or REGION),
        "dynamodb": dynamodb,
        "eventSourceARN": stream_arn,
    }


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
        now: Clock,
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
            "timestamp": _iso(self._now()),
            "DDBStreamBatchInfo": {
                "shardId": batch[0]["shard"],
                "startSequenceNumber": first["SequenceNumber"],
                "endSequenceNumber": last["SequenceNumber"],
                "approximateArrivalOfFirstRecord": _iso(
                    datetime.fromtimestamp(first["ApproximateCreationDateTime"], UTC)
                ),
                "approximateArrivalOfLastRecord": _iso(
                    datetime.fromtimestamp(last["ApproximateCreationDateTime"], UTC)
                ),
                "batchSize": len(batch),
                "streamArn": self.stream_arn,
            },
        }
        self._sqs.send_message(QueueUrl=self._failure_queue_url, MessageBody=json.dumps(message))


# ---------------------------------------------------------------------------- the schedule


def scheduled_event(source: ScheduleSource, at: datetime) -> dict[str, Any]:
    """EventBridge's event for a rate rule firing at `at`."""
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": ACCOUNT_ID,
        "time": at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": REGION,
        "resources": [source.rule_arn],
        "detail": {},
    }


@dataclass
class ScheduledRun:
    at: datetime
    result: dict[str, Any] | None  # None: it failed every attempt (see the on-failure queue)
    attempts: int


class ScheduledFunction:
    """An EventBridge rate rule and the async invocations it makes.

    A rate rule fires every `rate` from when it was created (`anchor`). ``claim(now)`` tells
    whether a firing fell since the last run and, if so, takes it (two callers never both run
    it); the stack then runs it once, at `now`: after a jump of the clock the missed firings are
    not replayed one by one (the stack moves the clock in steps small enough for that; see
    LocalStack.advance_clock).
    """

    def __init__(
        self,
        source: ScheduleSource,
        *,
        invoke: Invoker,
        sqs: SQSClient,
        failure_queue_url: str | None,
        anchor: datetime,
    ) -> None:
        self.source = source
        self._invoke = invoke
        self._sqs = sqs
        self._failure_queue_url = failure_queue_url
        self._anchor = anchor
        self.last_run = anchor
        self.runs: list[ScheduledRun] = []
        self._lock = threading.Lock()

    def _firing(self, at: datetime) -> int:
        return (at - self._anchor) // self.source.rate

    def due(self, now: datetime) -> bool:
        return self.source.enabled and self._firing(now) > self._firing(self.last_run)

    def claim(self, now: datetime) -> bool:
        """Take the firing due at `now`, if any: True means the caller must run(now)."""
        with self._lock:
            if not self.due(now):
                return False
            self.last_run = now
            return True

    def run(self, now: datetime) -> ScheduledRun:
        event = scheduled_event(self.source, now)
        attempts = 1 + max(0, self.source.retries)
        error = ""
        for attempt in range(1, attempts + 1):
            try:
                result = self._invoke(self.source.function, event)
            except HandlerFailed as exc:
                error = str(exc)
                continue
            return self._ran(ScheduledRun(now, result, attempt))
        self._give_up(event, attempts, error, now)
        return self._ran(ScheduledRun(now, None, attempts))

    def _ran(self, run: ScheduledRun) -> ScheduledRun:
        with self._lock:
            self.last_run = max(self.last_run, run.at)
            self.runs.append(run)
        return run

    def _give_up(self, event: dict[str, Any], attempts: int, error: str, now: datetime) -> None:
        """The record an async invocation's on-failure destination receives."""
        if self._failure_queue_url is None:
            return
        message = {
            "version": "1.0",
            "timestamp": _iso(now),
            "requestContext": {
                "requestId": str(uuid.uuid4()),
                "functionArn": f"{function_arn(self.source.function)}:$LATEST",
                "condition": "RetriesExhausted",
                "approximateInvokeCount": attempts,
            },
            "requestPayload": event,
            "responseContext": {
                "statusCode": 200,
                "executedVersion": "$LATEST",
                "functionError": "Unhandled",
            },
            "responsePayload": {"errorMessage": error, "errorType": "HandlerFailed"},
        }
        self._sqs.send_message(QueueUrl=self._failure_queue_url, MessageBody=json.dumps(message))


# ---------------------------------------------------------------------------- queues


@dataclass(frozen=True)
class QueueSource:
    """A function's `Type: SQS` event, with Lambda's defaults filled in."""

    function: str
    event: str
    queue: str  # logical id of the queue
    batch_size: int
    report_item_failures: bool


def queue_sources(template: Mapping[str, Any]) -> list[QueueSource]:
    sources: list[QueueSource] = []
    for function, name, props, _ in _events(template, "SQS"):
        where = f"{function}.Events.{name}"
        sources.append(
            QueueSource(
                function=function,
                event=name,
                queue=_get_att(props.get("Queue"), "Arn", where),
                batch_size=int(props.get("BatchSize", SQS_RECEIVE_LIMIT)),
                report_item_failures="ReportBatchItemFailures" in (props.get("FunctionResponseTypes") or []),
            )
        )
    return sources


def sqs_record(message: Mapping[str, Any], queue_arn: str) -> dict[str, Any]:
    """A ReceiveMessage message (boto3 shape) as Lambda puts it in an SQS event's Records list."""
    attributes = {str(k): str(v) for k, v in (message.get("Attributes") or {}).items()}
    message_attributes = {
        name: {
            "stringValue": value.get("StringValue"),
            "binaryValue": None,
            "stringListValues": [],
            "binaryListValues": [],
            "dataType": value.get("DataType", "String"),
        }
        for name, value in (message.get("MessageAttributes") or {}).items()
    }
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message.get("Body", ""),
        "attributes": attributes,
        "messageAttributes": message_attributes,
        "md5OfBody": message.get("MD5OfBody", ""),
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": REGION,
    }


class QueuePump:
    """Lambda's SQS event source mapping for one queue -> one function.

    Receives up to BatchSize messages per invocation, as many batches at once as there are lanes
    (handler containers), and deletes what the handler did not report failed. A failed message is
    made visible again at once (Lambda would wait out the visibility timeout; the local stack does
    not wait), so it is received again; the queue's RedrivePolicy (moto applies it on receive)
    moves a message that keeps failing to its DLQ after maxReceiveCount receives, as in AWS.
    """

    def __init__(
        self,
        source: QueueSource,
        *,
        queue_url: str,
        queue_arn: str,
        sqs: SQSClient,
        invoke: Invoker,
        lanes: int = 1,
    ) -> None:
        self.source = source
        self.queue_url = queue_url
        self.queue_arn = queue_arn
        self._sqs = sqs
        self._invoke = invoke
        self._lanes = max(1, lanes)
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(
            max_workers=self._lanes, thread_name_prefix=f"queue-{source.function}"
        )
        self.stats = PumpStats()

    def start(self) -> None:
        pass

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    def pump(self) -> PumpStats:
        """Deliver what the queue holds until it is empty; return what this call did."""
        with self._lock:
            began = time.monotonic()
            stats = PumpStats()
            stalled = 0  # rounds in a row where every message failed (bounded: a queue without DLQ)
            while stalled < MAX_STALLED_ROUNDS:
                batches = [b for b in (self._receive() for _ in range(self._lanes)) if b]
                if not batches:
                    break
                received = sum(len(b) for b in batches)
                stats.read += received
                failed_now = 0
                for failed in self._pool.map(self._deliver, batches):
                    stats.invocations += 1
                    stats.delivered += 1
                    failed_now += failed
                stats.failed_records += failed_now
                stalled = stalled + 1 if failed_now == received else 0
            stats.seconds = time.monotonic() - began
            self.stats.add(stats)
            return stats

    def _receive(self) -> list[dict[str, Any]]:
        messages: list[dict[str, Any]] = []
        while len(messages) < self.source.batch_size:
            response = self._sqs.receive_message(
                QueueUrl=self.queue_url,
                MaxNumberOfMessages=min(SQS_RECEIVE_LIMIT, self.source.batch_size - len(messages)),
                AttributeNames=["All"],
                MessageAttributeNames=["All"],
                WaitTimeSeconds=0,
            )
            got = response.get("Messages", [])
            if not got:
                break
            messages.extend(dict(m) for m in got)
        return messages

    def _deliver(self, messages: list[dict[str, Any]]) -> int:
        """Invoke on one batch; delete what succeeded, release the rest; how many failed."""
        records = [sqs_record(m, self.queue_arn) for m in messages]
        try:
            response = self._invoke(self.source.function, {"Records": records})
            failures = response.get("batchItemFailures") if isinstance(response, dict) else None
            failed_ids = {str((f or {}).get("itemIdentifier") or "") for f in failures or []}
            if not self.source.report_item_failures:
                failed_ids = set()
            if failed_ids - {m["MessageId"] for m in messages}:
                # Lambda's rule: an unknown itemIdentifier fails the whole batch.
                failed_ids = {m["MessageId"] for m in messages}
        except HandlerFailed:
            failed_ids = {m["MessageId"] for m in messages}
        done = [m for m in messages if m["MessageId"] not in failed_ids]
        for start in range(0, len(done), SQS_RECEIVE_LIMIT):
            self._sqs.delete_message_batch(
                QueueUrl=self.queue_url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                    for i, m in enumerate(done[start : start + SQS_RECEIVE_LIMIT])
                ],
            )
        for m in messages:
            if m["MessageId"] in failed_ids:
                self._sqs.change_message_visibility(
                    QueueUrl=self.queue_url, ReceiptHandle=m["ReceiptHandle"], VisibilityTimeout=0
                )
        return len(failed_ids)


# ---------------------------------------------------------------------------- queue tap


@dataclass(frozen=True)
class TappedMessage:
    queued_at: datetime  # simulated time the tap read it
    message_id: str
    body: Any  # parsed JSON, or the text when it is not JSON
    attributes: dict[str, str] = field(default_factory=dict)


class QueueTap:
    """Reads, keeps and deletes every message of a queue that no local function consumes yet."""

    def __init__(self, sqs: SQSClient, queue_url: str, now: Clock) -> None:
        self.queue_url = queue_url
        self._sqs = sqs
        self._now = now
        self._lock = threading.Lock()
        self._messages: list[TappedMessage] = []

    def drain(self) -> int:
        taken = 0
        with self._lock:
            while True:
                response = self._sqs.receive_message(
                    QueueUrl=self.queue_url,
                    MaxNumberOfMessages=SQS_RECEIVE_LIMIT,
                    MessageAttributeNames=["All"],
                    WaitTimeSeconds=0,
                )
                received = response.get("Messages", [])
                if not received:
                    return taken
                at = self._now()
                for message in received:
                    self._messages.append(
                        TappedMessage(
                            queued_at=at,
                            message_id=message["MessageId"],
                            body=_parse(message.get("Body", "")),
                            attributes={
                                name: str(value.get("StringValue", ""))
                                for name, value in (message.get("MessageAttributes") or {}).items()
                            },
                        )
                    )
                self._sqs.delete_message_batch(
                    QueueUrl=self.queue_url,
                    Entries=[
                        {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(received)
                    ],
                )
                taken += len(received)

    def messages(self) -> Sequence[TappedMessage]:
        with self._lock:
            return list(self._messages)


def _parse(body: str) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return body
