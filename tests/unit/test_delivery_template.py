"""Delivery as deployed (template.yaml): a batch to a webhook receiver that hangs must finish inside
the function's timeout, or Lambda kills it mid-post and the claimed entry is never retried (deliver
finds it `sending` and drops the redelivery); only the function that stores in-app messages may put
items into the ledger table; every stream reader has its lag alarmed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nudge.adapters.webhooks import TIMEOUT, WEBHOOK_BACKOFF
from nudge.tools.local.template import load_template
from tests.unit.test_security_posture import statements

RESOURCES: dict[str, Any] = load_template(Path("template.yaml"))["Resources"]


def _worst_delivery_seconds() -> float:
    # Every attempt connects and waits for an answer as long as allowed; the delays between them
    # at their longest.
    attempt = float(TIMEOUT.connect_timeout) + float(TIMEOUT.read_timeout)  # type: ignore[arg-type]
    delays = sum(
        min(WEBHOOK_BACKOFF.max_delay, WEBHOOK_BACKOFF.base_delay * 2**i)
        for i in range(WEBHOOK_BACKOFF.attempts - 1)
    )
    return float(WEBHOOK_BACKOFF.attempts * attempt + delays)


def test_a_batch_to_a_hanging_receiver_ends_before_the_function_times_out() -> None:
    function = RESOURCES["WebhookFunction"]["Properties"]
    batch = function["Events"]["Posts"]["Properties"]["BatchSize"]
    assert batch * _worst_delivery_seconds() < function["Timeout"]


def _actions(statement: dict[str, Any]) -> list[str]:
    action = statement.get("Action", [])
    return action if isinstance(action, list) else [action]


def test_only_the_notify_function_puts_inbox_items_into_the_ledger() -> None:
    writers = {
        name
        for name, resource in RESOURCES.items()
        if resource["Type"] == "AWS::Serverless::Function"
        for statement in statements(resource)
        if statement.get("Sid") == "InboxWrite" and "dynamodb:PutItem" in _actions(statement)
    }
    assert writers == {"NotifyFunction"}


def test_every_stream_reader_has_an_iterator_age_alarm() -> None:
    # The stream keeps records 24 h: a reader that falls behind loses them, and only its
    # IteratorAge says so before then.
    readers = {
        name
        for name, resource in RESOURCES.items()
        if resource["Type"] == "AWS::Serverless::Function"
        and any(e["Type"] == "DynamoDB" for e in resource["Properties"].get("Events", {}).values())
    }
    alarmed = {
        r["Properties"]["Dimensions"][0]["Value"]["Ref"]
        for r in RESOURCES.values()
        if r["Type"] == "AWS::CloudWatch::Alarm" and r["Properties"].get("MetricName") == "IteratorAge"
    }
    # Three readers: DynamoDB advises at most two per shard at once (more may be throttled, which
    # Lambda retries: IteratorAge shows it). docs/ARCHITECTURE.md, "Account rollups off the user's write".
    assert readers == {"EvaluateFunction", "ChangesFunction", "RollupFunction"}
    assert readers <= alarmed
