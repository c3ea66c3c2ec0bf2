"""The feedback queue (SES configuration-set events, as EventBridge delivers them) -> `handle_feedback`.

A body that is no SES event, or an event for a message this stack cannot find, is counted and
dropped (`FeedbackUnreadable`, `FeedbackUnmatched`), never retried: retrying could not make it
readable, and a poison message must not cycle to the DLQ for nothing. What does raise (the tables or
the secret unavailable) is a partial batch failure, retried by the queue, then its DLQ.

Metrics, summed per invocation: `Delivered`, `Bounced` (permanent), `SoftBounced`, `Complained`,
`Opened`, `Clicked` by `rule` (the message's tag; `untagged` when it has none); `EmailSent`,
`EmailBounced`, `EmailComplained` with no dimension, which the bounce-rate and complaint-rate alarms
divide; `AddressesSuppressed` by `reason`. No log line holds an address.
"""

from __future__ import annotations

import json

from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from nudge import clock
from nudge.bootstrap.feedback import wire_feedback
from nudge.domain.feedback import NotFeedback, parse
from nudge.entrypoints.sqs_batch import SqsBatchHandler
from nudge.observability import logger
from nudge.services.feedback import FeedbackResult, handle_feedback

PER_RULE = {
    "delivered": "Delivered",
    "bounced": "Bounced",
    "soft_bounced": "SoftBounced",
    "complained": "Complained",
    "opened": "Opened",
    "clicked": "Clicked",
}
# What the rate alarms divide (no dimension: one series for the whole stack, as SES counts).
TOTALS = {"sent": "EmailSent", "bounced": "EmailBounced", "complained": "EmailComplained"}


class FeedbackHandler(SqsBatchHandler):
    def __init__(self) -> None:
        self.ports = wire_feedback()
        super().__init__()

    def record(self, record: SQSRecord) -> None:
        try:
            body = json.loads(record.body)
            if not isinstance(body, dict):
                raise NotFeedback("the body is not a JSON object")
            feedback = parse(body)
        except (ValueError, NotFeedback) as exc:
            self.counts.add("FeedbackUnreadable")
            logger.warning("feedback: not an SES event; dropped", extra={"problem": str(exc)[:200]})
            return
        self.count(handle_feedback(feedback, self.ports, clock.now()))

    def count(self, result: FeedbackResult) -> None:
        kind = result.feedback.kind
        if kind in PER_RULE:
            self.counts.add(PER_RULE[kind], "rule", result.rule or "untagged")
        if kind in TOTALS:
            self.counts.add(TOTALS[kind])
        for reason in result.suppressed:
            self.counts.add("AddressesSuppressed", "reason", reason)
        if not result.matched:
            self.counts.add("FeedbackUnmatched")
        logger.info(
            "feedback",
            extra={
                "kind": kind,
                "message_id": result.feedback.message_id,
                "rule": result.rule,
                "matched": result.matched,
                "suppressed": list(result.suppressed),
            },
        )
