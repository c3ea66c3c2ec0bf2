"""The sweep's schedule, for the local stack: ``ScheduledFunction``, an EventBridge rate rule.

``ScheduledFunction`` invokes a function with EventBridge's "Scheduled Event" at the template's
``rate(...)`` (``nudge.tools.local.sources.ScheduleSource``), with the async-invoke retries and
on-failure destination of its ``EventInvokeConfig``. The stack asks it whether a firing is due
and runs it then (``LocalStack.run_due``).
"""

from __future__ import annotations

import json
import threading
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from nudge.tools.local.aws import ACCOUNT_ID, REGION, HandlerFailed
from nudge.tools.local.functions import Invoker, destination_time, function_arn
from nudge.tools.local.sources import ScheduleSource

if TYPE_CHECKING:
    from mypy_boto3_sqs.client import SQSClient


def scheduled_event(source: ScheduleSource, at: datetime) -> dict[str, Any]:
    """EventBridge's event for a rate rule firing at `at`."""
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": ACCOUNT_ID,
        "time": at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": REGION,
        "resources": [source.rule_arn],
        "detail": {},
    }


@dataclass
class ScheduledRun:
    at: datetime
    result: dict[str, Any] | None  # None: it failed every attempt (see the on-failure queue)
    attempts: int


class ScheduledFunction:
    """An EventBridge rate rule and the async invocations it makes.

    A rate rule fires every `rate` from when it was created (`anchor`). ``claim(now)`` tells
    whether a firing fell since the last run and, if so, takes it (two callers never both run
    it); the stack then runs it once, at `now`: after a jump of the clock the missed firings are
    not replayed one by one (the stack moves the clock in steps small enough for that; see
    LocalStack.advance_clock).
    """

    def __init__(
        self,
        source: ScheduleSource,
        *,
        invoke: Invoker,
        sqs: SQSClient,
        failure_queue_url: str | None,
        anchor: datetime,
    ) -> None:
        self.source = source
        self._invoke = invoke
        self._sqs = sqs
        self._failure_queue_url = failure_queue_url
        self._anchor = anchor
        self.last_run = anchor
        self.runs: list[ScheduledRun] = []
        self._lock = threading.Lock()

    def _firing(self, at: datetime) -> int:
        return (at - self._anchor) // self.source.rate

    def due(self, now: datetime) -> bool:
        return self.source.enabled and self._firing(now) > self._firing(self.last_run)

    def claim(self, now: datetime) -> bool:
        """Take the firing due at `now`, if any: True means the caller must run(now)."""
        with self._lock:
            if not self.due(now):
                return False
            self.last_run = now
            return True

    def run(self, now: datetime) -> ScheduledRun:
        event = scheduled_event(self.source, now)
        attempts = 1 + max(0, self.source.retries)
        error = ""
        for attempt in range(1, attempts + 1):
            try:
                result = self._invoke(self.source.function, event)
            except HandlerFailed as exc:
                error = str(exc)
                continue
            return self._ran(ScheduledRun(now, result, attempt))
        self._give_up(event, attempts, error, now)
        return self._ran(ScheduledRun(now, None, attempts))

    def _ran(self, run: ScheduledRun) -> ScheduledRun:
        with self._lock:
            self.last_run = max(self.last_run, run.at)
            self.runs.append(run)
        return run

    def _give_up(self, event: dict[str, Any], attempts: int, error: str, now: datetime) -> None:
        """The record an async invocation's on-failure destination receives."""
        if self._failure_queue_url is None:
            return
        message = {
            "version": "1.0",
            "timestamp": destination_time(now),
            "requestContext": {
                "requestId": str(uuid.uuid4()),
                "functionArn": f"{function_arn(self.source.function)}:$LATEST",
                "condition": "RetriesExhausted",
                "approximateInvokeCount": attempts,
            },
            "requestPayload": event,
            "responseContext": {
                "statusCode": 200,
                "executedVersion": "$LATEST",
                "functionError": "Unhandled",
            },
            "responsePayload": {"errorMessage": error, "errorType": "HandlerFailed"},
        }
        self._sqs.send_message(QueueUrl=self._failure_queue_url, MessageBody=json.dumps(message))
