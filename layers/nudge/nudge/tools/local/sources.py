"""Lambda's event sources as template.yaml declares them: stream, schedule and queue events.

In AWS nobody calls the evaluate, sweep, dispatch or channel functions: Lambda polls the usage
table's stream and the queues (event source mappings) and EventBridge invokes the sweep on its
schedule. Locally pumps stand in for them, configured from what this module reads in
template.yaml, with Lambda's defaults filled in, so they can't drift from what deploys:

* ``nudge.tools.local.streams``: ``StreamPump``, a ``Type: DynamoDB`` event (``StreamSource``);
* ``nudge.tools.local.schedules``: ``ScheduledFunction``, a ``Type: Schedule`` event
  (``ScheduleSource``);
* ``nudge.tools.local.queues``: ``QueuePump``, a ``Type: SQS`` event (``QueueSource``), and
  ``QueueTap`` for a queue no local function consumes.

Nothing there runs on its own; ``nudge.tools.local.stack.LocalStack`` decides when (after each
request it is asked to settle, after each clock move) and says why there. So an event source's
``MaximumBatchingWindowInSeconds`` is not waited out: a pump delivers what the stream holds when
it is called, in batches of up to ``BatchSize``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from nudge.tools.local.aws import ACCOUNT_ID, REGION
from nudge.tools.local.template import TemplateError

FUNCTION_TYPE = "AWS::Serverless::Function"
# Lambda's defaults for DynamoDB event sources.
DEFAULT_BATCH_SIZE = 100
# Lambda's default is -1: retry until the record leaves the stream (24 hours). Locally that
# would spin on a poison record for ever, so an unset or infinite count is bounded to this.
LOCAL_MAX_RETRIES = 3
# Lambda retries an async invocation that raised twice unless EventInvokeConfig says otherwise.
DEFAULT_ASYNC_RETRIES = 2
# The most ReceiveMessage returns at once, and Lambda's default BatchSize for an SQS event.
SQS_RECEIVE_LIMIT = 10

_RATE = re.compile(r"rate\(\s*(\d+)\s+(minute|minutes|hour|hours|day|days)\s*\)")
_UNITS = {"minute": 60, "hour": 3600, "day": 86400}


@dataclass(frozen=True)
class StreamSource:
    """A function's `Type: DynamoDB` event, with Lambda's defaults filled in."""

    function: str
    event: str
    table: str  # logical id of the table whose stream it reads
    starting_position: str
    batch_size: int
    max_retries: int
    bisect: bool
    report_item_failures: bool
    on_failure_queue: str | None  # logical id of an SQS queue
    filters: tuple[str, ...]  # FilterCriteria patterns, as JSON text


@dataclass(frozen=True)
class ScheduleSource:
    """A function's `Type: Schedule` event (EventBridge rule) and its async-invoke config."""

    function: str
    event: str
    rate: timedelta
    enabled: bool
    retries: int
    on_failure_queue: str | None

    @property
    def rule_name(self) -> str:
        return f"nudge-local-{self.function}{self.event}"

    @property
    def rule_arn(self) -> str:
        return f"arn:aws:events:{REGION}:{ACCOUNT_ID}:rule/{self.rule_name}"


def _get_att(value: Any, attribute: str, where: str) -> str:
    """The logical id in `!GetAtt Id.<attribute>`; anything else can't be followed locally."""
    if isinstance(value, dict) and isinstance(value.get("Fn::GetAtt"), list):
        target, att = value["Fn::GetAtt"][0], value["Fn::GetAtt"][1]
        if att == attribute:
            return str(target)
    raise TemplateError(f"{where}: expected !GetAtt <LogicalId>.{attribute}, got {value!r}")


def _events(
    template: Mapping[str, Any], kind: str
) -> Iterable[tuple[str, str, dict[str, Any], dict[str, Any]]]:
    """(function id, event name, event properties, function properties) of every `kind` event."""
    for logical_id, resource in template["Resources"].items():
        if resource.get("Type") != FUNCTION_TYPE:
            continue
        props = resource.get("Properties") or {}
        for name, event in (props.get("Events") or {}).items():
            if event.get("Type") == kind:
                yield logical_id, name, event.get("Properties") or {}, props


def _on_failure_queue(config: Mapping[str, Any] | None, where: str) -> str | None:
    on_failure = ((config or {}).get("DestinationConfig") or {}).get("OnFailure")
    if not on_failure:
        return None
    if on_failure.get("Type", "SQS") != "SQS":
        raise TemplateError(f"{where}: only SQS on-failure destinations run locally")
    return _get_att(on_failure.get("Destination"), "Arn", f"{where}.DestinationConfig")


def stream_sources(template: Mapping[str, Any]) -> list[StreamSource]:
    sources: list[StreamSource] = []
    for function, name, props, _ in _events(template, "DynamoDB"):
        where = f"{function}.Events.{name}"
        retries = int(props.get("MaximumRetryAttempts", -1))
        filters = ((props.get("FilterCriteria") or {}).get("Filters")) or []
        sources.append(
            StreamSource(
                function=function,
                event=name,
                table=_get_att(props.get("Stream"), "StreamArn", where),
                starting_position=str(props.get("StartingPosition", "LATEST")),
                batch_size=int(props.get("BatchSize", DEFAULT_BATCH_SIZE)),
                max_retries=retries if retries >= 0 else LOCAL_MAX_RETRIES,
                bisect=str(props.get("BisectBatchOnFunctionError", False)).lower() == "true",
                report_item_failures="ReportBatchItemFailures" in (props.get("FunctionResponseTypes") or []),
                on_failure_queue=_on_failure_queue(props, where),
                filters=tuple(str(f["Pattern"]) for f in filters if "Pattern" in f),
            )
        )
    return sources


def parse_rate(expression: str, where: str = "Schedule") -> timedelta:
    """`rate(15 minutes)` -> 15 minutes. Cron expressions are refused: nothing here evaluates them."""
    found = _RATE.fullmatch(expression.strip())
    if found is None:
        raise TemplateError(
            f"{where}: only rate(N minutes|hours|days) schedules run locally, not {expression!r}"
        )
    count, unit = int(found.group(1)), found.group(2).rstrip("s")
    if count < 1:
        raise TemplateError(f"{where}: {expression!r} is not a positive rate")
    return timedelta(seconds=count * _UNITS[unit])


def schedule_sources(template: Mapping[str, Any]) -> list[ScheduleSource]:
    sources: list[ScheduleSource] = []
    for function, name, props, fn_props in _events(template, "Schedule"):
        where = f"{function}.Events.{name}"
        invoke_config = fn_props.get("EventInvokeConfig") or {}
        enabled = props.get("Enabled", props.get("State", True))
        sources.append(
            ScheduleSource(
                function=function,
                event=name,
                rate=parse_rate(str(props.get("Schedule", "")), where),
                enabled=str(enabled).lower() not in ("false", "disabled"),
                retries=int(invoke_config.get("MaximumRetryAttempts", DEFAULT_ASYNC_RETRIES)),
                on_failure_queue=_on_failure_queue(invoke_config, f"{function}.EventInvokeConfig"),
            )
        )
    return sources


@dataclass(frozen=True)
class QueueSource:
    """A function's `Type: SQS` event, with Lambda's defaults filled in."""

    function: str
    event: str
    queue: str  # logical id of the queue
    batch_size: int
    report_item_failures: bool


def queue_sources(template: Mapping[str, Any]) -> list[QueueSource]:
    sources: list[QueueSource] = []
    for function, name, props, _ in _events(template, "SQS"):
        where = f"{function}.Events.{name}"
        sources.append(
            QueueSource(
                function=function,
                event=name,
                queue=_get_att(props.get("Queue"), "Arn", where),
                batch_size=int(props.get("BatchSize", SQS_RECEIVE_LIMIT)),
                report_item_failures="ReportBatchItemFailures" in (props.get("FunctionResponseTypes") or []),
            )
        )
    return sources
