"""Dispatch Lambda: the decision queue -> guardrails -> ledger -> each send onto its channel's queue."""

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from nudge import clock
from nudge.dispatch.messages import DecisionBatch
from nudge.dispatch.service import dispatch
from nudge.dispatch.wiring import wire_dispatch
from nudge.observability import logger, metrics, tracer

# Rules, settings and clients at cold start: a bad rule file fails here, every problem logged.
service = wire_dispatch()
processor = BatchProcessor(event_type=EventType.SQS)


def record_handler(record: SQSRecord) -> None:
    batch = DecisionBatch.model_validate_json(record.body)
    result = dispatch(
        batch, service.rules, service.ports, clock.now(), attempts=service.settings.dispatch_attempts
    )
    for outcome, count in sorted(result.outcomes().items()):
        if ":" not in outcome and count:
            metrics.add_metric(name=f"Decisions_{outcome}", unit=MetricUnit.Count, value=count)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    return process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
