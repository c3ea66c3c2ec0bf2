"""Ingest Lambda: Segment-compatible tracking API in front of the usage table. The same code is the
buffered front door (FrontDoorFunction, behind a function URL): `front_door` answers as `handler`
does, and puts the messages on the ingest queue instead of writing them."""

import gc

# No garbage collection while the modules load and the function initialises: collections then
# found next to nothing and cost a tenth of the cold start's CPU. Resumed below.
gc.disable()

from typing import Any

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from nudge.entrypoints.http.ingest_api import cold_start, resolve
from nudge.observability import logger, metrics, tracer

cold_start()

# What init built stays: frozen, later collections never scan it (BENCHMARKS.md section 7).
gc.freeze()
gc.enable()


# log_event=False whatever POWERTOOLS_LOGGER_LOG_EVENT says: an event holds the write key
# (Authorization header, body writeKey) and the users' traits, which must never reach the logs.
@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP, log_event=False)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return resolve(event, context)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.LAMBDA_FUNCTION_URL, log_event=False)
@tracer.capture_lambda_handler
@metrics.log_metrics
def front_door(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return resolve(event, context, front_door=True)
