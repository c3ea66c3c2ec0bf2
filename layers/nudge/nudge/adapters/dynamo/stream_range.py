"""A failed stream batch read back from the table's stream, for a redrive.

Lambda sends a stream source's on-failure destination where a batch was, not its records:

    {"DDBStreamBatchInfo": {"shardId": ..., "startSequenceNumber": ..., "endSequenceNumber": ...,
                            "batchSize": ..., "streamArn": ...}, "requestContext": ..., ...}

`failed_batch` reads that message; `StreamRangeReader.read` gets the records from the first
sequence number to the last, both included, in stream order (GetRecords' shape), while the stream
still holds them (24 hours). Nothing is returned unless the whole range is: a redrive of part of a
range would be cut into other runs than the failed batch was (nudge.services.rollups).
`lambda_record` puts a GetRecords record in the shape Lambda delivers it (the local stack's pumps
and the redrive both hand records to handlers so).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

if TYPE_CHECKING:
    from mypy_boto3_dynamodbstreams.client import DynamoDBStreamsClient

GET_RECORDS_LIMIT = 1000  # the most GetRecords returns at once
# Empty reads of an open shard in a row before the range counts as not all there: the stream
# serves what it holds, and a record of the range is older than any the reader waits for.
EMPTY_READS = 5
# The stream's errors meaning its records before some point are gone (past the 24 h retention).
GONE = {"TrimmedDataAccessException", "ResourceNotFoundException", "ExpiredIteratorException"}


class NotAFailedBatch(ValueError):
    """A message that is not Lambda's record of a failed stream batch."""


class RangeNotReadable(Exception):
    """The stream no longer holds the whole range, or could not be read; the message says which."""


@dataclass(frozen=True)
class FailedBatch:
    """Where a failed batch was in the stream: its shard, first and last sequence numbers, size."""

    stream_arn: str
    shard_id: str
    start: str
    end: str
    size: int

    def __str__(self) -> str:
        return f"{self.shard_id} {self.start}..{self.end} ({self.size} records)"


def failed_batch(body: str) -> FailedBatch:
    """The batch a destination message names. NotAFailedBatch when it names none."""
    try:
        info: Any = json.loads(body)["DDBStreamBatchInfo"]
        batch = FailedBatch(
            stream_arn=str(info["streamArn"]),
            shard_id=str(info["shardId"]),
            start=str(info["startSequenceNumber"]),
            end=str(info["endSequenceNumber"]),
            size=int(info["batchSize"]),
        )
        int(batch.start), int(batch.end)  # sequence numbers are decimal strings
    except (ValueError, KeyError, TypeError) as exc:
        raise NotAFailedBatch(
            "not a DynamoDB stream batch's failure record (no DDBStreamBatchInfo with streamArn, shardId,"
            " startSequenceNumber, endSequenceNumber and batchSize)"
        ) from exc
    return batch


class StreamRangeReader:
    """GetRecords from a failed batch's first record to its last, on the DynamoDB Streams API."""

    def __init__(self, client: DynamoDBStreamsClient) -> None:
        self.client = client

    def read(self, batch: FailedBatch) -> list[dict[str, Any]]:
        """The range's records, in order. RangeNotReadable unless every one of them is there."""
        first, last = int(batch.start), int(batch.end)
        records: list[dict[str, Any]] = []
        try:
            iterator: str | None = self.client.get_shard_iterator(
                StreamArn=batch.stream_arn,
                ShardId=batch.shard_id,
                ShardIteratorType="AT_SEQUENCE_NUMBER",
                SequenceNumber=batch.start,
            )["ShardIterator"]
            empty = 0
            while iterator is not None and empty < EMPTY_READS:
                got = self.client.get_records(ShardIterator=iterator, Limit=GET_RECORDS_LIMIT)
                iterator = got.get("NextShardIterator")
                page: list[dict[str, Any]] = [dict(r) for r in got.get("Records", [])]
                empty = 0 if page else empty + 1
                for record in page:
                    sequence = int(record["dynamodb"]["SequenceNumber"])
                    if sequence > last:
                        return _whole(records, batch, first)
                    records.append(record)
                if records and int(records[-1]["dynamodb"]["SequenceNumber"]) == last:
                    return _whole(records, batch, first)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in GONE:
                raise RangeNotReadable(
                    f"the stream no longer holds batch {batch} ({code}): its records are past the stream's"
                    " 24-hour retention"
                ) from exc
            raise RangeNotReadable(f"the stream could not be read for batch {batch}: {code or exc}") from exc
        except BotoCoreError as exc:
            raise RangeNotReadable(f"the stream could not be read for batch {batch}: {exc}") from exc
        raise RangeNotReadable(
            f"the stream ended before batch {batch} did (last record read: "
            f"{records[-1]['dynamodb']['SequenceNumber'] if records else 'none'})"
        )


def _whole(records: list[dict[str, Any]], batch: FailedBatch, first: int) -> list[dict[str, Any]]:
    if not records or int(records[0]["dynamodb"]["SequenceNumber"]) != first:
        raise RangeNotReadable(f"the stream no longer holds the first record of batch {batch}")
    return records


def _as_delivered(value: Mapping[str, Any]) -> dict[str, Any]:
    """An AttributeValue as Lambda delivers it: boto3 decoded binary to bytes, the event has base64."""
    kind, inner = next(iter(value.items()))
    if kind == "B":
        return {"B": base64.b64encode(inner).decode("ascii")}
    if kind == "BS":
        return {"BS": [base64.b64encode(b).decode("ascii") for b in inner]}
    if kind in ("SS", "NS"):
        return {kind: list(inner)}  # a copy: the record read may be moto's own (moto_peek)
    if kind == "M":
        return {"M": {k: _as_delivered(v) for k, v in inner.items()}}
    if kind == "L":
        return {"L": [_as_delivered(v) for v in inner]}
    return {kind: inner}


def lambda_record(
    record: Mapping[str, Any], stream_arn: str, created: datetime | None = None, region: str = "us-east-1"
) -> dict[str, Any]:
    """A GetRecords record (boto3 shape) as Lambda puts it in the event's Records list, dated
    `created` (the local stack's simulated clock) or, by default, by the record itself."""
    stream = record["dynamodb"]
    if created is None:
        own = stream.get("ApproximateCreationDateTime")
        created = own if isinstance(own, datetime) else datetime.now(UTC)
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
        "awsRegion": str(record.get("awsRegion") or region),
        "dynamodb": dynamodb,
        "eventSourceARN": stream_arn,
    }
