"""SMS and mobile push through SNS.

SMS: the number's opt-out status is checked first (people who replied STOP are refused by SNS
anyway, but silently for us; asking first lets the caller record the opt-out). Push: one
publish to a platform endpoint with a payload per platform.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, Protocol

from botocore.exceptions import ClientError

from nudge.adapters.retry import DEFAULT_BACKOFF, call_with_backoff, error_code
from nudge.backoff import Backoff
from nudge.model.channels import Push, Sms
from nudge.model.errors import RecipientOptedOut, SendRejected
from nudge.observability import logger

# E.164: "+", a country code that never starts with 0, at most 15 digits in all; 8 at least,
# the shortest real numbers with their country code.
_E164 = re.compile(r"^\+[1-9]\d{7,14}$")
# SNS sender IDs: 1-11 letters and digits, at least one letter.
_SENDER_ID = re.compile(r"^(?=.*[A-Za-z])[A-Za-z0-9]{1,11}$")


class SnsClient(Protocol):
    """The part of boto3's sns client used here (and by the escalation desk)."""

    def publish(self, **kwargs: Any) -> Mapping[str, Any]: ...

    def check_if_phone_number_is_opted_out(self, **kwargs: Any) -> Mapping[str, Any]: ...


def check_sms(sms: Sms) -> None:
    """Refuse, without calling AWS, what SNS would refuse anyway."""
    if not _E164.match(sms.to):
        raise SendRejected("InvalidPhoneNumber", "phone number must be E.164: + and 8 to 15 digits")
    if sms.sender_id is not None and not _SENDER_ID.match(sms.sender_id):
        raise SendRejected("InvalidSenderId", "sender id must be 1-11 letters or digits, one letter at least")
    if not sms.text.strip():
        raise SendRejected("EmptyMessage", "an SMS needs text")


def push_message(push: Push) -> str:
    """The JSON message for MessageStructure="json": a default, FCM (v1) and APNs payloads."""
    data = dict(push.data)
    notification = {"title": push.title, "body": push.body}
    fcm = {"fcmV1Message": {"message": {"notification": notification, "data": data}}}
    # APNs custom keys sit beside "aps"; a data key named "aps" would replace the alert.
    apns: dict[str, Any] = {key: value for key, value in data.items() if key != "aps"}
    apns["aps"] = {"alert": notification}
    apns_json = json.dumps(apns)
    return json.dumps(
        {"default": push.body, "GCM": json.dumps(fcm), "APNS": apns_json, "APNS_SANDBOX": apns_json}
    )


SMS_DISABLED = "SMS is off for this stack: deploy it with SmsEnabled=true to send SMS"


class SnsNotifier:
    def __init__(
        self, client: SnsClient, *, backoff: Backoff = DEFAULT_BACKOFF, sms_enabled: bool = True
    ) -> None:
        self.client = client
        self.backoff = backoff
        # Off: the function has no permission to publish SMS (template.yaml, SmsEnabled); refused
        # here with the fix named, rather than by IAM as an AuthorizationError.
        self.sms_enabled = sms_enabled

    def send_sms(self, sms: Sms) -> str:
        if not self.sms_enabled:
            raise SendRejected("SmsDisabled", SMS_DISABLED)
        check_sms(sms)
        status = call_with_backoff(
            lambda: self.client.check_if_phone_number_is_opted_out(phoneNumber=sms.to), self.backoff
        )
        if status.get("isOptedOut"):
            raise RecipientOptedOut("the phone number opted out of SMS")
        attributes: dict[str, Any] = {
            "AWS.SNS.SMS.SMSType": {
                "DataType": "String",
                "StringValue": "Transactional" if sms.transactional else "Promotional",
            }
        }
        if sms.sender_id:
            attributes["AWS.SNS.SMS.SenderID"] = {"DataType": "String", "StringValue": sms.sender_id}
        response = call_with_backoff(
            lambda: self.client.publish(PhoneNumber=sms.to, Message=sms.text, MessageAttributes=attributes),
            self.backoff,
        )
        message_id = str(response["MessageId"])
        logger.info("sms sent", extra={"message_id": message_id, "transactional": sms.transactional})
        return message_id

    def send_push(self, push: Push) -> str:
        # A disabled endpoint (app uninstalled, token expired) comes back as ClientError
        # EndpointDisabled, which call_with_backoff turns into SendRejected("EndpointDisabled").
        response = call_with_backoff(
            lambda: self.client.publish(
                TargetArn=push.endpoint_arn, MessageStructure="json", Message=push_message(push)
            ),
            self.backoff,
        )
        message_id = str(response["MessageId"])
        logger.info("push sent", extra={"message_id": message_id})
        return message_id


# SNS refuses CreatePlatformEndpoint for a token whose endpoint exists with other attributes (one SNS
# disabled: Enabled=false), naming that endpoint in the message; AWS's guidance is to use it.
_EXISTING_ENDPOINT = re.compile(r"Endpoint (arn:aws[a-z-]*:sns:\S+) already exists with the same [Tt]oken")


class SnsPushEndpoints:
    """A device token -> its SNS platform endpoint (CreatePlatformEndpoint is idempotent per token).

    A token whose endpoint SNS disabled makes CreatePlatformEndpoint fail with InvalidParameter
    naming the existing endpoint: that endpoint is returned, so the publish meets EndpointDisabled
    and the send path suppresses the token (before this, the delivery failed before its claim and
    was retried into the DLQ). The endpoint is not re-enabled: only the app, registering the token
    again, knows it works."""

    def __init__(self, client: Any, application_arn: str) -> None:
        self.client = client
        self.application_arn = application_arn

    def endpoint(self, token: str) -> str:
        try:
            response = self.client.create_platform_endpoint(
                PlatformApplicationArn=self.application_arn, Token=token
            )
        except ClientError as exc:
            existing = _EXISTING_ENDPOINT.search(str(exc.response.get("Error", {}).get("Message", "")))
            if error_code(exc) != "InvalidParameter" or existing is None:
                raise
            return existing.group(1).rstrip(".")
        return str(response["EndpointArn"])
