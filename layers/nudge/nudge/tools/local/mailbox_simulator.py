"""SES's mailbox simulator and event publishing, for the local stack (moto does neither).

moto's SES keeps what was sent but publishes no configuration-set event (FIELD-NOTES, "SES
feedback"), so the feedback function would never run locally. This module stands in for the part of
SES and EventBridge template.yaml declares: for each email sent *with the template's configuration
set*, the events its destination's MatchingEventTypes name, as SES would publish them for SES's
mailbox-simulator addresses, wrapped as EventBridge delivers them to the rule's target queue when the
rule's detail-types match. The feedback function then runs on them through the queue pump, as in AWS.

    success@simulator.amazonses.com          Send, Delivery
    bounce@simulator.amazonses.com           Send, Bounce (Permanent / General, 5.1.1)
    complaint@simulator.amazonses.com        Send, Delivery, Complaint (abuse)
    suppressionlist@simulator.amazonses.com  Send, Bounce (Permanent / OnAccountSuppressionList)
    ooto@simulator.amazonses.com             Send, Delivery (the auto-reply is not an event)
    any other address                        Send, Delivery (the local stack delivers everything)

A `+label` in the local part is ignored, as SES does (bounce+alice@... bounces). The message id,
recipient and tags are the real ones: the tags and configuration set are read from the SendEmail
request itself (``capture_send_tags`` wraps moto's SES v2 handler), since moto keeps neither.

Opens and clicks are a reader's doing, not the address's: ``engage`` publishes an Open or Click for
one sent message (the demo's simulated readers, and `POST /_local/email/{message_id}/open|click`).
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email import message_from_string
from email.utils import getaddresses, parseaddr
from pathlib import Path
from typing import TYPE_CHECKING, Any

from moto.ses.models import ses_backends
from moto.sesv2.responses import SESV2Response

from nudge.tools.local.aws import ACCOUNT_ID, REGION
from nudge.tools.local.template import TemplateError, load_template

if TYPE_CHECKING:
    from mypy_boto3_sqs.client import SQSClient

SIMULATOR_DOMAIN = "simulator.amazonses.com"
_patch = threading.Lock()
# SES message id -> (configuration set, tags) of each SendEmail the local moto server answered.
_SENT: dict[str, tuple[str, dict[str, str]]] = {}

# CloudFormation's MatchingEventTypes -> SES eventType and EventBridge detail-type.
EVENT_TYPES: Mapping[str, tuple[str, str]] = {
    "send": ("Send", "Email Sent"),
    "delivery": ("Delivery", "Email Delivered"),
    "bounce": ("Bounce", "Email Bounced"),
    "complaint": ("Complaint", "Email Complaint Received"),
    "reject": ("Reject", "Email Rejected"),
    "deliveryDelay": ("DeliveryDelay", "Email Delivery Delayed"),
    "renderingFailure": ("Rendering Failure", "Email Rendering Failed"),
    "open": ("Open", "Email Opened"),
    "click": ("Click", "Email Clicked"),
}


def capture_send_tags() -> None:
    """Wrap moto's SES v2 SendEmail so the configuration set and tags of each message are kept
    (moto drops them). Idempotent; what moto answers is unchanged."""
    with _patch:
        original = SESV2Response.send_email
        if getattr(original, "_nudge_local", False):
            return

        def send_email(self: SESV2Response) -> str:
            answer = original(self)
            params = json.loads(self.body)
            tags = {str(t["Name"]): str(t["Value"]) for t in params.get("EmailTags") or []}
            _SENT[json.loads(answer)["MessageId"]] = (str(params.get("ConfigurationSetName") or ""), tags)
            return answer

        send_email._nudge_local = True  # type: ignore[attr-defined]
        SESV2Response.send_email = send_email  # type: ignore[method-assign]


@dataclass(frozen=True)
class FeedbackWiring:
    """What template.yaml says about SES feedback: the configuration set's logical id, the event
    types its destination publishes, the rule's detail-types and its target queue's logical id."""

    configuration_set: str
    event_types: tuple[str, ...]
    detail_types: tuple[str, ...]
    queue: str


def feedback_wiring(template_path: Path) -> FeedbackWiring | None:
    """The template's SES configuration set, destination and rule to a queue; None if it has none."""
    resources: dict[str, Any] = load_template(template_path)["Resources"]
    sets = [lid for lid, r in resources.items() if r.get("Type") == "AWS::SES::ConfigurationSet"]
    if not sets:
        return None
    configuration_set = sets[0]
    event_types: list[str] = []
    for resource in resources.values():
        props = resource.get("Properties") or {}
        if resource.get("Type") == "AWS::SES::ConfigurationSetEventDestination" and props.get(
            "ConfigurationSetName"
        ) == {"Ref": configuration_set}:
            destination = props.get("EventDestination") or {}
            if destination.get("Enabled", False) and "EventBridgeDestination" in destination:
                event_types += [str(t) for t in destination.get("MatchingEventTypes") or []]
    for logical_id, resource in resources.items():
        props = resource.get("Properties") or {}
        pattern = props.get("EventPattern") or {}
        if resource.get("Type") != "AWS::Events::Rule" or pattern.get("source") != ["aws.ses"]:
            continue
        for target in props.get("Targets") or []:
            arn = target.get("Arn")
            if isinstance(arn, dict) and "Fn::GetAtt" in arn:
                return FeedbackWiring(
                    configuration_set=configuration_set,
                    event_types=tuple(event_types),
                    detail_types=tuple(str(t) for t in pattern.get("detail-type") or []),
                    queue=str(arn["Fn::GetAtt"][0]),
                )
        raise TemplateError(f"{template_path}: {logical_id} has no queue target the local stack can feed")
    return None


def _outcome(address: str) -> tuple[str, ...]:
    """The simulator's events for a recipient, after Send."""
    local, _, domain = parseaddr(address)[1].lower().rpartition("@")
    if domain != SIMULATOR_DOMAIN:
        return ("delivery",)
    box = local.split("+", 1)[0]
    if box in ("bounce", "suppressionlist"):
        return ("bounce",)
    if box == "complaint":
        return ("delivery", "complaint")
    return ("delivery",)


class MailboxSimulator:
    """Publishes the configuration set's events for what moto's SES sent (``pump``) and for readers'
    opens and clicks (``engage``), onto the feedback rule's target queue."""

    def __init__(
        self, sqs: SQSClient, queue_url: str, configuration_set: str, wiring: FeedbackWiring, now: Any
    ) -> None:
        self.sqs = sqs
        self.queue_url = queue_url
        self.configuration_set = configuration_set  # the local name
        self.wiring = wiring
        self.now = now
        self.seen: set[str] = set()
        # moto's list of sent messages only grows: each pump looks at what was added since the last
        # one (a pump going over every message sent so far made a replay quadratic). A shorter list
        # is a new one (moto reset): looked at from its start, `seen` keeping ids from publishing twice.
        self._looked_at = 0
        self.lock = threading.Lock()

    def pump(self) -> int:
        """Publish the events of every message sent since the last pump; how many were published."""
        with self.lock:
            published = 0
            sent_messages = list(ses_backends[ACCOUNT_ID][REGION].sent_messages)
            start = self._looked_at if self._looked_at <= len(sent_messages) else 0
            self._looked_at = len(sent_messages)
            for message in sent_messages[start:]:
                if message.id in self.seen or getattr(message, "raw_data", None) is None:
                    continue
                self.seen.add(message.id)
                sent = _SENT.get(message.id)
                if sent is None or sent[0] != self.configuration_set:
                    continue  # sent without the configuration set: SES publishes nothing
                at = self.now()
                for recipient in self._recipients(message):
                    published += self._publish(message, "send", recipient, at)
                    for step in _outcome(recipient):
                        published += self._publish(message, step, recipient, at)
            return published

    def engage(self, message_id: str, kind: str, link: str = "") -> int:
        """Publish an Open or Click (`kind`: open, click) of a sent message; 0 if there is no such
        message sent with the configuration set, or the destination does not publish `kind`."""
        if kind not in ("open", "click"):
            raise ValueError("kind must be open or click")
        with self.lock:
            for message in list(ses_backends[ACCOUNT_ID][REGION].sent_messages):
                if message.id == message_id and _SENT.get(message_id, ("",))[0] == self.configuration_set:
                    recipients = self._recipients(message)
                    if not recipients:
                        return 0
                    return self._publish(message, kind, recipients[0], self.now(), link=link)
            return 0

    @staticmethod
    def _recipients(message: Any) -> list[str]:
        return [address for _, address in getaddresses(list(message.destinations)) if address]

    def _publish(self, message: Any, step: str, recipient: str, at: datetime, *, link: str = "") -> int:
        if step not in self.wiring.event_types:
            return 0
        event_type, detail_type = EVENT_TYPES[step]
        if detail_type not in self.wiring.detail_types:
            return 0
        detail = ses_event(message, event_type, recipient, at, self.configuration_set, link=link)
        envelope = {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": detail_type,
            "source": "aws.ses",
            "account": ACCOUNT_ID,
            "time": _iso(at),
            "region": REGION,
            "resources": [f"arn:aws:ses:{REGION}:{ACCOUNT_ID}:configuration-set/{self.configuration_set}"],
            "detail": detail,
        }
        self.sqs.send_message(QueueUrl=self.queue_url, MessageBody=json.dumps(envelope))
        return 1


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def ses_event(
    message: Any, event_type: str, recipient: str, at: datetime, configuration_set: str, *, link: str = ""
) -> dict[str, Any]:
    """SES's event record (the EventBridge detail) for `message`, as SES publishes it."""
    _, tags = _SENT.get(message.id, ("", {}))
    parsed = message_from_string(message.raw_data)
    source = str(message.source or parsed["From"] or "")
    sender = parseaddr(source)[1]
    sent_at = at - timedelta(milliseconds=500)
    mail = {
        "timestamp": _iso(sent_at),
        "source": source,
        "sourceArn": f"arn:aws:ses:{REGION}:{ACCOUNT_ID}:identity/{sender.rpartition('@')[2]}",
        "sendingAccountId": ACCOUNT_ID,
        "messageId": message.id,
        "destination": [recipient],
        "headersTruncated": False,
        "headers": [{"name": n, "value": str(parsed[n])} for n in ("From", "To", "Subject") if parsed[n]],
        "commonHeaders": {
            "from": [str(parsed["From"] or "")],
            "to": [str(parsed["To"] or "")],
            "messageId": message.id,
            "subject": str(parsed["Subject"] or ""),
        },
        "tags": {
            "ses:configuration-set": [configuration_set],
            "ses:source-ip": ["127.0.0.1"],
            "ses:from-domain": [sender.rpartition("@")[2]],
            "ses:caller-identity": ["nudge-local"],
            **{name: [value] for name, value in tags.items()},
        },
    }
    record: dict[str, Any] = {"eventType": event_type, "mail": mail}
    stamp = _iso(at)
    box = parseaddr(recipient)[1].split("@")[0].split("+")[0].lower()
    if event_type == "Send":
        record["send"] = {}
    elif event_type == "Delivery":
        record["delivery"] = {
            "timestamp": stamp,
            "processingTimeMillis": 500,
            "recipients": [recipient],
            "smtpResponse": "250 2.6.0 Message received",
            "reportingMTA": "a8-local.smtp-out.amazonses.com",
        }
    elif event_type == "Bounce":
        suppressed = box == "suppressionlist"
        record["bounce"] = {
            "bounceType": "Permanent",
            "bounceSubType": "OnAccountSuppressionList" if suppressed else "General",
            "bouncedRecipients": [
                {
                    "emailAddress": recipient,
                    "action": "failed",
                    "status": "5.1.1",
                    "diagnosticCode": "Amazon SES did not send the message to this address because it is "
                    "on the suppression list for your account."
                    if suppressed
                    else "smtp; 550 5.1.1 user unknown",
                }
            ],
            "timestamp": stamp,
            "feedbackId": f"{uuid.uuid4().hex}-000000",
            "reportingMTA": "dns; amazonses.com",
        }
    elif event_type == "Complaint":
        record["complaint"] = {
            "complainedRecipients": [{"emailAddress": recipient}],
            "timestamp": stamp,
            "feedbackId": f"{uuid.uuid4().hex}-000000",
            "userAgent": "Amazon SES Mailbox Simulator",
            "complaintFeedbackType": "abuse",
            "arrivalDate": stamp,
        }
    elif event_type == "Open":
        record["open"] = {"timestamp": stamp, "ipAddress": "127.0.0.1", "userAgent": "nudge-local reader"}
    elif event_type == "Click":
        record["click"] = {
            "timestamp": stamp,
            "ipAddress": "127.0.0.1",
            "userAgent": "nudge-local reader",
            "link": link or "http://127.0.0.1/",
            "linkTags": {},
        }
    return record


def forget_sent() -> None:
    """Drop what was captured (a stopped stack's messages)."""
    _SENT.clear()


def simulator_addresses(boxes: Sequence[str]) -> list[str]:
    return [f"{box}@{SIMULATOR_DOMAIN}" for box in boxes]
