"""Sweep Lambda (EventBridge schedule): evaluate the users whose time-based re-check is due."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from nudge.entrypoints.schedule import SweepHandler
from nudge.observability import logger, metrics, tracer

# Rules, settings and clients at cold start: a bad rule file fails here, every problem logged.
sweeps = SweepHandler()


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return sweeps.handle(event, context)
