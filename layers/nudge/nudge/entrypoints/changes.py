"""The usage table's stream (USER#/SEGMENTS writes only) -> segment entries and exits, band changes,
journey conversions -> the EventBridge bus. Metric: `ChangesPublished` by `type` (detail-type)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from nudge.adapters.dynamo.stream import segments_from_stream
from nudge.bootstrap.changes import wire_changes
from nudge.observability import MetricCounts, logger, metrics
from nudge.services.changes import announce


class ChangesStreamHandler:
    def __init__(self) -> None:
        self.publisher = wire_changes()
        self.processor = BatchProcessor(event_type=EventType.DynamoDBStreams)
        self.counts = MetricCounts(metrics)

    def handle(self, event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
        try:
            return process_partial_response(
                event=event, record_handler=self._record, processor=self.processor, context=context
            )
        finally:
            self.counts.flush()

    def _record(self, record: DynamoDBRecord) -> None:
        stream = record.dynamodb
        if stream is None:
            return
        # FilterCriteria passes only segment records; this guards the local pump and any other source.
        new = segments_from_stream(stream.keys, stream.new_image)
        if new is None:
            return
        old = segments_from_stream(stream.keys, stream.old_image)
        user_id = str(stream.keys["pk"]).removeprefix("USER#")
        for change in announce(user_id, old, new, self.publisher):
            self.counts.add("ChangesPublished", "type", change.detail_type)
            logger.info("change published", extra={"type": change.detail_type, "change_id": change.change_id})
