"""Changes Lambda: segment record writes (table stream) -> segment entries and exits, score band
changes -> Nudge's EventBridge bus, for CRMs, ad audiences, anything EventBridge reaches."""

from typing import Any

from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.typing import LambdaContext

from nudge.entrypoints.changes import ChangesStreamHandler
from nudge.observability import logger, metrics, tracer

changes = ChangesStreamHandler()


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    return changes.handle(event, context)
