"""Build dispatch's and the action functions' collaborators once per container, from settings."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

from nudge.adapters.dynamo.ledger import DynamoLedger
from nudge.model.queue import Delivery
from nudge.rulebook.ruleset import RuleSet
from nudge.services.deliver import Channels, DeliverPorts, PushEndpoints
from nudge.services.dispatch import DispatchPorts, RouteFailed
from nudge.settings import Settings, get_settings

if TYPE_CHECKING:
    from mypy_boto3_sqs.client import SQSClient
    from mypy_boto3_sqs.type_defs import SendMessageBatchRequestEntryTypeDef

SQS_BATCH_LIMIT = 10


class SqsDeliveryRouter:
    """Each send to its channel's queue (email; push and SMS; escalations), ten per request."""

    def __init__(self, client: SQSClient, queues: dict[str, str], attempts: int = 3) -> None:
        self.client = client
        self.queues = queues
        self.attempts = attempts

    def route(self, deliveries: Sequence[Delivery]) -> None:
        by_queue: dict[str, list[Delivery]] = {}
        for delivery in deliveries:
            url = self.queues.get(delivery.channel)
            if not url:
                raise RouteFailed(f"no queue configured for channel {delivery.channel!r}")
            by_queue.setdefault(url, []).append(delivery)
        for url, items in by_queue.items():
            for start in range(0, len(items), SQS_BATCH_LIMIT):
                entries: list[SendMessageBatchRequestEntryTypeDef] = [
                    {"Id": str(i), "MessageBody": d.model_dump_json()}
                    for i, d in enumerate(items[start : start + SQS_BATCH_LIMIT])
                ]
                self._send(url, entries)

    def _send(self, url: str, entries: list[SendMessageBatchRequestEntryTypeDef]) -> None:
        for attempt in range(self.attempts):
            try:
                response = self.client.send_message_batch(QueueUrl=url, Entries=entries)
            except (ClientError, BotoCoreError) as exc:
                raise RouteFailed(f"SQS SendMessageBatch failed: {exc}") from exc
            failed = response.get("Failed", [])
            if not failed:
                return
            if any(f.get("SenderFault") for f in failed):
                raise RouteFailed(f"SQS refused {len(failed)} deliveries")
            retry = {f["Id"] for f in failed}
            entries = [e for e in entries if e["Id"] in retry]
            time.sleep(min(1.0, 0.05 * 2**attempt))
        raise RouteFailed(f"{len(entries)} deliveries still failing after {self.attempts} attempts")


@dataclass(frozen=True)
class DispatchService:
    settings: Settings
    rules: RuleSet
    ports: DispatchPorts


@dataclass(frozen=True)
class DeliverService:
    settings: Settings
    rules: RuleSet
    ports: DeliverPorts


def _ledger(settings: Settings) -> DynamoLedger:
    import boto3

    return DynamoLedger(
        boto3.client("dynamodb"),
        settings.ledger_table,
        retention=timedelta(days=settings.ledger_retention_days),
    )


def wire_dispatch() -> DispatchService:
    """Rules, ledger, usage store, channel queues; a bad rule file or a missing queue fails here."""
    import boto3

    from nudge.adapters.dynamo.segments import DynamoSegmentStore
    from nudge.adapters.dynamo.usage import DynamoUsageStore
    from nudge.services.evaluate import SegmentRechecks, load_rules_or_explain

    settings = get_settings()
    rules = load_rules_or_explain(settings.rules_dir)
    queues = {
        "email": settings.email_queue_url,
        "push": settings.notify_queue_url,
        "sms": settings.notify_queue_url,
        "cs": settings.escalation_queue_url,
    }
    missing = sorted(channel for channel, url in queues.items() if not url)
    if missing:
        raise ValueError(
            f"no queue URL for {', '.join(missing)}: set NUDGE_EMAIL/NOTIFY/ESCALATION_QUEUE_URL"
        )
    dynamodb = boto3.client("dynamodb")
    segments = DynamoSegmentStore(
        dynamodb, settings.usage_table, index=settings.due_index, due_shards=settings.due_shards
    )
    ports = DispatchPorts(
        ledger=_ledger(settings),
        usage=DynamoUsageStore(dynamodb, settings.usage_table, settings.rollup_shards),
        router=SqsDeliveryRouter(boto3.client("sqs"), queues),
        rechecks=SegmentRechecks(segments),
    )
    return DispatchService(settings, rules, ports)


def wire_deliver(channel: str) -> DeliverService:
    """One action function's collaborators: `email`, `notify` (push and SMS) or `escalate`."""
    import boto3
    from aws_lambda_powertools.utilities import parameters

    from nudge.adapters.cs_desk import SqsEscalationDesk
    from nudge.adapters.dynamo.usage import DynamoUsageStore
    from nudge.adapters.ses import SesEmailSender
    from nudge.adapters.sns import SnsNotifier
    from nudge.services.evaluate import load_rules_or_explain

    settings = get_settings()
    rules = load_rules_or_explain(settings.rules_dir)
    channels = Channels()
    if channel == "email":
        channels = Channels(
            email=SesEmailSender(
                boto3.client("sesv2"), configuration_set=settings.ses_configuration_set or None
            )
        )
    elif channel == "notify":
        sns = boto3.client("sns")
        endpoints = (
            PushEndpoints(sns, settings.push_application_arn) if settings.push_application_arn else None
        )
        channels = Channels(notifier=SnsNotifier(sns), push_endpoints=endpoints)
    elif channel == "escalate":
        if not settings.cs_queue_url:
            raise ValueError("NUDGE_CS_QUEUE_URL is not set: escalations would have nowhere to go")
        channels = Channels(
            desk=SqsEscalationDesk(
                boto3.client("sqs"), settings.cs_queue_url, boto3.client("sns"), settings.cs_topic_arn or None
            )
        )
    else:
        raise ValueError(f"unknown action channel {channel!r}")
    secrets: tuple[bytes, ...] = ()
    if channel != "escalate":
        value = str(parameters.get_parameter(settings.unsubscribe_secret_param, decrypt=True, max_age=300))
        secrets = tuple(s.strip().encode() for s in value.split(",") if s.strip())
        if not secrets:
            raise ValueError(f"{settings.unsubscribe_secret_param} holds no unsubscribe secret")
    ports = DeliverPorts(
        ledger=_ledger(settings),
        usage=DynamoUsageStore(boto3.client("dynamodb"), settings.usage_table, settings.rollup_shards),
        channels=channels,
        unsubscribe_secrets=secrets,
        unsubscribe_url=settings.unsubscribe_url,
    )
    return DeliverService(settings, rules, ports)
