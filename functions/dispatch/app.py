"""Dispatch Lambda: the decision queue -> guardrails -> ledger -> each send onto its channel's queue."""

from typing import Any

from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.typing import LambdaContext

from nudge.entrypoints.decisions import DecisionHandler
from nudge.observability import logger, metrics, tracer

# Rules, settings and clients at cold start: a bad rule file fails here, every problem logged.
decisions = DecisionHandler()


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    return decisions.handle(event, context)
