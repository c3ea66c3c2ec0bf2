"""Email Lambda: the email queue -> render -> SES v2, at most once per decision."""

import gc

# No garbage collection while the modules load and the function initialises: collections then
# found next to nothing and cost a tenth of the cold start's CPU. Resumed below.
gc.disable()

from typing import Any

from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.typing import LambdaContext

from nudge.entrypoints.deliveries import DeliveryHandler
from nudge.observability import logger, metrics, tracer

# Rules, clients and the unsubscribe secret at cold start: a bad rule file fails here.
deliveries = DeliveryHandler("email")

# What init built stays: frozen, later collections never scan it (BENCHMARKS.md section 7).
gc.freeze()
gc.enable()


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    return deliveries.handle(event, context)
