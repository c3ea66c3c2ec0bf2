"""Channel adapters against moto (SES v2, SNS, SQS FIFO), a stubbed client for throttling, and the
in-memory fakes the unit tests of the action Lambdas rely on.

Where moto keeps what was sent (read here, and by the local stack's outbox):
  SES v1/v2: moto.ses.models.ses_backends[account][region].sent_messages (RawMessage: id, source,
             destinations, raw_data)
  SMS:       moto.sns.models.sns_backends[account][region].sms_messages {id: (number, text)}
  Push:      sns_backends[account][region].platform_endpoints[arn].messages {id: message}
  Topics:    sns_backends[account][region].topics[arn].sent_notifications
             [(id, message, subject, attributes, group_id)]
"""

from __future__ import annotations

import email
import email.policy
import json
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber
from moto.core.models import DEFAULT_ACCOUNT_ID
from moto.ses.models import ses_backends
from moto.sns.models import sns_backends

from nudge.adapters.cs_desk import FIFO_DEDUPE_WINDOW, SqsEscalationDesk, dedupe_id
from nudge.adapters.memory import MemoryEmailSender, MemoryEscalationDesk, MemoryNotifier
from nudge.adapters.ses import SesEmailSender, build_mime, ses_tags
from nudge.adapters.sns import SnsNotifier, push_message
from nudge.backoff import Backoff
from nudge.model.channels import Email, EscalationCase, Push, Sms, WeekUsage
from nudge.model.errors import RecipientOptedOut, SendFailed, SendRejected, SendThrottled

REGION = "us-east-1"
SENDER = "Nudge <hello@mail.example.com>"
OPTED_OUT = "+15555550199"  # moto: any number ending in 99 is opted out
NOW = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)


class Sleeps:
    def __init__(self) -> None:
        self.delays: list[float] = []

    def __call__(self, delay: float) -> None:
        self.delays.append(delay)


def an_email(**changes: Any) -> Email:
    fields: dict[str, Any] = {
        "to": f"Ann <ann-{uuid.uuid4().hex[:8]}@example.org>",
        "sender": SENDER,
        "reply_to": "support@mail.example.com",
        "subject": "Two minutes to finish setting up",
        "text": "Hi Ann,\nfinish here: https://app.example.com/setup\n",
        "html": "<p>Hi Ann, <a href='https://app.example.com/setup'>finish here</a></p>",
        "unsubscribe_url": "https://app.example.com/u/v1.abc.def",
        "tags": {"rule": "finish_setup", "user": "user-1"},
    }
    fields.update(changes)
    return Email(**fields)


def a_case(**changes: Any) -> EscalationCase:
    fields: dict[str, Any] = {
        "case_id": f"case-{uuid.uuid4().hex[:8]}",
        "account_id": f"acct-{uuid.uuid4().hex[:8]}",
        "account_name": "Acme Café",
        "plan": "team",
        "mrr": 490.0,
        "seats": 12,
        "cs_owner": "Sam",
        "score": 18.0,
        "band": "low",
        "usage_trend": [
            WeekUsage(
                week_start=date(2026, 2, 9) + timedelta(weeks=i), active_users=9 - 2 * i, sessions=80 - 20 * i
            )
            for i in range(4)
        ],
        "rule": "declining_account",
        "reason": "active users down 66% over 4 weeks",
        "facts": {"summary": "3 of 9 users still active"},
        "recommended_next_step": "Book a health check call",
        "user_id": "user-1",
        "opened_at": NOW,
    }
    fields.update(changes)
    return EscalationCase(**fields)


@pytest.fixture
def sesv2(aws: None) -> Any:
    client = boto3.client("sesv2", region_name=REGION)
    client.create_email_identity(EmailIdentity="mail.example.com")
    return client


@pytest.fixture
def sns(aws: None) -> Any:
    return boto3.client("sns", region_name=REGION)


def sent_raw() -> list[Any]:
    return list(ses_backends[DEFAULT_ACCOUNT_ID][REGION].sent_messages)


# ---------------------------------------------------------------------------------- MIME


def test_the_mime_carries_one_click_unsubscribe_headers() -> None:
    # Given an email with an https unsubscribe link
    mail = an_email()

    # When it is built
    parsed = email.message_from_bytes(build_mime(mail), policy=email.policy.default)

    # Then List-Unsubscribe names it (and no mailto: nothing reads one), and List-Unsubscribe-Post
    # asks for one click (RFC 8058)
    assert parsed["List-Unsubscribe"] == "<https://app.example.com/u/v1.abc.def>"
    assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert parsed["Reply-To"] == "support@mail.example.com"


def test_the_mime_is_text_and_html_alternatives_or_text_alone() -> None:
    # Given the same email with and without html
    with_html = email.message_from_bytes(build_mime(an_email()), policy=email.policy.default)
    text_only = email.message_from_bytes(build_mime(an_email(html="")), policy=email.policy.default)

    # Then the first is multipart/alternative text+html, the second plain text
    assert with_html.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in with_html.iter_parts()] == ["text/plain", "text/html"]
    assert text_only.get_content_type() == "text/plain"
    assert text_only.get_content().startswith("Hi Ann,")


def test_a_long_unsubscribe_url_is_written_verbatim() -> None:
    # Given a URL longer than a header line usually is
    url = "https://app.example.com/u/v1." + "a" * 150 + "." + "b" * 43

    # When the MIME is built
    raw = build_mime(an_email(unsubscribe_url=url))

    # Then the header holds the URL as is, on one line, not as RFC 2047 encoded-words
    assert f"\r\nList-Unsubscribe: <{url}>\r\n".encode() in raw


def test_an_email_without_an_unsubscribe_url_gets_no_unsubscribe_headers() -> None:
    # Given a transactional email (deliver gives it no unsubscribe URL)
    parsed = email.message_from_bytes(build_mime(an_email(unsubscribe_url=None)), policy=email.policy.default)

    # Then it has neither List-Unsubscribe nor List-Unsubscribe-Post
    assert parsed["List-Unsubscribe"] is None
    assert parsed["List-Unsubscribe-Post"] is None


def test_a_non_ascii_subject_survives_encoding() -> None:
    # Given a long subject with accents and an emoji
    subject = "Café Crème, ton espace t'attend 🎉" + " très" * 20

    # When the MIME is built
    raw = build_mime(an_email(subject=subject))

    # Then it is 7-bit on the wire, in lines of at most 78, and decodes back to the same text
    assert raw.isascii()
    assert (
        max(len(line) for line in raw.split(b"\r\n\r\n")[0].split(b"\r\n") if b"Unsubscribe:" not in line)
        <= 78
    )
    assert email.message_from_bytes(raw, policy=email.policy.default)["Subject"] == subject


@pytest.mark.parametrize(
    "changes",
    [
        {"subject": "Hello\r\nBcc: eve@evil.example"},
        {"subject": "Hello\nBcc: eve@evil.example"},
        {"to": "ann@example.org\r\nBcc: eve@evil.example"},
        {"reply_to": "ann@example.org\nBcc: eve@evil.example"},
        {"sender": "hello@mail.example.com\rBcc: eve@evil.example"},
    ],
)
def test_a_line_break_in_a_header_value_cannot_add_a_header(changes: dict[str, str]) -> None:
    # Given a subject or address carrying CR/LF and a Bcc
    mail = an_email(**changes)

    # When the MIME is built, Then it is refused, and the refusal does not echo the value
    with pytest.raises(SendRejected) as caught:
        build_mime(mail)
    assert caught.value.code == "InvalidHeader"
    assert "evil" not in str(caught.value)


@pytest.mark.parametrize("to", ["ann@example.org, eve@evil.example", "not-an-address", ""])
def test_to_must_be_exactly_one_address(to: str) -> None:
    # Given a "to" naming two people, or nobody
    # When the MIME is built, Then it is refused
    with pytest.raises(SendRejected, match="InvalidAddress"):
        build_mime(an_email(to=to))


@pytest.mark.parametrize(
    "changes",
    [
        {"unsubscribe_url": "http://app.example.com/u/x"},
        {"unsubscribe_url": "https://app.example.com/u/x>, <https://evil.example/"},
    ],
)
def test_unsubscribe_targets_must_be_plain(changes: dict[str, str]) -> None:
    # Given an unsubscribe target that is not https, or that tries to close its brackets
    # When the MIME is built, Then it is refused
    with pytest.raises(SendRejected):
        build_mime(an_email(**changes))


def test_tags_are_reduced_to_the_characters_ses_accepts() -> None:
    # Given tags with spaces, dots, @ and accents
    tags = ses_tags({"rule id": "finish_setup", "user": "ann@example.org", "campagne": "été 2026"})

    # Then names and values hold only letters, digits, _ and -
    assert tags == [
        {"Name": "rule_id", "Value": "finish_setup"},
        {"Name": "user", "Value": "ann_example_org"},
        {"Name": "campagne", "Value": "_t__2026"},
    ]


# ---------------------------------------------------------------------------------- SES v2


def test_an_email_sent_through_ses_v2_lands_in_moto_with_its_unsubscribe_headers(sesv2: Any) -> None:
    # Given a verified sending domain and an email
    mail = an_email()

    # When it is sent
    message_id = SesEmailSender(sesv2).send(mail)

    # Then moto holds one raw message with that id, from our sender, carrying the headers
    [sent] = sent_raw()
    assert sent.id == message_id
    assert sent.source == SENDER
    assert mail.to.split("<")[1].rstrip(">") in sent.destinations
    raw = email.message_from_string(sent.raw_data, policy=email.policy.default)
    assert raw["List-Unsubscribe"].startswith("<https://app.example.com/u/v1.abc.def>")
    assert raw["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert raw["Subject"] == mail.subject


def test_an_unverified_sender_is_rejected(sesv2: Any) -> None:
    # Given a sender outside the verified identity
    mail = an_email(sender="someone@unverified.example")

    # When it is sent
    with pytest.raises(SendRejected) as caught:
        SesEmailSender(sesv2).send(mail)

    # Then SES refused it for good, and nothing was sent
    assert caught.value.code == "MessageRejected"
    assert "someone@unverified.example" not in str(caught.value)
    assert sent_raw() == []


def test_the_request_names_the_configuration_set_and_sanitized_tags() -> None:
    # Given a stubbed SES v2 client expecting exactly this request
    client = boto3.client("sesv2", region_name=REGION)
    # (text only: a multipart boundary is random, so only a single part is byte-for-byte stable)
    mail = an_email(to="ann@example.org", html="", tags={"rule": "finish setup"})
    with Stubber(client) as stub:
        stub.add_response(
            "send_email",
            {"MessageId": "m-1"},
            {
                "FromEmailAddress": SENDER,
                "Destination": {"ToAddresses": ["ann@example.org"]},
                "Content": {"Raw": {"Data": build_mime(mail)}},
                "EmailTags": [{"Name": "rule", "Value": "finish_setup"}],
                "ConfigurationSetName": "nudge-events",
            },
        )

        # When it is sent
        message_id = SesEmailSender(client, configuration_set="nudge-events").send(mail)

    # Then the request matched and the id came back
    assert message_id == "m-1"


def test_ses_throttling_twice_then_success_sends_once() -> None:
    # Given SES answering TooManyRequests twice, then accepting
    client = boto3.client("sesv2", region_name=REGION)
    sleeps = Sleeps()
    sender = SesEmailSender(client, backoff=Backoff(attempts=3, sleep=sleeps, rng=lambda: 1.0))
    with Stubber(client) as stub:
        for _ in range(2):
            stub.add_client_error("send_email", "TooManyRequestsException", "slow down", 429)
        stub.add_response("send_email", {"MessageId": "m-3"})

        # When an email is sent
        message_id = sender.send(an_email())

        # Then it went through on the third call, after two back-offs, and no call is left over
        stub.assert_no_pending_responses()
    assert message_id == "m-3"
    assert len(sleeps.delays) == 2


def test_ses_throttling_every_time_gives_up_with_send_throttled() -> None:
    # Given SES throttling every call
    client = boto3.client("sesv2", region_name=REGION)
    sender = SesEmailSender(client, backoff=Backoff(attempts=2, sleep=Sleeps()))
    with Stubber(client) as stub:
        for _ in range(2):
            stub.add_client_error("send_email", "TooManyRequestsException", "slow down", 429)

        # When an email is sent, Then it gives up with SendThrottled
        with pytest.raises(SendThrottled):
            sender.send(an_email())


# ---------------------------------------------------------------------------------- SMS


def test_an_sms_lands_in_moto(sns: Any) -> None:
    # Given a valid number that did not opt out
    number = "+15555550123"

    # When an SMS is sent
    message_id = SnsNotifier(sns).send_sms(Sms(to=number, text="Your export is ready"))

    # Then moto recorded it under that id
    assert sns_backends[DEFAULT_ACCOUNT_ID][REGION].sms_messages[message_id] == (
        number,
        "Your export is ready",
    )


def test_an_sms_to_an_opted_out_number_raises_recipient_opted_out(sns: Any) -> None:
    # Given a number that replied STOP
    # When an SMS is sent, Then it is refused as opted out and nothing is published
    with pytest.raises(RecipientOptedOut):
        SnsNotifier(sns).send_sms(Sms(to=OPTED_OUT, text="We miss you"))
    assert not sns_backends[DEFAULT_ACCOUNT_ID][REGION].sms_messages


class NoCalls:
    """A client that fails the test if anything reaches AWS."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"AWS was called: {name}")


def test_an_sms_is_refused_without_calling_aws_when_the_stack_sends_no_sms() -> None:
    # Given a notifier of a stack deployed with SmsEnabled=false (it may not publish SMS)
    # When an SMS is sent, Then it is refused naming the parameter, before any AWS call
    with pytest.raises(SendRejected) as caught:
        SnsNotifier(NoCalls(), sms_enabled=False).send_sms(Sms(to="+15555550123", text="hi"))
    assert caught.value.code == "SmsDisabled"
    assert "SmsEnabled=true" in caught.value.message


@pytest.mark.parametrize(
    "number", ["5555550123", "+0123456789", "+1234567", "+1234567890123456", "+1 555 555 0123"]
)
def test_a_number_that_is_not_e164_is_rejected_without_calling_aws(number: str) -> None:
    # Given a malformed number
    # When an SMS is sent, Then it is rejected before any AWS call
    with pytest.raises(SendRejected) as caught:
        SnsNotifier(NoCalls()).send_sms(Sms(to=number, text="hi"))
    assert caught.value.code == "InvalidPhoneNumber"


@pytest.mark.parametrize(
    ("sms", "attributes"),
    [
        (
            Sms(to="+15555550123", text="Code 1234", transactional=True),
            {"AWS.SNS.SMS.SMSType": {"DataType": "String", "StringValue": "Transactional"}},
        ),
        (
            Sms(to="+15555550123", text="20% off", transactional=False, sender_id="Nudge"),
            {
                "AWS.SNS.SMS.SMSType": {"DataType": "String", "StringValue": "Promotional"},
                "AWS.SNS.SMS.SenderID": {"DataType": "String", "StringValue": "Nudge"},
            },
        ),
    ],
)
def test_an_sms_is_published_with_its_type_and_sender_id(sms: Sms, attributes: dict[str, Any]) -> None:
    # Given a stubbed SNS client (moto does not keep SMS attributes) expecting this request
    client = boto3.client("sns", region_name=REGION)
    with Stubber(client) as stub:
        stub.add_response(
            "check_if_phone_number_is_opted_out", {"isOptedOut": False}, {"phoneNumber": sms.to}
        )
        stub.add_response(
            "publish",
            {"MessageId": "sms-1"},
            {"PhoneNumber": sms.to, "Message": sms.text, "MessageAttributes": attributes},
        )

        # When it is sent, Then the requests matched
        assert SnsNotifier(client).send_sms(sms) == "sms-1"
        stub.assert_no_pending_responses()


class ThrottledThenOk:
    """An SNS-like client whose publish is throttled `times` times, then succeeds."""

    def __init__(self, times: int) -> None:
        self.times = times
        self.published: list[dict[str, Any]] = []

    def check_if_phone_number_is_opted_out(self, **kwargs: Any) -> dict[str, Any]:
        return {"isOptedOut": False}

    def publish(self, **kwargs: Any) -> dict[str, Any]:
        if self.times:
            self.times -= 1
            raise ClientError({"Error": {"Code": "Throttling", "Message": "Rate exceeded"}}, "Publish")
        self.published.append(kwargs)
        return {"MessageId": f"id-{len(self.published)}"}


def test_sms_throttling_twice_then_success_publishes_once() -> None:
    # Given SNS throttling publish twice
    client, sleeps = ThrottledThenOk(times=2), Sleeps()

    # When an SMS is sent
    message_id = SnsNotifier(client, backoff=Backoff(sleep=sleeps)).send_sms(
        Sms(to="+15555550123", text="hi")
    )

    # Then it was published exactly once, after two back-offs
    assert message_id == "id-1"
    assert len(client.published) == 1
    assert len(sleeps.delays) == 2


# ---------------------------------------------------------------------------------- push


@pytest.fixture
def endpoint(sns: Any) -> str:
    app = sns.create_platform_application(
        Name=f"app-{uuid.uuid4().hex[:8]}", Platform="GCM", Attributes={"PlatformCredential": "key"}
    )["PlatformApplicationArn"]
    return str(
        sns.create_platform_endpoint(PlatformApplicationArn=app, Token=uuid.uuid4().hex)["EndpointArn"]
    )


def test_a_push_lands_on_its_endpoint_with_a_payload_per_platform(sns: Any, endpoint: str) -> None:
    # Given a registered device
    push = Push(
        endpoint_arn=endpoint, title="Welcome back", body="Your projects are waiting", data={"screen": "home"}
    )

    # When a push is sent
    message_id = SnsNotifier(sns).send_push(push)

    # Then the endpoint holds the JSON message: a default, an FCM v1 and an APNs payload
    stored = json.loads(
        sns_backends[DEFAULT_ACCOUNT_ID][REGION].platform_endpoints[endpoint].messages[message_id]
    )
    assert stored["default"] == "Your projects are waiting"
    fcm = json.loads(stored["GCM"])["fcmV1Message"]["message"]
    assert fcm == {
        "notification": {"title": "Welcome back", "body": "Your projects are waiting"},
        "data": {"screen": "home"},
    }
    apns = json.loads(stored["APNS"])
    assert apns == {
        "aps": {"alert": {"title": "Welcome back", "body": "Your projects are waiting"}},
        "screen": "home",
    }
    assert stored["APNS_SANDBOX"] == stored["APNS"]


def test_a_data_key_named_aps_cannot_replace_the_apns_alert() -> None:
    # Given push data that collides with APNs' reserved key
    message = json.loads(push_message(Push("arn", "T", "B", {"aps": "x", "k": "v"})))

    # Then the alert survives and the other data is kept
    assert json.loads(message["APNS"]) == {"aps": {"alert": {"title": "T", "body": "B"}}, "k": "v"}


def test_a_push_to_a_disabled_endpoint_is_rejected(sns: Any, endpoint: str) -> None:
    # Given an endpoint disabled after its token went stale
    sns.set_endpoint_attributes(EndpointArn=endpoint, Attributes={"Enabled": "false"})

    # When a push is sent, Then it is rejected as EndpointDisabled (and the ARN is not in the error)
    with pytest.raises(SendRejected) as caught:
        SnsNotifier(sns).send_push(Push(endpoint_arn=endpoint, title="t", body="b"))
    assert caught.value.code == "EndpointDisabled"
    assert endpoint not in str(caught.value)


# ---------------------------------------------------------------------------------- escalation


@pytest.fixture
def fifo(aws: None) -> tuple[Any, str]:
    sqs = boto3.client("sqs", region_name=REGION)
    url = sqs.create_queue(
        QueueName=f"escalations-{uuid.uuid4().hex[:8]}.fifo", Attributes={"FifoQueue": "true"}
    )["QueueUrl"]
    return sqs, url


def receive_all(sqs: Any, url: str) -> list[dict[str, Any]]:
    received = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, MessageSystemAttributeNames=["All"])
    return list(received.get("Messages", []))


def test_the_same_account_rule_and_day_opens_one_case(fifo: tuple[Any, str], sns: Any) -> None:
    # Given a FIFO queue, a notice topic and a case
    sqs, url = fifo
    topic = sns.create_topic(Name=f"cs-{uuid.uuid4().hex[:8]}")["TopicArn"]
    desk = SqsEscalationDesk(sqs, url, sns, topic)
    case = a_case()

    # When it is opened twice the same day (a retry, a redelivery)
    desk.open(case, NOW.date())
    desk.open(case.model_copy(update={"case_id": "case-retry"}), NOW.date())

    # Then one message is queued, grouped by account, and its body is the case
    [message] = receive_all(sqs, url)
    assert message["Attributes"]["MessageGroupId"] == case.account_id
    assert message["Attributes"]["MessageDeduplicationId"] == dedupe_id(
        case.account_id, case.rule, NOW.date()
    )
    assert EscalationCase.model_validate_json(message["Body"]) == case


def test_another_rule_for_the_same_account_is_another_case(fifo: tuple[Any, str]) -> None:
    # Given a case already opened today
    sqs, url = fifo
    desk = SqsEscalationDesk(sqs, url)
    case = a_case()
    desk.open(case, NOW.date())

    # When the same account escalates under another rule
    desk.open(case.model_copy(update={"rule": "seats_dropped"}), NOW.date())

    # Then both are queued
    assert len(receive_all(sqs, url)) == 2


def test_opening_a_case_publishes_a_short_notice_without_user_data(fifo: tuple[Any, str], sns: Any) -> None:
    # Given a notice topic and a case with a long account name
    sqs, url = fifo
    topic = sns.create_topic(Name=f"cs-{uuid.uuid4().hex[:8]}")["TopicArn"]
    case = a_case(account_name="Acme Café " + "Holdings " * 20, facts={"email": "ann@example.org"})

    # When it is opened
    SqsEscalationDesk(sqs, url, sns, topic).open(case, NOW.date())

    # Then one notice went out: an ASCII subject of at most 100 chars, naming account and owner only
    [(_, message, subject, _, _)] = sns_backends[DEFAULT_ACCOUNT_ID][REGION].topics[topic].sent_notifications
    assert subject is not None
    assert subject.startswith("At-risk account: Acme Cafe Holdings")
    assert len(subject) <= 100
    assert subject.isascii()
    assert "CS owner: Sam" in message
    assert case.case_id in message
    assert "ann@example.org" not in message
    assert "user-1" not in message


def test_a_failed_notice_does_not_undo_the_queued_case(fifo: tuple[Any, str], sns: Any) -> None:
    # Given a topic that does not exist
    sqs, url = fifo
    missing = f"arn:aws:sns:{REGION}:{DEFAULT_ACCOUNT_ID}:no-such-topic"

    # When a case is opened
    message_id = SqsEscalationDesk(sqs, url, sns, missing).open(a_case(), NOW.date())

    # Then the case is queued all the same
    [message] = receive_all(sqs, url)
    assert message["MessageId"] == message_id


def test_a_queue_that_does_not_exist_rejects_the_case(aws: None) -> None:
    # Given a wrong queue URL
    sqs = boto3.client("sqs", region_name=REGION)
    url = f"https://sqs.{REGION}.amazonaws.com/{DEFAULT_ACCOUNT_ID}/nope.fifo"

    # When a case is opened, Then it is a send error, not a botocore one
    with pytest.raises(SendRejected):
        SqsEscalationDesk(sqs, url).open(a_case(), NOW.date())


def test_the_dedupe_id_is_stable_short_and_specific() -> None:
    # Given account, rule and day
    key = dedupe_id("acct-1", "declining", date(2026, 3, 2))

    # Then it is 64 hex chars, the same every time, and differs when any part differs
    assert len(key) == 64
    assert int(key, 16) >= 0
    assert key == dedupe_id("acct-1", "declining", date(2026, 3, 2))
    assert (
        len(
            {
                key,
                dedupe_id("acct-1", "declining", date(2026, 3, 3)),
                dedupe_id("acct-1", "other", date(2026, 3, 2)),
                dedupe_id("acct-2", "declining", date(2026, 3, 2)),
            }
        )
        == 4
    )
    assert dedupe_id("a" * 5000, "r", date(2026, 3, 2)) != dedupe_id("a" * 4999, "r", date(2026, 3, 2))


def test_a_case_keeps_at_most_four_weeks_of_trend() -> None:
    # Given five weeks of usage, Then the case refuses them
    weeks = [
        WeekUsage(week_start=date(2026, 1, 5) + timedelta(weeks=i), active_users=1, sessions=1)
        for i in range(5)
    ]
    with pytest.raises(ValueError, match="4"):
        a_case(usage_trend=weeks)


# ---------------------------------------------------------------------------------- fakes


def test_the_email_fake_records_sends_and_raises_queued_failures_in_order() -> None:
    # Given a fake told to fail twice
    fake = MemoryEmailSender(fail_with=[SendThrottled("x"), SendFailed("y")])

    # When three emails are sent
    outcomes: list[str] = []
    for _ in range(3):
        try:
            outcomes.append(fake.send(an_email()))
        except (SendThrottled, SendFailed) as exc:
            outcomes.append(type(exc).__name__)

    # Then the failures came first, in order, and only the third was recorded
    assert outcomes == ["SendThrottled", "SendFailed", "fake-1"]
    assert len(fake.sent) == 1


def test_the_email_fake_refuses_header_injection_like_ses_would() -> None:
    # Given the fake, When an email with a CR/LF subject is sent, Then it is refused and not recorded
    fake = MemoryEmailSender()
    with pytest.raises(SendRejected):
        fake.send(an_email(subject="hi\r\nBcc: eve@evil.example"))
    assert fake.sent == []


def test_the_notifier_fake_honours_opt_outs_and_validates_numbers() -> None:
    # Given a fake with one opted-out number
    fake = MemoryNotifier(opted_out={"+447700900123"})

    # When SMS go to it, a good number, and a bad one, and a push too
    first = fake.send_sms(Sms(to="+15555550123", text="hi"))
    with pytest.raises(RecipientOptedOut):
        fake.send_sms(Sms(to="+447700900123", text="hi"))
    with pytest.raises(SendRejected):
        fake.send_sms(Sms(to="12345", text="hi"))
    second = fake.send_push(Push("arn:endpoint", "t", "b"))

    # Then only the good ones were recorded
    assert (first, second) == ("fake-1", "fake-2")
    assert [s.to for s in fake.sms] == ["+15555550123"]
    assert len(fake.pushes) == 1


def test_the_escalation_fake_dedupes_like_fifo() -> None:
    # Given the fake desk and a case
    desk = MemoryEscalationDesk()
    case = a_case()

    # When it is opened twice the same day, then once the next day
    first = desk.open(case, NOW.date())
    again = desk.open(case, NOW.date())
    desk.open(case, NOW.date() + timedelta(days=1))

    # Then the second open is the first case again, and the next day is a new case
    assert again == first
    assert len(desk.cases) == 2
    assert desk.notices[0].startswith("At-risk account: Acme Cafe")


def test_the_escalation_fake_with_the_fifo_window_forgets_after_five_minutes() -> None:
    # Given the fake with SQS's dedupe window
    desk = MemoryEscalationDesk(window=FIFO_DEDUPE_WINDOW)
    case = a_case()

    # When the same case is opened again just inside, then just outside the window
    desk.open(case, NOW.date())
    desk.open(case.model_copy(update={"opened_at": NOW + timedelta(minutes=4)}), NOW.date())
    desk.open(case.model_copy(update={"opened_at": NOW + timedelta(minutes=6)}), NOW.date())

    # Then the first retry was dropped and the late one is a second case, as SQS would do
    assert len(desk.cases) == 2
