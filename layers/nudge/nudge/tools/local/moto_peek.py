"""What the pumps read from moto's backends directly, when moto runs in this process.

Lambda's pollers (the pumps: ``nudge.tools.local.streams``, ``nudge.tools.local.queues``) ask
the stream and the queues for work several times a second. Through boto3 each ask is a call that
moto serializes and botocore signs and parses, and a stream's records are the largest answers
the stack makes (every user write, both images, most of them then filtered out): in a profile of
the demo's replay, reading the stream that way was a fifth of the stack process's CPU and empty
queue polls another tenth. When the moto serving the client's endpoint runs in this process
(``nudge.tools.local.moto_direct``), the pumps read its backends instead, under its request lock:

* ``DirectStream`` reads a table's stream records as moto keeps them, which is the shape
  GetRecords gives boto3 (binary as bytes) but for the creation time, made aware (UTC);
* ``queue_is_empty`` tells a queue with no visible message, which a ReceiveMessage would only
  have confirmed (moto applies a redrive policy to messages it receives, so none is skipped).

Anything not served in this process (another endpoint, a table or queue moto does not know),
or a moto whose internals these reads do not find (a release that renamed them), gives None, and
the pump goes through boto3 as before.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from moto.core.models import DEFAULT_ACCOUNT_ID
from moto.dynamodb.models import dynamodb_backends
from moto.sqs.models import sqs_backends

from nudge.tools.local.aws import REGION
from nudge.tools.local.moto_direct import served_lock


class DirectStream:
    """One table's stream, read from moto's shard in this process (the table keeps one shard)."""

    def __init__(self, stream_arn: str, lock: Any) -> None:
        self.stream_arn = stream_arn
        self._lock = lock
        # arn:aws:dynamodb:<region>:<account>:table/<name>/stream/<label>
        resource = stream_arn.split(":", 5)[5]
        self._table_name = resource.split("/")[1]
        self._label = resource.split("/stream/", 1)[1] if "/stream/" in resource else None

    @classmethod
    def find(cls, endpoint_url: str | None, stream_arn: str) -> DirectStream | None:
        lock = served_lock(endpoint_url or "")
        if lock is None:
            return None
        direct = cls(stream_arn, lock)
        try:
            shard = direct._shard()
            _ = shard.items, shard.starting_sequence_number, shard.id
        except AttributeError:
            return None  # not the moto this was written against: boto3 reads it
        return direct

    def _shard(self) -> Any:
        table = dynamodb_backends[DEFAULT_ACCOUNT_ID][REGION].tables.get(self._table_name)
        if table is None or table.stream_shard is None or table.latest_stream_label != self._label:
            return None
        return table.stream_shard

    def shards(self) -> list[str]:
        shard = self._shard()
        return [] if shard is None else [str(shard.id)]

    def first(self, shard_id: str, position: str) -> int:
        """The sequence number a new iterator at `position` (TRIM_HORIZON or LATEST) reads next."""
        with self._lock:
            shard = self._shard()
            start = int(shard.starting_sequence_number)
            return start + len(shard.items) if position == "LATEST" else start

    def read(self, shard_id: str, first: int) -> list[dict[str, Any]]:
        """Every record from sequence number `first` on, in the shape boto3's GetRecords gives."""
        with self._lock:
            shard = self._shard()
            if shard is None or shard.id != shard_id:
                return []
            kept = shard.items[first - int(shard.starting_sequence_number) :]
            return [_as_boto3(item.record) for item in kept]


def _as_boto3(record: Mapping[str, Any]) -> dict[str, Any]:
    # moto keeps the record as GetRecords answers it (binary already bytes); boto3 parses the
    # creation time into an aware datetime. The images are shared, never written: the pump builds
    # the Lambda event from them (nudge.adapters.dynamo.stream_range.lambda_record makes new values).
    stream = dict(record["dynamodb"])
    created = stream.get("ApproximateCreationDateTime")
    if isinstance(created, datetime) and created.tzinfo is None:
        stream["ApproximateCreationDateTime"] = created.replace(tzinfo=UTC)
    return {**record, "dynamodb": stream}


def queue_is_empty(endpoint_url: str | None, queue_url: str) -> bool | None:
    """True when the queue at `queue_url` holds no visible message; None when not known here."""
    if served_lock(endpoint_url or "") is None:
        return None
    name = urlsplit(queue_url).path.rstrip("/").rsplit("/", 1)[-1]
    queue = sqs_backends[DEFAULT_ACCOUNT_ID][REGION].queues.get(name)
    if queue is None:
        return None
    # No lock: a message sent while this looks is one sent just after it; the next poll takes it.
    try:
        return not any(message.visible and not message.delayed for message in list(queue._messages))
    except AttributeError:
        return None  # not the moto this was written against: boto3 asks
