"""The decision queue -> `dispatch` each batch (guardrails, ledger, channel queues).

Metrics: `DecisionBatches`; `Decisions` by `outcome` and `Suppressed` by `reason`, summed over the
invocation. Each batch's log lines carry the correlation id of the request (or sweep run) behind it.
A module of its own so the dispatch function imports only dispatch's adapters.
"""

from __future__ import annotations

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from nudge import clock
from nudge.bootstrap.dispatch import wire_dispatch
from nudge.entrypoints.sqs_batch import SqsBatchHandler
from nudge.model.queue import DecisionBatch
from nudge.observability import logger, metrics
from nudge.services.dispatch import correlation_of, count_outcomes, dispatch


class DecisionHandler(SqsBatchHandler):
    """Built at cold start (rules, settings, clients): a bad rule file fails there, every problem logged."""

    def __init__(self) -> None:
        self.service = wire_dispatch()
        super().__init__()  # Decisions by outcome, Suppressed by reason

    def record(self, record: SQSRecord) -> None:
        batch = DecisionBatch.model_validate_json(record.body)
        metrics.add_metric(name="DecisionBatches", unit=MetricUnit.Count, value=1)
        # The request (or sweep run) that led to these decisions: this record's log lines carry it.
        logger.set_correlation_id(correlation_of(batch) or None)
        service = self.service
        result = dispatch(
            batch, service.rules, service.ports, clock.now(), attempts=service.settings.dispatch_attempts
        )
        count_outcomes(result, self.counts)
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
