"""What the local stack makes in moto from template.yaml, once moto is up.

* ``create_resources``: the template's tables and queues (``nudge.tools.local.aws``), the keys
  (hashed), the user-token secret and a fresh unsubscribe-signing secret in SSM;
* ``messaging_resources``: what the template takes from outside (the SES sender identity, a push
  platform application) or declares beyond tables and queues (its SNS topics);
* ``EventSources``: the pumps standing in for Lambda's event source mappings and EventBridge's
  rules (``nudge.tools.local.streams``, ``schedules``, ``queues``), one per stream, schedule and
  queue event of the template, and taps on the queues that only people read.
"""

from __future__ import annotations

import contextlib
import secrets
from email.utils import parseaddr
from pathlib import Path
from typing import TYPE_CHECKING

import yaml
from botocore.exceptions import ClientError

from nudge.settings import Settings
from nudge.tools.local.aws import create_queues, create_usage_resources, table_names
from nudge.tools.local.environment import (
    DESTINATIONS_PATH,
    SUPPRESSION_SECRET_PARAM,
    UNSUBSCRIBE_SECRET_PARAM,
    USER_TOKEN_SECRET_PARAM,
)
from nudge.tools.local.functions import Invoker
from nudge.tools.local.mailbox_simulator import MailboxSimulator, feedback_wiring
from nudge.tools.local.queues import QueuePump, QueueTap
from nudge.tools.local.schedules import ScheduledFunction
from nudge.tools.local.simulated_clock import Now
from nudge.tools.local.sources import queue_sources, schedule_sources, stream_sources
from nudge.tools.local.streams import StreamPump
from nudge.tools.local.template import TemplateError, load_template
from nudge.tools.local.write_keys import LocalKeys, destination_secrets

if TYPE_CHECKING:
    import boto3
    from mypy_boto3_dynamodb.client import DynamoDBClient
    from mypy_boto3_dynamodbstreams.client import DynamoDBStreamsClient
    from mypy_boto3_sqs.client import SQSClient

# Local queues (and topics) are named <prefix>-<LogicalId>.
QUEUE_PREFIX = "nudge-local"
# Customer success reads escalations from this queue; locally nobody does, so the stack drains and
# keeps them (GET /_local/escalations). A queue listed here is read by the stack, not a function.
CS_QUEUE = "CsQueue"
TAPPED_QUEUES = (CS_QUEUE,)


def create_resources(
    session: boto3.session.Session,
    dynamodb: DynamoDBClient,
    sqs: SQSClient,
    template_path: Path,
    keys: LocalKeys,
) -> dict[str, str]:
    """The template's tables and queues, the keys, the user-token, unsubscribe-signing and
    suppression-keying secrets, made in moto with the names nudge.settings reads from the
    environment; queue URLs by logical id."""

    ssm = session.client("ssm")
    create_usage_resources(
        dynamodb,
        ssm,
        template_path,
        Settings(),
        keys.server,
        client_keys=keys.client,
        admin_keys=keys.admin,
        client_origins=keys.origins,
    )
    ssm.put_parameter(
        Name=USER_TOKEN_SECRET_PARAM, Value=keys.user_token_secret, Type="SecureString", Overwrite=True
    )
    # Fresh secrets per stack: local unsubscribe links are only good while it runs, and its
    # suppression list lives and dies with it.
    for name in (UNSUBSCRIBE_SECRET_PARAM, SUPPRESSION_SECRET_PARAM):
        ssm.put_parameter(Name=name, Value=secrets.token_urlsafe(32), Type="SecureString", Overwrite=True)
    for name, value in destination_secrets().items():
        ssm.put_parameter(
            Name=f"{DESTINATIONS_PATH}/{name}", Value=value, Type="SecureString", Overwrite=True
        )
    return create_queues(sqs, template_path, QUEUE_PREFIX)


def _guardrails_sender(rules_dir: Path) -> str:
    """sender.email_from of rules/guardrails.yaml, read plainly (the functions validate the file)."""

    path = rules_dir / "guardrails.yaml"
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        return ""
    sender = (data.get("sender") or {}) if isinstance(data, dict) else {}
    return str(sender.get("email_from") or "") if isinstance(sender, dict) else ""


def messaging_resources(
    session: boto3.session.Session, rules_dir: Path, template_path: Path
) -> dict[str, str]:
    """What the template takes from outside (the SES sender identity, a push platform
    application) or declares beyond tables and queues (the CS topic, the changes bus), made in moto: the push
    application's and each topic's ARN by logical id, for the functions' `!Ref`s."""

    sender = parseaddr(_guardrails_sender(rules_dir))[1]
    if sender:
        # SES refuses to send from an unverified identity, in moto as in AWS.
        session.client("ses").verify_email_identity(EmailAddress=sender)
    sns = session.client("sns")
    application = sns.create_platform_application(
        Name="nudge-local-push", Platform="GCM", Attributes={"PlatformCredential": "local"}
    )["PlatformApplicationArn"]
    refs = {"PushApplicationArn": application}
    sesv2 = session.client("sesv2")
    for logical_id, resource in load_template(template_path)["Resources"].items():
        if resource.get("Type") == "AWS::SNS::Topic":
            refs[logical_id] = sns.create_topic(Name=f"{QUEUE_PREFIX}-{logical_id}")["TopicArn"]
        if resource.get("Type") == "AWS::Events::EventBus":
            # `!Ref` of a bus is its name; moto delivers put_events to rules' SQS targets.
            name = f"{QUEUE_PREFIX}-{logical_id}"
            events = session.client("events")
            # An earlier stack of this process may have made it: moto's backends outlive a stack.
            with contextlib.suppress(events.exceptions.ResourceAlreadyExistsException):
                events.create_event_bus(Name=name)
            refs[logical_id] = name
        elif resource.get("Type") == "AWS::SES::ConfigurationSet":
            # The email function sends with it; the mailbox simulator publishes its events.
            refs[logical_id] = configuration_set_name(logical_id)
            try:
                sesv2.create_configuration_set(ConfigurationSetName=refs[logical_id])
            except ClientError as exc:
                # A stack started before in this process made it (moto's backends outlive a stack).
                if "AlreadyExists" not in str(exc.response.get("Error", {}).get("Code", "")):
                    raise
    return refs


def configuration_set_name(logical_id: str) -> str:
    return f"{QUEUE_PREFIX}-{logical_id}"


class EventSources:
    """The stack's pumps, schedules and taps: empty until ``wire``, stopped by ``close``."""

    def __init__(self) -> None:
        self.stream_pumps: list[StreamPump] = []
        self.queue_pumps: list[QueuePump] = []
        self.schedules: list[ScheduledFunction] = []
        self.taps: dict[str, QueueTap] = {}
        # SES's events for what was sent with the configuration set (moto publishes none).
        self.mailbox: MailboxSimulator | None = None

    def wire(
        self,
        template_path: Path,
        session: boto3.session.Session,
        dynamodb: DynamoDBClient,
        sqs: SQSClient,
        settings: Settings,
        *,
        queue_urls: dict[str, str],
        invoke: Invoker,
        now: Now,
        lanes: int,
    ) -> None:
        """The template's stream, schedule and queue events, and taps on the queues nothing consumes.

        Each pump is kept as soon as it is made, so ``close`` stops it even if a later one fails.
        """

        template = load_template(template_path)
        tables = table_names(settings)
        streams: DynamoDBStreamsClient = session.client("dynamodbstreams")

        def queue(logical_id: str | None, where: str) -> str | None:
            if logical_id is None:
                return None
            if logical_id not in queue_urls:
                raise TemplateError(f"{template_path}: {where} sends to {logical_id}, not a queue here")
            return queue_urls[logical_id]

        for source in stream_sources(template):
            arn = dynamodb.describe_table(TableName=tables[source.table])["Table"].get("LatestStreamArn")
            if not arn:
                raise TemplateError(f"{template_path}: {source.table} has no stream for {source.function}")
            pump = StreamPump(
                source,
                stream_arn=arn,
                streams=streams,
                sqs=sqs,
                failure_queue_url=queue(source.on_failure_queue, f"{source.function}.{source.event}"),
                invoke=invoke,
                now=now,
                lanes=lanes,
            )
            pump.start()
            self.stream_pumps.append(pump)
        anchor = now()
        for schedule in schedule_sources(template):
            self.schedules.append(
                ScheduledFunction(
                    schedule,
                    invoke=invoke,
                    sqs=sqs,
                    failure_queue_url=queue(
                        schedule.on_failure_queue, f"{schedule.function}.EventInvokeConfig"
                    ),
                    anchor=anchor,
                )
            )
        for queue_source in queue_sources(template):
            url = queue(queue_source.queue, f"{queue_source.function}.{queue_source.event}")
            assert url is not None
            arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
                "QueueArn"
            ]
            self.queue_pumps.append(
                QueuePump(queue_source, queue_url=url, queue_arn=arn, sqs=sqs, invoke=invoke, lanes=lanes)
            )
        feedback = feedback_wiring(template_path)
        if feedback is not None:
            url = queue(feedback.queue, "the SES feedback rule")
            assert url is not None
            self.mailbox = MailboxSimulator(
                sqs, url, configuration_set_name(feedback.configuration_set), feedback, now
            )
        for logical_id in TAPPED_QUEUES:
            if logical_id in queue_urls:
                self.taps[logical_id] = QueueTap(sqs, queue_urls[logical_id], now)

    def close(self) -> None:
        for pump in self.stream_pumps:
            pump.close()
        for queue_pump in self.queue_pumps:
            queue_pump.close()
