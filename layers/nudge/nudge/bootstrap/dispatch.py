"""The dispatch function's services: rules, ledger, usage store, channel router and re-checks."""

from __future__ import annotations

from dataclasses import dataclass

import boto3

from nudge.adapters.dynamo.segments import DynamoSegmentStore
from nudge.adapters.dynamo.usage import DynamoUsageStore
from nudge.adapters.sqs import SqsDeliveryRouter
from nudge.bootstrap import configured, state_ttl
from nudge.bootstrap.ruleset import load_rules_or_explain
from nudge.bootstrap.shared import ledger_from, suppression_list_from
from nudge.rulebook.ruleset import RuleSet
from nudge.services.dispatch import DispatchPorts
from nudge.services.evaluate import SegmentRechecks
from nudge.settings import Settings


@dataclass(frozen=True)
class DispatchService:
    settings: Settings
    rules: RuleSet
    ports: DispatchPorts


def wire_dispatch() -> DispatchService:
    """Rules, ledger, usage store, channel queues; a bad rule file or a missing queue fails here."""

    settings = configured()
    rules = load_rules_or_explain(settings.rules_dir)
    queues = {
        "email": settings.email_queue_url,
        "push": settings.notify_queue_url,
        "sms": settings.notify_queue_url,
        "in_app": settings.notify_queue_url,
        "cs": settings.escalation_queue_url,
    }
    if rules.destinations.by_id:
        # Only rules naming destinations route there; the queue is always in template.yaml.
        queues["webhook"] = settings.webhook_queue_url
    missing = sorted(channel for channel, url in queues.items() if not url)
    if missing:
        raise ValueError(
            f"no queue URL for {', '.join(missing)}: set NUDGE_EMAIL/NOTIFY/ESCALATION/WEBHOOK_QUEUE_URL"
        )
    dynamodb = boto3.client("dynamodb")
    segments = DynamoSegmentStore(
        dynamodb,
        settings.usage_table,
        index=settings.due_index,
        due_shards=settings.due_shards,
        state_ttl=state_ttl(settings),
    )
    ports = DispatchPorts(
        ledger=ledger_from(settings),
        usage=DynamoUsageStore(dynamodb, settings.usage_table, settings.rollup_shards),
        router=SqsDeliveryRouter(boto3.client("sqs"), queues),
        rechecks=SegmentRechecks(segments),
        suppressions=suppression_list_from(settings),
    )
    return DispatchService(settings, rules, ports)
