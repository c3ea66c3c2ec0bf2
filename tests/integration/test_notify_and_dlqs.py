"""The notify function (push and SMS) handling real deliveries, and every channel queue's DLQ.

The real dispatch and notify handlers against moto (tables and queues from template.yaml, a push
platform application, SNS keeping what it sent): every delivery twice, sent once; SNS throttling
past the adapter's retries reported as a batch item failure, then sent once when redelivered.
Then a poison message on each channel queue (email, notify, escalation), received as Lambda's
event source mapping does until the queue's redrive policy, the one template.yaml sets, moves it
to the DLQ the template names.
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import boto3
import pytest
from aws_lambda_powertools.utilities.parameters.base import DEFAULT_PROVIDERS
from aws_lambda_powertools.utilities.parameters.ssm import SSMProvider
from moto.core.models import DEFAULT_ACCOUNT_ID
from moto.sns.models import sns_backends

from nudge import bootstrap, clock
from nudge.adapters.dynamo.ledger import DynamoLedger
from nudge.adapters.dynamo.usage import DynamoUsageStore
from nudge.model.decisions import Decision
from nudge.model.ledger import LedgerEntry
from nudge.model.messages import Identify, Message, Track
from nudge.model.queue import DecisionBatch
from nudge.rulebook.plan import load_plan
from nudge.services.ingest import ingest
from nudge.settings import Settings
from nudge.tools.local.aws import HandlerFailed, create_queues, create_usage_resources
from nudge.tools.local.queues import QueuePump, sqs_record
from nudge.tools.local.sources import queue_sources
from nudge.tools.local.template import load_template
from tests.shipped import ONE_SHOT_DIR, UNHELD, load_handler

REPO = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 11, 26, 17, 0, tzinfo=UTC)  # noon in New York: outside quiet hours
REGION = "us-east-1"
PHONE = "+15555550123"  # moto: a number not ending in 99 has not opted out
# What the notify adapter tries before giving up on a throttled publish (adapters.retry.DEFAULT_BACKOFF).
SEND_ATTEMPTS = 4


class Context:
    function_name = "notify"
    memory_limit_in_mb = 512
    invoked_function_arn = f"arn:aws:lambda:{REGION}:{DEFAULT_ACCOUNT_ID}:function:notify"
    aws_request_id = "req-notify"

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


@dataclass
class World:
    template: Path
    settings: Settings
    queues: dict[str, str]
    push_app: str
    handlers: dict[str, ModuleType]  # template function logical id -> its module, loaded from CodeUri

    def handler(self, function: str) -> ModuleType:
        if function not in self.handlers:
            code_uri = load_template(self.template)["Resources"][function]["Properties"]["CodeUri"]
            self.handlers[function] = load_handler(
                REPO / code_uri / "app.py", f"{function}_{uuid.uuid4().hex[:8]}"
            )
        return self.handlers[function]

    def take(self, queue: str) -> list[dict[str, Any]]:
        """Everything on `queue`, as Lambda's SQS records (the messages leave the queue)."""
        sqs = boto3.client("sqs")
        records: list[dict[str, Any]] = []
        while got := sqs.receive_message(
            QueueUrl=self.queues[queue], MaxNumberOfMessages=10, AttributeNames=["All"]
        ).get("Messages", []):
            for message in got:
                records.append(sqs_record(message, self.arn(queue)))
                sqs.delete_message(QueueUrl=self.queues[queue], ReceiptHandle=message["ReceiptHandle"])
        return records

    def arn(self, queue: str) -> str:
        attributes = boto3.client("sqs").get_queue_attributes(
            QueueUrl=self.queues[queue], AttributeNames=["QueueArn"]
        )
        return str(attributes["Attributes"]["QueueArn"])

    def dispatch(self, *batches: DecisionBatch) -> None:
        """The batches through the real dispatch function, every record twice."""
        sqs = boto3.client("sqs")
        for batch in batches:
            sqs.send_message(QueueUrl=self.queues["DecisionQueue"], MessageBody=batch.model_dump_json())
        dispatch = self.handler("DispatchFunction")
        # Holdouts off: a test user id must not hash into a control group.
        dispatch.decisions.service = dataclasses.replace(dispatch.decisions.service, rules=UNHELD)
        assert dispatch.handler(twice(self.take("DecisionQueue")), Context()) == {"batchItemFailures": []}

    def entry(self, user: str, decision_id: str) -> LedgerEntry:
        found = DynamoLedger(boto3.client("dynamodb"), self.settings.ledger_table).get(
            f"USER#{user}", decision_id
        )
        assert found is not None
        return found


def twice(records: list[dict[str, Any]]) -> dict[str, Any]:
    """At-least-once delivery at its worst: every record twice in one batch."""
    return {"Records": [r for r in records for _ in range(2)]}


@pytest.fixture
def world(
    aws: None, template_path: Path, monkeypatch: pytest.MonkeyPatch, use_clock: Callable[[clock.Source], None]
) -> Iterator[World]:
    suffix = uuid.uuid4().hex[:8]
    settings = Settings(
        usage_table=f"usage-{suffix}",
        ledger_table=f"ledger-{suffix}",
        keys_path=f"/nudge/notify-{suffix}/keys",
        unsubscribe_secret_param=f"/nudge/notify-{suffix}/unsubscribe-secret",
        suppression_table=f"suppression-{suffix}",
        suppression_secret_param=f"/nudge/notify-{suffix}/suppression-secret",
    )
    create_usage_resources(boto3.client("dynamodb"), boto3.client("ssm"), template_path, settings, ["wk"])
    queues = create_queues(boto3.client("sqs"), template_path, f"notify-{suffix}")
    for secret in (settings.unsubscribe_secret_param, settings.suppression_secret_param):
        boto3.client("ssm").put_parameter(Name=secret, Value="s" * 32, Type="SecureString", Overwrite=True)
    boto3.client("ses").verify_email_identity(EmailAddress="hello@acme.example")
    sns = boto3.client("sns")
    push_app = sns.create_platform_application(
        Name=f"acme-{suffix}", Platform="GCM", Attributes={"PlatformCredential": "fcm-server-key"}
    )["PlatformApplicationArn"]
    env = {
        "NUDGE_USAGE_TABLE": settings.usage_table,
        "NUDGE_LEDGER_TABLE": settings.ledger_table,
        "NUDGE_RULES_DIR": str(ONE_SHOT_DIR),
        "NUDGE_EMAIL_QUEUE_URL": queues["EmailQueue"],
        "NUDGE_NOTIFY_QUEUE_URL": queues["NotifyQueue"],
        "NUDGE_ESCALATION_QUEUE_URL": queues["EscalationQueue"],
        "NUDGE_CS_QUEUE_URL": queues["CsQueue"],
        "NUDGE_CS_TOPIC_ARN": sns.create_topic(Name=f"cs-{suffix}")["TopicArn"],
        "NUDGE_PUSH_APPLICATION_ARN": push_app,
        "NUDGE_UNSUBSCRIBE_SECRET_PARAM": settings.unsubscribe_secret_param,
        "NUDGE_UNSUBSCRIBE_URL": "https://api.example/v1/unsubscribe",
        "NUDGE_SUPPRESSION_TABLE": settings.suppression_table,
        "NUDGE_SUPPRESSION_SECRET_PARAM": settings.suppression_secret_param,
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    # A fresh SSM provider (Powertools keeps one per process, with its cache), as a cold start has;
    # whatever was there before comes back after the test.
    monkeypatch.setitem(DEFAULT_PROVIDERS, "ssm", SSMProvider())
    bootstrap.reset()
    use_clock(lambda: NOW)
    try:
        yield World(template_path, settings, queues, push_app, {})
    finally:
        bootstrap.reset()


def a_phone_user(world: World, **traits: Any) -> str:
    """A user who said yes to push and SMS, with a phone number and a device token."""
    user = f"n-{uuid.uuid4().hex[:8]}"
    messages: list[Message] = [
        Track(userId=user, event="signed_up", timestamp=NOW, messageId=f"{user}-s"),
        Identify(
            userId=user,
            traits={
                "first_name": "Ada",
                "timezone": "America/New_York",
                "consent": {"push": True, "sms": True},
                **traits,
            },
            timestamp=NOW,
            messageId=f"{user}-i",
        ),
    ]
    store = DynamoUsageStore(
        boto3.client("dynamodb"), world.settings.usage_table, world.settings.rollup_shards
    )
    assert not ingest(list(enumerate(messages)), load_plan(ONE_SHOT_DIR), store, NOW).errors
    return user


def rescue(user: str, channel: str) -> DecisionBatch:
    """One evaluation's decision: the declining-usage rescue, by push or by SMS."""
    spec = UNHELD.trigger_by_id["rescue_declining"].spec
    decision = Decision(
        decision_id=f"d-{channel}-{user}",
        user=user,
        account=None,
        rule="rescue_declining",
        kind=spec.kind,
        action=channel,
        channel=channel,
        template=spec.template,
        priority=spec.priority,
        reason="test",
        facts={"sessions last week": 1},
        decided_at=NOW,
    )
    return DecisionBatch(user=user, decided_at=NOW, decisions=[decision])


def sms_to(number: str) -> list[str]:
    return [
        text for to, text in sns_backends[DEFAULT_ACCOUNT_ID][REGION].sms_messages.values() if to == number
    ]


def pushes_for(push_app: str, token: str) -> list[dict[str, Any]]:
    backend = sns_backends[DEFAULT_ACCOUNT_ID][REGION]
    return [
        json.loads(message)
        for endpoint in backend.platform_endpoints.values()
        if endpoint.application.arn == push_app and endpoint.token == token
        for message in endpoint.messages.values()
    ]


# -------------------------------------------------------------------- dispatch -> notify -> SNS


def test_push_and_sms_delivered_twice_through_dispatch_and_notify_are_sent_once(world: World) -> None:
    # Given a user reached by push and another by SMS, each with one rescue decision on the queue
    token = f"device-{uuid.uuid4().hex}"
    pushed = a_phone_user(world, push_token=token)
    texted = a_phone_user(world, phone=PHONE)
    # When dispatch gets each batch twice, and notify gets every delivery it routed twice
    world.dispatch(rescue(pushed, "push"), rescue(texted, "sms"))
    deliveries = world.take("NotifyQueue")
    assert sorted(json.loads(r["body"])["channel"] for r in deliveries) == ["push", "push", "sms", "sms"]
    notify = world.handler("NotifyFunction")
    assert notify.handler(twice(deliveries), Context()) == {"batchItemFailures": []}
    # Then one push reached the device's endpoint, with a payload per platform, and the ledger says so
    [push] = pushes_for(world.push_app, token)
    assert json.loads(push["GCM"])["fcmV1Message"]["message"]["data"] == {"rule": "rescue_declining"}
    push_entry = world.entry(pushed, f"d-push-{pushed}")
    assert (push_entry.status, push_entry.outcome) == ("sent", "send")
    # ...and one SMS went to the number, marketing so with its way out, recorded sent under SNS's id
    [text] = sms_to(PHONE)
    assert text.endswith("Reply STOP to opt out.")
    sms_entry = world.entry(texted, f"d-sms-{texted}")
    assert sms_entry.status == "sent"
    assert sns_backends[DEFAULT_ACCOUNT_ID][REGION].sms_messages[sms_entry.provider_id] == (PHONE, text)


def test_a_push_endpoint_sns_disabled_is_marked_and_the_token_never_used_again(world: World) -> None:
    # Given a user whose device's endpoint SNS has disabled (Enabled=false: the app was uninstalled)
    token = f"device-{uuid.uuid4().hex}"
    pushed = a_phone_user(world, push_token=token)
    sns = boto3.client("sns")
    arn = sns.create_platform_endpoint(PlatformApplicationArn=world.push_app, Token=token)["EndpointArn"]
    sns.set_endpoint_attributes(EndpointArn=arn, Attributes={"Enabled": "false"})
    # When a rescue push goes through dispatch and notify
    world.dispatch(rescue(pushed, "push"))
    notify = world.handler("NotifyFunction")
    assert notify.handler({"Records": world.take("NotifyQueue")}, Context()) == {"batchItemFailures": []}
    # Then it failed as SNS said, and the token is on the suppression list
    entry = world.entry(pushed, f"d-push-{pushed}")
    assert (entry.status, entry.reason) == ("failed", "EndpointDisabled")
    # When the next push decision for the user is dispatched
    later = rescue(pushed, "push")
    later.decisions[0].decision_id = f"d-push-again-{pushed}"
    world.dispatch(later)
    # Then it is suppressed by the list, never routed to notify, and nothing reached the endpoint
    again = world.entry(pushed, f"d-push-again-{pushed}")
    assert (again.outcome, again.reason) == ("suppressed", "suppression_list")
    assert world.take("NotifyQueue") == []
    assert pushes_for(world.push_app, token) == []


def test_sns_throttling_past_the_retries_is_a_batch_item_failure_and_the_redelivery_sends_once(
    world: World,
) -> None:
    # Given an SMS and a push routed to the notify queue, and SNS throttling every SMS publish of
    # the first delivery (pushes go through)
    texted = a_phone_user(world, phone=PHONE)
    token = f"device-{uuid.uuid4().hex}"
    pushed = a_phone_user(world, push_token=token)
    world.dispatch(rescue(texted, "sms"), rescue(pushed, "push"))
    routed = {json.loads(r["body"])["channel"]: r for r in world.take("NotifyQueue")}
    notify = world.handler("NotifyFunction")
    publishes: list[str] = []

    def throttled(params: dict[str, Any], **_: Any) -> tuple[Any, dict[str, Any]] | None:
        if "PhoneNumber" not in params["body"]:
            return None  # a push: on to SNS
        publishes.append("throttled" if len(publishes) < SEND_ATTEMPTS else "through")
        if publishes[-1] == "through":
            return None
        return SimpleNamespace(status_code=400), {
            "Error": {"Code": "Throttling", "Message": "Rate exceeded"},
            "ResponseMetadata": {"HTTPStatusCode": 400},
        }

    notify.deliveries.service.ports.channels.notifier.client.meta.events.register(
        "before-call.sns.Publish", throttled
    )

    # When notify handles the batch while SNS throttles the SMS
    answer = notify.handler({"Records": [routed["sms"], routed["push"]]}, Context())

    # Then the batch reports the SMS failed (the queue redelivers it) after every attempt of the
    # adapter, nothing was texted and its ledger entry is back to queued; the push went out
    assert answer == {"batchItemFailures": [{"itemIdentifier": routed["sms"]["messageId"]}]}
    assert publishes == ["throttled"] * SEND_ATTEMPTS
    assert sms_to(PHONE) == []
    assert world.entry(texted, f"d-sms-{texted}").status == "queued"
    assert len(pushes_for(world.push_app, token)) == 1

    # When the queue redelivers the SMS (twice over: SQS may) with SNS accepting again
    again = {**routed["sms"], "attributes": {**routed["sms"]["attributes"], "ApproximateReceiveCount": "2"}}
    assert notify.handler(twice([again]), Context()) == {"batchItemFailures": []}

    # Then it is sent once, and the ledger says sent
    assert len(sms_to(PHONE)) == 1
    assert publishes == ["throttled"] * SEND_ATTEMPTS + ["through"]
    assert world.entry(texted, f"d-sms-{texted}").status == "sent"


# ------------------------------------------------------------------------------ poison -> DLQ


@pytest.mark.parametrize("queue", ["EmailQueue", "NotifyQueue", "EscalationQueue"])
def test_a_poison_message_on_a_channel_queue_ends_in_the_dlq_the_template_names(
    world: World, queue: str
) -> None:
    # Given the queue's redrive policy as template.yaml declares it, which is what moto applies
    template = load_template(world.template)
    declared = template["Resources"][queue]["Properties"]["RedrivePolicy"]
    dlq = declared["deadLetterTargetArn"]["Fn::GetAtt"][0]
    max_receives = int(declared["maxReceiveCount"])
    sqs = boto3.client("sqs")
    applied = json.loads(
        sqs.get_queue_attributes(QueueUrl=world.queues[queue], AttributeNames=["RedrivePolicy"])[
            "Attributes"
        ]["RedrivePolicy"]
    )
    assert applied == {"deadLetterTargetArn": world.arn(dlq), "maxReceiveCount": max_receives}
    # ...the function the template feeds from that queue, with its batch size and partial failures
    [source] = [s for s in queue_sources(template) if s.queue == queue]
    handler = world.handler(source.function)
    # ...and a message on it that is no delivery at all
    poison = '{"not": "a delivery"}'
    sqs.send_message(QueueUrl=world.queues[queue], MessageBody=poison)
    seen: list[str] = []

    def invoke(function: str, event: dict[str, Any]) -> dict[str, Any]:
        assert function == source.function
        seen.extend(r["body"] for r in event["Records"])
        try:
            answer: dict[str, Any] = handler.handler(event, Context())
        except Exception as exc:  # the function failed: Lambda returns the whole batch to the queue
            raise HandlerFailed(str(exc)) from exc
        return answer

    pump = QueuePump(
        source, queue_url=world.queues[queue], queue_arn=world.arn(queue), sqs=sqs, invoke=invoke
    )

    # When Lambda's event source mapping keeps receiving it (failures made visible again at once)
    pump.pump()
    pump.close()

    # Then the function saw it exactly maxReceiveCount times, and it now waits in the DLQ
    assert seen == [poison] * max_receives
    dead = sqs.receive_message(QueueUrl=world.queues[dlq], MaxNumberOfMessages=10).get("Messages", [])
    assert [m["Body"] for m in dead] == [poison]
    assert sqs.receive_message(QueueUrl=world.queues[queue]).get("Messages", []) == []


def test_a_poison_message_does_not_hold_back_the_delivery_beside_it(world: World) -> None:
    # Given a poison message and a real push delivery in one batch on the notify queue
    token = f"device-{uuid.uuid4().hex}"
    pushed = a_phone_user(world, push_token=token)
    world.dispatch(rescue(pushed, "push"))
    [delivery, _copy] = world.take("NotifyQueue")
    poison = {**delivery, "messageId": str(uuid.uuid4()), "body": '{"not": "a delivery"}'}

    # When notify handles the batch
    answer = world.handler("NotifyFunction").handler({"Records": [poison, delivery]}, Context())

    # Then only the poison message is reported failed, and the push went out
    assert answer == {"batchItemFailures": [{"itemIdentifier": poison["messageId"]}]}
    assert len(pushes_for(world.push_app, token)) == 1
    assert world.entry(pushed, f"d-push-{pushed}").status == "sent"


def test_a_stack_deployed_without_sms_fails_an_sms_decision_naming_the_parameter(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the notify function of a stack deployed with SmsEnabled=false (no IAM grant to publish SMS)
    monkeypatch.setenv("NUDGE_SMS_ENABLED", "false")
    bootstrap.reset()
    texted = a_phone_user(world, phone=PHONE)
    world.dispatch(rescue(texted, "sms"))
    # When it handles an SMS delivery (twice)
    answer = world.handler("NotifyFunction").handler(twice(world.take("NotifyQueue")), Context())
    # Then nothing is published or retried, and the ledger says why, in the parameter's words
    assert answer == {"batchItemFailures": []}
    assert sms_to(PHONE) == []
    entry = world.entry(texted, f"d-sms-{texted}")
    assert (entry.status, entry.reason) == ("failed", "SmsDisabled")
