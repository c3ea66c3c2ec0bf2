"""What every SQS-fed handler shares: each record of a batch to `record`, the ones that raised
reported as partial batch failures (retried by the queue), counted metrics flushed once per
invocation, and no correlation id left for the next one."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from nudge.observability import MetricCounts, logger, metrics


class SqsBatchHandler:
    def __init__(self) -> None:
        self.processor = BatchProcessor(event_type=EventType.SQS)
        # Counts by dimension value, summed over the invocation: one metric line per value.
        self.counts = MetricCounts(metrics)

    def record(self, record: SQSRecord) -> None:
        raise NotImplementedError

    def handle(self, event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
        try:
            return process_partial_response(
                event=event, record_handler=self.record, processor=self.processor, context=context
            )
        finally:
            self.counts.flush()
            logger.set_correlation_id(None)
