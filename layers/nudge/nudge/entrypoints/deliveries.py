"""What the three action functions share: an SQS batch of deliveries -> `deliver` each, reporting
the ones to retry (throttled, or failed before the claim) as partial batch failures.

Metrics, summed per invocation: `Deliveries` handled (by function), `Sends` and `SendFailures` by
`channel` (email, push, sms, cs; failures are refusals and outcomes unknown), `Suppressed` by
`reason` (found at send time: opted_out, no_address, user_erased), and `SendOutcomeUnknown` with no
dimension (one alarm for every channel).
Each delivery's log line carries the correlation id of the request behind its decision.
"""

from __future__ import annotations

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from nudge import clock
from nudge.bootstrap.deliver import wire_deliver
from nudge.entrypoints.sqs_batch import SqsBatchHandler
from nudge.model.queue import Delivery
from nudge.observability import logger, metrics
from nudge.services.deliver import deliver


class DeliveryHandler(SqsBatchHandler):
    def __init__(self, channel: str) -> None:
        self.service = wire_deliver(channel)
        super().__init__()

    def record(self, record: SQSRecord) -> None:
        delivery = Delivery.model_validate_json(record.body)
        metrics.add_metric(name="Deliveries", unit=MetricUnit.Count, value=1)
        # `deliver` sets the correlation id of the decision's request once it reads the entry.
        logger.set_correlation_id(None)
        done = deliver(delivery, self.service.rules, self.service.ports, clock.now())
        if done.result == "sent":
            self.counts.add("Sends", "channel", delivery.channel)
        elif done.result in ("failed", "unknown"):
            self.counts.add("SendFailures", "channel", delivery.channel)
        elif done.result == "suppressed":
            self.counts.add("Suppressed", "reason", done.reason or "unspecified")
        if done.result == "unknown" or (done.result == "duplicate" and done.reason == "sending"):
            # Alarmed (one alarm for every channel, so no dimension): a send that may or may not
            # have happened is never retried. A redelivery that finds its entry still `sending`
            # means the function that claimed it died between the claim and marking it sent (the
            # queue's visibility timeout is 6x the function's): the same unknown.
            self.counts.add("SendOutcomeUnknown")
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
