"""SES feedback read and judged, pure: an event (EventBridge's envelope, SNS's, or SES's own
record) -> `Feedback`; what it means for the address (`verdict`); transient bounces counted in a
window (`soft_bounces`); and the user tag that finds the decision's ledger entry.

Why the user travels in a tag: the ledger keys a decision under its user (USER#<id>/DECISION#<id>),
and SES gives back only the message's tags, id and recipient. SES tag values allow letters, digits,
`_` and `-` only, so the id goes as unpadded base64url (which uses exactly those); an id too long
for a tag's 256 characters (over 192 bytes) is not tagged, and its feedback still suppresses the
address but is counted as unmatched. The recipient address is in the same SES event anyway.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from nudge.model.feedback import SES_EVENT_TYPES, Feedback
from nudge.model.suppression import Reason

USER_TAG = "user"
DECISION_TAG = "decision"
RULE_TAG = "rule"
CATEGORY_TAG = "category"
TAG_MAX_CHARS = 256
# The EventBridge detail-types SES publishes configuration-set events under.
DETAIL_TYPES = (
    "Email Sent",
    "Email Delivered",
    "Email Bounced",
    "Email Complaint Received",
    "Email Rejected",
    "Email Delivery Delayed",
    "Email Rendering Failed",
    "Email Opened",
    "Email Clicked",
    "Email Subscribed",
)
# eventType -> the key of its own object in the record ("Rendering Failure" has "failure").
_OBJECT_KEYS = {
    "Send": "send",
    "Delivery": "delivery",
    "Bounce": "bounce",
    "Complaint": "complaint",
    "Reject": "reject",
    "DeliveryDelay": "deliveryDelay",
    "Rendering Failure": "failure",
    "RenderingFailure": "failure",
    "Open": "open",
    "Click": "click",
    "Subscription": "subscription",
}


class NotFeedback(ValueError):
    """The body is not an SES event this function can read (the message names what is wrong)."""


def encode_user(user_id: str) -> str | None:
    """The user id as an SES tag value, or None when it would not fit in one."""
    encoded = base64.urlsafe_b64encode(user_id.encode()).decode().rstrip("=")
    return encoded if 0 < len(encoded) <= TAG_MAX_CHARS else None


def feedback_tags(rule: str, decision_id: str, user_id: str, marketing: bool) -> dict[str, str]:
    """The SES tags an email carries, which SES repeats in every event about it."""
    tags = {
        RULE_TAG: rule,
        DECISION_TAG: decision_id,
        CATEGORY_TAG: "marketing" if marketing else "transactional",
    }
    user = encode_user(user_id)
    if user is not None:
        tags[USER_TAG] = user
    return tags


def decode_user(value: str) -> str | None:
    try:
        return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None


def _time(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


def _record(body: Mapping[str, Any]) -> Mapping[str, Any]:
    """SES's own record, out of whatever envelope carried it."""
    detail = body.get("detail")
    if body.get("source") == "aws.ses" and isinstance(detail, Mapping):
        return detail  # EventBridge
    if body.get("Type") == "Notification" and isinstance(body.get("Message"), str):
        try:
            inner = json.loads(body["Message"])  # SNS (raw message delivery off)
        except ValueError as exc:
            raise NotFeedback("an SNS notification whose Message is not JSON") from exc
        if not isinstance(inner, Mapping):
            raise NotFeedback("an SNS notification whose Message is not an object")
        return inner
    return body


def parse(body: Mapping[str, Any]) -> Feedback:
    """One SES configuration-set event as `Feedback`; NotFeedback names what is missing."""
    record = _record(body)
    event_type = record.get("eventType") or record.get("notificationType")
    if not isinstance(event_type, str) or event_type not in SES_EVENT_TYPES:
        raise NotFeedback(f"no known SES eventType (got {str(event_type)[:40]!r})")
    mail = record.get("mail")
    if not isinstance(mail, Mapping) or not isinstance(mail.get("messageId"), str) or not mail["messageId"]:
        raise NotFeedback("mail.messageId is missing")
    own = record.get(_OBJECT_KEYS[event_type])
    own = own if isinstance(own, Mapping) else {}
    at = _time(own.get("timestamp")) or _time(mail.get("timestamp"))
    if at is None:
        raise NotFeedback("no timestamp in the event or its mail")
    raw_tags = mail.get("tags")
    raw_tags = raw_tags if isinstance(raw_tags, Mapping) else {}
    tags = {
        str(name): str(values[0])
        for name, values in raw_tags.items()
        if isinstance(values, list) and values and isinstance(values[0], str)
    }
    kind = SES_EVENT_TYPES[event_type]
    detail = ""
    recipients: list[str] = []
    if event_type == "Bounce":
        bounce_type = str(own.get("bounceType") or "Undetermined")
        # Only a Permanent bounce says the address is dead; Transient and Undetermined may pass.
        kind = "bounced" if bounce_type == "Permanent" else "soft_bounced"
        detail = f"{bounce_type}/{own.get('bounceSubType') or ''}"
        recipients = _addresses(own.get("bouncedRecipients"))
    elif event_type == "Complaint":
        detail = str(own.get("complaintFeedbackType") or "")
        recipients = _addresses(own.get("complainedRecipients"))
    elif event_type == "Reject":
        detail = str(own.get("reason") or "")
    elif event_type == "DeliveryDelay":
        detail = str(own.get("delayType") or "")
        recipients = _addresses(own.get("delayedRecipients"))
    if not recipients:
        destination = mail.get("destination")
        recipients = (
            [str(a) for a in destination if isinstance(a, str)] if isinstance(destination, list) else []
        )
    return Feedback(
        kind=kind,
        message_id=mail["messageId"],
        at=at,
        tags=tags,
        recipients=tuple(recipients),
        detail=detail[:100],
    )


def _addresses(items: object) -> list[str]:
    if not isinstance(items, list):
        return []
    return [
        str(i["emailAddress"])
        for i in items
        if isinstance(i, Mapping) and isinstance(i.get("emailAddress"), str)
    ]


@dataclass(frozen=True)
class Verdict:
    """What the feedback asks of the suppression list for its recipients: a record (reason, scope)
    now, or a transient bounce to count."""

    reason: Reason | None = None
    scope: str = "email"
    count_soft_bounce: bool = False


def verdict(feedback: Feedback) -> Verdict:
    """A permanent bounce blocks all email to the address (transactional too: it does not exist); a
    complaint blocks marketing email (the person said "spam"; a password reset must still reach
    them); a transient bounce is counted; anything else asks nothing."""
    if feedback.kind == "bounced":
        return Verdict(reason="bounce")
    if feedback.kind == "complained":
        return Verdict(reason="complaint")
    if feedback.kind == "soft_bounced":
        return Verdict(count_soft_bounce=True)
    return Verdict()


def soft_bounces(
    kept: Sequence[tuple[str, datetime]],
    message_id: str,
    at: datetime,
    now: datetime,
    window: timedelta,
    limit: int,
) -> tuple[list[tuple[str, datetime]], bool]:
    """The address's transient bounces (message id, time) with this one, within `window` of `now`
    and the newest `limit` of them; and whether they reached `limit` (suppress). A message's bounce
    counts once however often SES (or a redelivery) reports it."""
    by_message = {mid: when for mid, when in kept}
    by_message.setdefault(message_id, at)
    recent = sorted(((m, t) for m, t in by_message.items() if now - t < window), key=lambda p: (p[1], p[0]))
    recent = recent[-limit:]
    return recent, len(recent) >= limit
