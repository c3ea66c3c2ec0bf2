"""The ingest queue -> `drain`: the messages the buffered front door accepted, folded many requests
at a time (one versioned write per user per batch).

A batch is folded whole: when the store is contended or unavailable, every record is reported
failed and the queue redelivers them (their pinned dedupe keys make the second fold add nothing
the first wrote). A body that cannot be read is reported failed alone, and after the queue's
retries it waits in the DLQ. Messages the stored state refuses (a cycle of aliases, no room left)
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
from nudge.model.errors import StoreUnavailable
from nudge.model.messages import Message, build_models
from nudge.observability import logger, metrics
from nudge.services.buffer import BadQueueBody, drain, unpack
from nudge.services.ingest import Contention


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
        if bodies:
            try:
                drained = drain(
                    bodies,
                    self.services.plan,
                    self.services.store,
                    clock.now(),
                    self.services.limits,
                    correlation_id=getattr(context, "aws_request_id", "") or "",
                )
            except (Contention, StoreUnavailable) as exc:
                logger.warning(
                    "ingest queue batch not folded; retried", extra={"why": str(exc), "records": len(ids)}
                )
                return {"batchItemFailures": [{"itemIdentifier": i} for i in [*failed, *ids]]}
            result = drained.result
            metrics.add_metric(name="BufferedEvents", unit=MetricUnit.Count, value=result.accepted)
            if result.errors:
                metrics.add_metric(name="BufferedRefused", unit=MetricUnit.Count, value=len(result.errors))
                logger.warning(
                    "buffered messages refused after their 200",
                    extra={"refused": [{"index": p.index, "field": p.field} for p in result.errors]},
                )
            oldest = min((r.attributes.sent_timestamp for r in records if r.message_id in ids), default=None)
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
                    "requests": requests,
                },
            )
        return {"batchItemFailures": [{"itemIdentifier": i} for i in failed]}


def _request_of(body: str) -> str:
    """The front door's request id of a body (its correlation id), for the log: cheap, no parse."""
    start = body.find('"request":"')
    if start < 0:
        return ""
    start += len('"request":"')
    return body[start : body.find('"', start)]
