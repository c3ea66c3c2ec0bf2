"""What the three action functions share: an SQS batch of deliveries -> `deliver` each, reporting
the ones to retry (throttled, or failed before the claim) as partial batch failures."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit, single_metric
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from nudge import clock
from nudge.dispatch.deliver import deliver
from nudge.dispatch.messages import Delivery
from nudge.dispatch.wiring import wire_deliver
from nudge.observability import logger, metrics


class DeliveryHandler:
    def __init__(self, channel: str) -> None:
        self.service = wire_deliver(channel)
        self.processor = BatchProcessor(event_type=EventType.SQS)

    def record(self, record: SQSRecord) -> None:
        delivery = Delivery.model_validate_json(record.body)
        done = deliver(delivery, self.service.rules, self.service.ports, clock.now())
        metrics.add_metric(name=f"Deliveries_{done.result}", unit=MetricUnit.Count, value=1)
        if done.result == "unknown":
            # Alarmed (one alarm for every channel, so no service dimension): a send that may or
            # may not have happened is never retried.
            with single_metric(
                name="SendOutcomeUnknown", unit=MetricUnit.Count, value=1, namespace=metrics.namespace
            ):
                pass
        logger.info(
            "delivery",
            extra={
                "decision_id": delivery.decision_id,
                "rule": delivery.rule,
                "channel": delivery.channel,
                "result": done.result,
                "reason": done.reason,
            },
        )

    def handle(self, event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
        return process_partial_response(
            event=event, record_handler=self.record, processor=self.processor, context=context
        )
