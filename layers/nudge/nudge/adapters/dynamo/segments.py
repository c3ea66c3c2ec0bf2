"""What the evaluator keeps per user between evaluations, and when each user is next due.

Items (same table as the usage state, so one table holds a user's whole story):

    USER#<id> / SEGMENTS   v (version), seg (zlib JSON of SegmentRecord), segment (plain, for the
                           console), updated_at, expires_at (TTL: the state TTL after this write),
                           and, only while a re-check is scheduled:
                           due_bucket = "<UTC day of the check>#<shard>", due_at (epoch seconds)
    SWEEP / WATERMARK      v, through: the sweep has handled every check due before this day

`due_bucket`/`due_at` are the keys of the sparse GSI `due` (KEYS_ONLY): an item without them is
not in the index, so the sweep reads only users with a check scheduled, bucket by bucket, and
never the table. Within a bucket the sort key does the rest (`due_at <= now`): a sweep reads the
checks due, not the day's later ones, so a bucket can be a whole day, which keeps the number of
queries small after a long pause (a stopped sweep, the local stack's clock jumping a month).
The shard (a hash of the user id) spreads one day's checks over many index partitions: a week
closing at Monday 00:00 UTC makes most users due at the same instant.

Writes are versioned (`v`), like the usage state: the stream evaluator and the sweep may evaluate
the same user at once, and the loser re-reads and re-evaluates instead of overwriting.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from nudge.adapters.dynamo import calls, codec
from nudge.adapters.dynamo.usage import EXPIRES, shard_of
from nudge.model.limits import STATE_TTL_DAYS
from nudge.model.segments import BUCKET, DuePage, SegmentRecord, bucket, bucket_start, due_time
from nudge.model.versioned import Versioned

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient

SEGMENTS_SORT = "SEGMENTS"
DUE_INDEX = "due"
WATERMARK_KEY: dict[str, Any] = {"pk": {"S": "SWEEP"}, "sk": {"S": "WATERMARK"}}


def segments_key(user_id: str) -> dict[str, Any]:
    return {"pk": {"S": f"USER#{user_id}"}, "sk": {"S": SEGMENTS_SORT}}


class DynamoSegmentStore:
    def __init__(
        self,
        client: DynamoDBClient,
        table: str,
        *,
        index: str = DUE_INDEX,
        due_shards: int = 16,
        state_ttl: timedelta = timedelta(days=STATE_TTL_DAYS),
    ) -> None:
        self.client = client
        self.table = table
        self.index = index
        self.shards = due_shards
        self.state_ttl = state_ttl

    def load(self, user_ids: Sequence[str]) -> dict[str, Versioned[SegmentRecord]]:
        found: dict[str, Versioned[SegmentRecord]] = {}
        ids = list(dict.fromkeys(user_ids))
        for item in calls.batch_get(self.client, self.table, [segments_key(uid) for uid in ids]):
            found[item["pk"]["S"].removeprefix("USER#")] = Versioned(record_of(item), int(item["v"]["N"]))
        return {uid: found.get(uid) or Versioned(SegmentRecord(), 0) for uid in ids}

    def save(self, user_id: str, record: SegmentRecord, version: int, now: datetime) -> None:
        item: dict[str, Any] = {
            **segments_key(user_id),
            "v": {"N": str(version + 1)},
            "updated_at": {"S": now.isoformat()},
            "seg": {"B": codec.encode(record)},
            # Written on the user's changes and their re-checks, which stop once nothing can change
            # with time alone: it expires soon after the state it was evaluated from.
            EXPIRES: {"N": str(int((now + self.state_ttl).timestamp()))},
        }
        if record.segments.segment:
            item["segment"] = {"S": record.segments.segment}
        check = due_time(record.next_check_at)
        if check is not None:
            item["due_bucket"] = {"S": bucket(check, shard_of(user_id, self.shards))}
            item["due_at"] = {"N": str(int(check.timestamp()))}
        calls.write(self.client.put_item, **calls.versioned_put(self.table, item, version))

    def defer(self, user_id: str, at: datetime) -> None:
        check = due_time(at)
        assert check is not None
        calls.write(
            self.client.update_item,
            TableName=self.table,
            Key=segments_key(user_id),
            UpdateExpression="SET due_bucket = :b, due_at = :a",
            # Only an item the sweep found: never create a record without its version.
            ConditionExpression="attribute_exists(pk)",
            ExpressionAttributeValues={
                ":b": {"S": bucket(check, shard_of(user_id, self.shards))},
                ":a": {"N": str(int(check.timestamp()))},
            },
        )

    def due(self, since: datetime, now: datetime, page_size: int = 100) -> Iterator[DuePage]:
        day, last = bucket_start(since), bucket_start(now)
        while day <= last:
            # Pages gather users across the day's shards, so the sweep's batch reads of states
            # and records stay full (a few users due per shard would otherwise cost two
            # BatchGetItems each).
            pending: list[str] = []
            for user_id in self._due_in(day, now, page_size):
                pending.append(user_id)
                if len(pending) == page_size:
                    yield DuePage(day, pending)
                    pending = []
            if pending:
                yield DuePage(day, pending)
            day += BUCKET

    def _due_in(self, day: datetime, now: datetime, page_size: int) -> Iterator[str]:
        for shard in range(self.shards):
            kwargs: dict[str, Any] = {
                "TableName": self.table,
                "IndexName": self.index,
                "KeyConditionExpression": "due_bucket = :b AND due_at <= :now",
                "ExpressionAttributeValues": {
                    ":b": {"S": bucket(day, shard)},
                    ":now": {"N": str(int(now.timestamp()))},
                },
                "Limit": page_size,
            }
            while True:
                response = calls.read(self.client.query, **kwargs)
                for item in response.get("Items", []):
                    yield item["pk"]["S"].removeprefix("USER#")
                if "LastEvaluatedKey" not in response:
                    break
                kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]

    def load_watermark(self) -> Versioned[datetime] | None:
        response = calls.read(
            self.client.get_item, TableName=self.table, Key=WATERMARK_KEY, ConsistentRead=True
        )
        item = response.get("Item")
        if item is None:
            return None
        through = datetime.fromtimestamp(int(item["through"]["N"]), tz=UTC)
        return Versioned(through, int(item["v"]["N"]))

    def save_watermark(self, through: datetime, version: int, now: datetime) -> None:
        item: dict[str, Any] = {
            **WATERMARK_KEY,
            "v": {"N": str(version + 1)},
            "through": {"N": str(int(through.timestamp()))},
            "through_iso": {"S": through.isoformat()},
            "updated_at": {"S": now.isoformat()},
        }
        calls.write(self.client.put_item, **calls.versioned_put(self.table, item, version))

    def erase(self, user_id: str) -> int:
        response = calls.read(
            self.client.delete_item, TableName=self.table, Key=segments_key(user_id), ReturnValues="ALL_OLD"
        )
        return 1 if response.get("Attributes") else 0


def record_of(item: dict[str, Any]) -> SegmentRecord:
    record = codec.decode(item["seg"]["B"], SegmentRecord) if "seg" in item else SegmentRecord()
    if "due_at" in item:
        record.next_check_at = datetime.fromtimestamp(int(item["due_at"]["N"]), tz=UTC)
    return record
