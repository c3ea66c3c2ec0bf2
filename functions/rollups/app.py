"""Rollups Lambda: users' writes (table stream) -> their accounts' weekly users, sessions and feature
adopters, each write's delta applied exactly once, summed per account per batch."""

import gc

# No garbage collection while the modules load and the function initialises: collections then
# found next to nothing and cost a tenth of the cold start's CPU. Resumed below.
gc.disable()

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from nudge.entrypoints.rollups import RollupStreamHandler
from nudge.observability import logger, metrics, tracer

rollups = RollupStreamHandler()

# What init built stays: frozen, later collections never scan it (BENCHMARKS.md section 7).
gc.freeze()
gc.enable()


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return rollups.handle(event, context)
