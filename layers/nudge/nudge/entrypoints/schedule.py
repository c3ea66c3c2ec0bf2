"""The sweep's schedule (EventBridge) -> evaluate the users whose time-based re-check is due."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from nudge import clock
from nudge.bootstrap.rules import RulesService, wire
from nudge.observability import logger
from nudge.services.sweep import sweep


class SweepHandler:
    """Built at cold start (rules, settings, clients): a bad rule file fails there, every problem logged."""

    def __init__(self) -> None:
        self.service: RulesService = wire()

    def handle(self, event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        # The schedule's event carries nothing the sweep needs: it works from the watermark and
        # now. The run's id is its correlation id: its log lines, and the decisions it publishes
        # (so dispatch's and the sends' lines too), carry it.
        service = self.service
        logger.set_correlation_id(context.aws_request_id)
        try:
            result = sweep(
                service.rules,
                service.ports,
                clock.now(),
                options=service.options,
                time_left=lambda: context.get_remaining_time_in_millis() / 1000,
                correlation_id=context.aws_request_id,
            )
        finally:
            service.metrics.flush()
            logger.set_correlation_id(None)
        return result.summary()
