"""The template's queues, for the local stack: ``QueuePump`` (Lambda's SQS event source mapping)
and ``QueueTap`` (a reader for a queue no local function consumes).

* ``QueuePump`` delivers a queue to the function of a ``Type: SQS`` event
  (``nudge.tools.local.sources.QueueSource``): the decision queue to dispatch, the channel
  queues to the email, notify and escalate functions.
* ``QueueTap`` drains a queue no local function consumes (the customer-success queue: nobody
  reads it locally) and keeps what it read, so the local API can show it.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from nudge.tools.local.aws import REGION, HandlerFailed
from nudge.tools.local.functions import Invoker
from nudge.tools.local.moto_peek import queue_is_empty
from nudge.tools.local.simulated_clock import Now
from nudge.tools.local.sources import SQS_RECEIVE_LIMIT, QueueSource
from nudge.tools.local.streams import PumpStats

if TYPE_CHECKING:
    from mypy_boto3_sqs.client import SQSClient

# A queue pump stops after this many rounds in a row in which every message failed; the messages
# stay on the queue for the next pump (a queue with a DLQ moves them there long before).
MAX_STALLED_ROUNDS = 25


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
        # Most polls find the queue empty: moto in this process says so without a call (moto_peek).
        if queue_is_empty(self._sqs.meta.endpoint_url, self.queue_url):
            return messages
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


@dataclass(frozen=True)
class TappedMessage:
    queued_at: datetime  # simulated time the tap read it
    message_id: str
    body: Any  # parsed JSON, or the text when it is not JSON
    attributes: dict[str, str] = field(default_factory=dict)


class QueueTap:
    """Reads, keeps and deletes every message of a queue that no local function consumes yet."""

    def __init__(self, sqs: SQSClient, queue_url: str, now: Now) -> None:
        self.queue_url = queue_url
        self._sqs = sqs
        self._now = now
        self._lock = threading.Lock()
        self._messages: list[TappedMessage] = []

    def drain(self) -> int:
        taken = 0
        with self._lock:
            while not queue_is_empty(self._sqs.meta.endpoint_url, self.queue_url):
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
            return taken

    def messages(self) -> Sequence[TappedMessage]:
        with self._lock:
            return list(self._messages)


def _parse(body: str) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return body
