"""Dispatch Lambda: the decision queue -> guardrails -> ledger -> each send onto its channel's queue."""

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from nudge import clock
from nudge.bootstrap.dispatch import wire_dispatch
from nudge.model.queue import DecisionBatch
from nudge.observability import MetricCounts, logger, metrics, tracer
from nudge.services.dispatch import correlation_of, count_outcomes, dispatch

# Rules, settings and clients at cold start: a bad rule file fails here, every problem logged.
service = wire_dispatch()
processor = BatchProcessor(event_type=EventType.SQS)
# Decisions by outcome, Suppressed by reason: summed over the invocation, one line per value.
counts = MetricCounts(metrics)


def record_handler(record: SQSRecord) -> None:
    batch = DecisionBatch.model_validate_json(record.body)
    metrics.add_metric(name="DecisionBatches", unit=MetricUnit.Count, value=1)
    # The request (or sweep run) that led to these decisions: this record's log lines carry it.
    logger.set_correlation_id(correlation_of(batch) or None)
    result = dispatch(
        batch, service.rules, service.ports, clock.now(), attempts=service.settings.dispatch_attempts
    )
    count_outcomes(result, counts)
    logger.info(
        "dispatched",
        extra={
            "user_id": batch.user,
            "verdicts": [
                {"decision_id": v.decision.decision_id, "outcome": v.outcome, "reason": v.reason}
                for v in result.verdicts
            ],
            "duplicates": result.duplicates,
            "cancelled": result.cancelled,
            "routed": result.routed,
        },
    )


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    try:
        return process_partial_response(
            event=event, record_handler=record_handler, processor=processor, context=context
        )
    finally:
        counts.flush()
        logger.set_correlation_id(None)
