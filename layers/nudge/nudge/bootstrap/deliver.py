"""The action functions' services (email, notify, escalate): the ledger and one channel's sender."""

from __future__ import annotations

from dataclasses import dataclass

import boto3
from aws_lambda_powertools.utilities import parameters

from nudge.adapters.cs_desk import SqsEscalationDesk
from nudge.adapters.dynamo.usage import DynamoUsageStore
from nudge.adapters.ses import SesEmailSender
from nudge.adapters.sns import SnsNotifier, SnsPushEndpoints
from nudge.bootstrap import UNSUBSCRIBE_SECRETS_MAX_AGE_SECONDS, ledger_from
from nudge.bootstrap.rules import load_rules_or_explain
from nudge.rulebook.ruleset import RuleSet
from nudge.services.deliver import Channels, DeliverPorts
from nudge.services.unsubscribe import parse_secrets
from nudge.settings import Settings, get_settings


@dataclass(frozen=True)
class DeliverService:
    settings: Settings
    rules: RuleSet
    ports: DeliverPorts


def wire_deliver(channel: str) -> DeliverService:
    """One action function's collaborators: `email`, `notify` (push and SMS) or `escalate`."""
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
            SnsPushEndpoints(sns, settings.push_application_arn) if settings.push_application_arn else None
        )
        channels = Channels(
            notifier=SnsNotifier(sns, sms_enabled=settings.sms_enabled), push_endpoints=endpoints
        )
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
        value = parameters.get_parameter(
            settings.unsubscribe_secret_param, decrypt=True, max_age=UNSUBSCRIBE_SECRETS_MAX_AGE_SECONDS
        )
        secrets = parse_secrets(str(value))
        if not secrets:
            raise ValueError(f"{settings.unsubscribe_secret_param} holds no unsubscribe secret")
    ports = DeliverPorts(
        ledger=ledger_from(settings),
        usage=DynamoUsageStore(boto3.client("dynamodb"), settings.usage_table, settings.rollup_shards),
        channels=channels,
        unsubscribe_secrets=secrets,
        unsubscribe_url=settings.unsubscribe_url,
    )
    return DeliverService(settings, rules, ports)
