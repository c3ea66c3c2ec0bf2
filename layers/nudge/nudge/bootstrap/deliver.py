"""The action functions' services (email, notify, escalate): the ledger and one channel's sender."""

from __future__ import annotations

from dataclasses import dataclass

import boto3
from aws_lambda_powertools.utilities import parameters

from nudge.adapters.cs_desk import SqsEscalationDesk
from nudge.adapters.dynamo.inbox import DynamoInbox
from nudge.adapters.dynamo.usage import DynamoUsageStore
from nudge.adapters.ses import SesEmailSender
from nudge.adapters.sns import SnsNotifier, SnsPushEndpoints
from nudge.adapters.webhooks import HttpDestinations
from nudge.bootstrap import configured
from nudge.bootstrap.ruleset import load_rules_or_explain
from nudge.bootstrap.shared import ledger_from, read_secrets, ssm_on_default_session, suppression_list_from
from nudge.rulebook.ruleset import RuleSet
from nudge.services.deliver import Channels, DeliverPorts
from nudge.settings import Settings

# How long a destination's secret is cached: a rotation reaches every container within it.
DESTINATION_MAX_AGE = 300


@dataclass(frozen=True)
class DeliverService:
    settings: Settings
    rules: RuleSet
    ports: DeliverPorts


def wire_deliver(channel: str) -> DeliverService:
    """One action function's collaborators: `email`, `notify` (push, SMS, in-app), `escalate` or
    `webhook` (webhooks and Slack; each destination's secret read from SSM when first posted to)."""
    settings = configured()
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
        # In-app messages ride the notify queue: one more way to reach the user, stored in the
        # ledger table beside their decisions (adapters/dynamo/inbox.py says why).
        channels = Channels(
            notifier=SnsNotifier(sns, sms_enabled=settings.sms_enabled),
            push_endpoints=endpoints,
            inbox=DynamoInbox(boto3.client("dynamodb"), settings.ledger_table),
        )
    elif channel == "escalate":
        if not settings.cs_queue_url:
            raise ValueError("NUDGE_CS_QUEUE_URL is not set: escalations would have nowhere to go")
        channels = Channels(
            desk=SqsEscalationDesk(
                boto3.client("sqs"), settings.cs_queue_url, boto3.client("sns"), settings.cs_topic_arn or None
            )
        )
    elif channel == "webhook":
        path = settings.destinations_path.rstrip("/")

        def destination_secret(destination: str) -> str:
            ssm_on_default_session()
            name = f"{path}/{destination}"
            return str(parameters.get_parameter(name, decrypt=True, max_age=DESTINATION_MAX_AGE))

        channels = Channels(
            destinations=HttpDestinations(
                destination_secret,
                allow_local_http=settings.webhook_allow_local_http,
            )
        )
    else:
        raise ValueError(f"unknown action channel {channel!r}")
    secrets: tuple[bytes, ...] = ()
    suppressions = None
    if channel in ("email", "notify"):
        secrets = read_secrets(settings.unsubscribe_secret_param, "unsubscribe")
        suppressions = suppression_list_from(settings)
    if channel == "email" and not settings.unsubscribe_url.startswith(("https://", "http://")):
        raise ValueError(
            "NUDGE_UNSUBSCRIBE_URL is not an absolute URL: every marketing email links to it (template.yaml "
            "sets it to the HTTP API's /v1/unsubscribe; the local stack to its own address)"
        )
    ports = DeliverPorts(
        ledger=ledger_from(settings),
        usage=DynamoUsageStore(boto3.client("dynamodb"), settings.usage_table, settings.rollup_shards),
        channels=channels,
        unsubscribe_secrets=secrets,
        unsubscribe_url=settings.unsubscribe_url,
        suppressions=suppressions,
    )
    return DeliverService(settings, rules, ports)
