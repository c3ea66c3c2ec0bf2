"""Rollups Lambda: users' writes (table stream) -> their accounts' weekly users, sessions and feature
adopters, each write's delta applied exactly once, summed per account per batch."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from nudge.entrypoints.rollups import RollupStreamHandler
from nudge.observability import logger, metrics, tracer

rollups = RollupStreamHandler()


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return rollups.handle(event, context)
