"""The ingest queue -> `drain`: the messages the buffered front door accepted, folded many requests
at a time (one versioned write per user per batch).

A batch is folded whole; when a user's write fails (contended past every retry, or the store
refuses it), `drain` folds the batch again body by body and only the records whose fold failed are
reported (partial batch response, `ReportBatchItemFailures`): the queue redelivers the failing
user's records alone, and their pinned dedupe keys make the second fold add nothing the first
wrote. A body that cannot be read is reported failed alone, and after the queue's retries it waits
in the DLQ. Powertools' BatchProcessor is not used: it hands records one at a time, and the point
of this consumer is one write per user per batch.
Correlation: each user's write carries the front door's request id of their newest message (the
evaluator logs it with its decisions); the log lines carry it when the batch holds one request.
Messages the stored state refuses (a cycle of aliases, no room left)
were answered 200 already: they are logged by index and field and counted (`BufferedRefused`).
Metrics: `BufferedEvents` (folded), `BufferedRefused`, `BufferedWait` (ms from the oldest record's
sending to its fold: the latency the buffer adds).
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSEvent
from aws_lambda_powertools.utilities.typing import LambdaContext

from nudge import clock
from nudge.bootstrap.ingest_queue import IngestQueueServices, ingest_queue_services
from nudge.model.messages import Message, build_models
from nudge.observability import logger, metrics
from nudge.services.buffer import BadQueueBody, drain, unpack


class IngestQueueHandler:
    """Built at cold start (settings, the tracking plan, the client): a bad rule file fails there."""

    def __init__(self) -> None:
        self.services: IngestQueueServices = ingest_queue_services()
        build_models()  # every batch validates them

    def handle(self, event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
        records = list(SQSEvent(event).records)
        failed: list[str] = []
        bodies: list[list[Message]] = []
        ids: list[str] = []
        requests: list[str] = []
        for record in records:
            try:
                bodies.append(unpack(record.body))
            except BadQueueBody as exc:
                logger.error(
                    "unreadable ingest queue body", extra={"message_id": record.message_id, "why": str(exc)}
                )
                failed.append(record.message_id)
                continue
            ids.append(record.message_id)
            requests.append(_request_of(record.body))
        if not bodies:
            return {"batchItemFailures": [{"itemIdentifier": i} for i in failed]}
        # The front door's request id is the correlation id of what it sent: one request's batch logs
        # under it; a batch of many names them all (and each user's write keeps its own).
        distinct = set(requests)
        logger.set_correlation_id(requests[0] if len(distinct) == 1 and requests[0] else None)
        remaining = getattr(context, "get_remaining_time_in_millis", None)
        try:
            drained = drain(
                bodies,
                self.services.plan,
                self.services.store,
                clock.now(),
                self.services.limits,
                requests=requests,
                time_left=(lambda: remaining() / 1000) if callable(remaining) else None,
            )
            retried = [ids[p] for p in drained.failed]
            result = drained.result
            metrics.add_metric(name="BufferedEvents", unit=MetricUnit.Count, value=result.accepted)
            if result.errors:
                request_of = [request for body, request in zip(bodies, requests, strict=True) for _ in body]
                metrics.add_metric(name="BufferedRefused", unit=MetricUnit.Count, value=len(result.errors))
                logger.warning(
                    "buffered messages refused after their 200",
                    extra={
                        "refused": [
                            {"index": p.index, "field": p.field, "request": request_of[p.index]}
                            for p in result.errors
                        ]
                    },
                )
            if retried:
                logger.warning(
                    "ingest queue records not folded; retried",
                    extra={
                        "records": len(retried),
                        "requests": [requests[p] for p in drained.failed],
                    },
                )
            folded = [r for r in records if r.message_id in ids and r.message_id not in retried]
            oldest = min((r.attributes.sent_timestamp for r in folded), default=None)
            if oldest:
                waited = clock.now().timestamp() * 1000 - int(oldest)
                metrics.add_metric(name="BufferedWait", unit=MetricUnit.Milliseconds, value=max(waited, 0.0))
            logger.info(
                "folded",
                extra={
                    "accepted": result.accepted,
                    "refused": len(result.errors),
                    "users_written": result.users_written,
                    "accounts_written": result.accounts_written,
                    "conflicts": result.conflicts,
                    "requests": sorted(distinct),
                    "retried": len(retried),
                },
            )
            return {"batchItemFailures": [{"itemIdentifier": i} for i in [*failed, *retried]]}
        finally:
            logger.set_correlation_id(None)


def _request_of(body: str) -> str:
    """The front door's request id of a body (its correlation id), for the log: cheap, no parse."""
    start = body.find('"request":"')
    if start < 0:
        return ""
    start += len('"request":"')
    return body[start : body.find('"', start)]
