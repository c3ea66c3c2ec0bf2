"""SQS: the decision queue (one message per evaluation), the channel queues dispatch routes to, and
the ingest queue the buffered front door fills (nudge.services.buffer)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

from nudge.backoff import THROTTLING
from nudge.model.errors import StoreUnavailable
from nudge.model.limits import INGEST_QUEUE_BATCH_ENTRIES, INGEST_QUEUE_BODY_BYTES
from nudge.model.queue import DecisionBatch, Delivery
from nudge.ports import PublishFailed, RouteFailed

if TYPE_CHECKING:
    from mypy_boto3_sqs.client import SQSClient
    from mypy_boto3_sqs.type_defs import SendMessageBatchRequestEntryTypeDef

if TYPE_CHECKING:
    from mypy_boto3_sqs.client import SQSClient
    from mypy_boto3_sqs.type_defs import MessageAttributeValueTypeDef


# SQS errors worth another try: the queue is busy, not wrong.
RETRYABLE_SQS = {"ThrottlingException", "RequestThrottled", "ServiceUnavailable", "InternalError"}


class SqsDecisionPublisher:
    """SendMessage to the decision queue: one message per evaluation (the guardrails send at most
    one message of the decisions taken together), its user and decision ids as attributes (so an
    operator can find one without parsing bodies)."""

    def __init__(self, client: SQSClient, queue_url: str, attempts: int = 3) -> None:
        self.client = client
        self.queue_url = queue_url
        self.backoff = THROTTLING.with_attempts(attempts)

    def publish(self, batch: DecisionBatch) -> None:
        ids = [d.decision_id for d in batch.decisions] + batch.lapsed
        attributes: dict[str, MessageAttributeValueTypeDef] = {
            "user": {"DataType": "String", "StringValue": batch.user},
            "decision_ids": {"DataType": "String", "StringValue": ",".join(ids) or "-"},
        }
        for _ in self.backoff.tries():
            try:
                self.client.send_message(
                    QueueUrl=self.queue_url, MessageBody=batch.model_dump_json(), MessageAttributes=attributes
                )
                return
            except ClientError as exc:
                code = exc.response.get("Error", {}).get("Code", "")
                if code not in RETRYABLE_SQS:
                    raise PublishFailed(f"SQS SendMessage failed: {code or exc}") from exc
            except BotoCoreError as exc:
                raise PublishFailed(f"SQS SendMessage failed: {exc}") from exc
        raise PublishFailed(f"decision batch still throttled after {self.backoff.attempts} attempts")


SQS_BATCH_LIMIT = 10


class SqsDeliveryRouter:
    """Each send to its channel's queue (email; push and SMS; escalations), ten per request."""

    def __init__(self, client: SQSClient, queues: dict[str, str], attempts: int = 3) -> None:
        self.client = client
        self.queues = queues
        self.backoff = THROTTLING.with_attempts(attempts)

    def route(self, deliveries: Sequence[Delivery]) -> None:
        by_queue: dict[str, list[Delivery]] = {}
        for delivery in deliveries:
            url = self.queues.get(delivery.channel)
            if not url:
                raise RouteFailed(f"no queue configured for channel {delivery.channel!r}")
            by_queue.setdefault(url, []).append(delivery)
        for url, items in by_queue.items():
            for start in range(0, len(items), SQS_BATCH_LIMIT):
                entries: list[SendMessageBatchRequestEntryTypeDef] = [
                    {"Id": str(i), "MessageBody": d.model_dump_json()}
                    for i, d in enumerate(items[start : start + SQS_BATCH_LIMIT])
                ]
                self._send(url, entries)

    def _send(self, url: str, entries: list[SendMessageBatchRequestEntryTypeDef]) -> None:
        for _ in self.backoff.tries():
            try:
                response = self.client.send_message_batch(QueueUrl=url, Entries=entries)
            except (ClientError, BotoCoreError) as exc:
                raise RouteFailed(f"SQS SendMessageBatch failed: {exc}") from exc
            failed = response.get("Failed", [])
            if not failed:
                return
            if any(f.get("SenderFault") for f in failed):
                raise RouteFailed(f"SQS refused {len(failed)} deliveries")
            retry = {f["Id"] for f in failed}
            entries = [e for e in entries if e["Id"] in retry]
        raise RouteFailed(f"{len(entries)} deliveries still failing after {self.backoff.attempts} attempts")


class SqsIngestBuffer:
    """The ingest queue: bodies sent ten (and 256 KB) per SendMessageBatch, the entries SQS could
    not take retried; anything else is StoreUnavailable (the front door answers 503)."""

    def __init__(self, client: SQSClient, queue_url: str, attempts: int = 3) -> None:
        self.client = client
        self.queue_url = queue_url
        self.backoff = THROTTLING.with_attempts(attempts)

    def put(self, bodies: Sequence[str]) -> None:
        entries: list[SendMessageBatchRequestEntryTypeDef] = []
        size = 0
        for i, body in enumerate(bodies):
            length = len(body.encode())
            if entries and (
                len(entries) == INGEST_QUEUE_BATCH_ENTRIES or size + length > INGEST_QUEUE_BODY_BYTES
            ):
                self._send(entries)
                entries, size = [], 0
            entries.append({"Id": str(i), "MessageBody": body})
            size += length
        if entries:
            self._send(entries)

    def _send(self, entries: list[SendMessageBatchRequestEntryTypeDef]) -> None:
        for _ in self.backoff.tries():
            try:
                response = self.client.send_message_batch(QueueUrl=self.queue_url, Entries=entries)
            except ClientError as exc:
                code = exc.response.get("Error", {}).get("Code", "")
                if code in RETRYABLE_SQS:
                    continue
                raise StoreUnavailable(f"ingest queue refused the messages: {code or exc}") from exc
            except BotoCoreError as exc:
                raise StoreUnavailable(f"ingest queue unreachable: {type(exc).__name__}") from exc
            failed = response.get("Failed", [])
            if not failed:
                return
            if any(f.get("SenderFault") for f in failed):
                raise StoreUnavailable(f"ingest queue refused {len(failed)} message(s)")
            retry = {f["Id"] for f in failed}
            entries = [e for e in entries if e["Id"] in retry]
        raise StoreUnavailable(f"ingest queue still busy after {self.backoff.attempts} attempts")


@dataclass(frozen=True)
class Received:
    """A message taken from a queue: hidden for the visibility timeout, gone once deleted."""

    body: str
    receipt: str
    message_id: str


# ChangeMessageVisibility's answers for a receipt that is no longer the message's latest.
STALE_RECEIPT = {"ReceiptHandleIsInvalid", "InvalidParameterValue", "MessageNotInflight"}


class SqsQueueReader:
    """Receive and delete on one queue, for the commands that work a failure queue by hand."""

    def __init__(self, client: SQSClient, queue_url: str, visibility_seconds: int = 300) -> None:
        self.client = client
        self.queue_url = queue_url
        self.visibility_seconds = visibility_seconds

    def receive(self, limit: int = 10) -> list[Received]:
        """Up to `limit` (at most 10) messages, waiting a second for one; none when it stays empty."""
        response = self.client.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=max(1, min(limit, 10)),
            VisibilityTimeout=self.visibility_seconds,
            WaitTimeSeconds=1,
        )
        return [
            Received(m.get("Body", ""), m.get("ReceiptHandle", ""), m.get("MessageId", ""))
            for m in response.get("Messages", [])
            if m.get("ReceiptHandle")
        ]

    def delete(self, message: Received) -> None:
        self.client.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message.receipt)

    def release(self, message: Received) -> None:
        """Visible again at once: left on the queue for a later try. A receipt that has gone stale
        (the message was handed out again) changes nothing: it is visible again already."""
        try:
            self.client.change_message_visibility(
                QueueUrl=self.queue_url, ReceiptHandle=message.receipt, VisibilityTimeout=0
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code", "") not in STALE_RECEIPT:
                raise
