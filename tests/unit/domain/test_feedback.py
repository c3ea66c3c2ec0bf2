"""SES feedback read and judged (nudge.domain.feedback): pure."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nudge.domain.feedback import (
    NotFeedback,
    decode_user,
    encode_user,
    feedback_tags,
    parse,
    soft_bounces,
    verdict,
)

AT = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
MAIL = {
    "timestamp": "2026-03-02T09:00:00.000Z",
    "messageId": "m-1",
    "destination": ["ada@example.com"],
    "tags": {"ses:configuration-set": ["cs"], "rule": ["finish_setup"], "decision": ["d-1"]},
}


def envelope(record: dict[str, Any], detail_type: str = "Email Bounced") -> dict[str, Any]:
    return {"version": "0", "source": "aws.ses", "detail-type": detail_type, "detail": record}


def bounce(bounce_type: str) -> dict[str, Any]:
    return {
        "eventType": "Bounce",
        "mail": MAIL,
        "bounce": {
            "bounceType": bounce_type,
            "bounceSubType": "General",
            "bouncedRecipients": [{"emailAddress": "ada@example.com"}],
            "timestamp": "2026-03-02T09:00:02.000Z",
        },
    }


def test_a_permanent_bounce_is_read_from_eventbridges_envelope_with_its_own_time_and_tags() -> None:
    # When SES's bounce arrives as EventBridge delivers it
    feedback = parse(envelope(bounce("Permanent")))
    # Then it is a bounce of the message, at the bounce's time, with the message's tags
    assert (feedback.kind, feedback.message_id, feedback.recipients) == (
        "bounced",
        "m-1",
        ("ada@example.com",),
    )
    assert feedback.at == AT + timedelta(seconds=2)
    assert (feedback.tags["rule"], feedback.tags["decision"]) == ("finish_setup", "d-1")
    assert feedback.detail == "Permanent/General"


@pytest.mark.parametrize("bounce_type", ["Transient", "Undetermined"])
def test_a_bounce_that_is_not_permanent_is_soft(bounce_type: str) -> None:
    assert parse(envelope(bounce(bounce_type))).kind == "soft_bounced"


def test_the_same_record_through_sns_reads_the_same() -> None:
    # Given the record as an SNS destination would deliver it (raw delivery off)
    sns = {"Type": "Notification", "Message": json.dumps(bounce("Permanent"))}
    # Then it reads as through EventBridge
    assert parse(sns) == parse(envelope(bounce("Permanent")))


@pytest.mark.parametrize(
    ("event_type", "own", "kind"),
    [
        ("Send", "send", "sent"),
        ("Delivery", "delivery", "delivered"),
        ("Complaint", "complaint", "complained"),
        ("Reject", "reject", "rejected"),
        ("DeliveryDelay", "deliveryDelay", "delayed"),
        ("Rendering Failure", "failure", "rendering_failed"),
        ("Open", "open", "opened"),
        ("Click", "click", "clicked"),
    ],
)
def test_every_event_type_the_destination_publishes_is_read(event_type: str, own: str, kind: str) -> None:
    record = {"eventType": event_type, "mail": MAIL, own: {"timestamp": "2026-03-02T09:00:03Z"}}
    feedback = parse(envelope(record))
    assert feedback.kind == kind
    # ...at its own time, or the mail's when it has none (Send, Reject)
    assert feedback.at in (AT, AT + timedelta(seconds=3))
    assert feedback.recipients == ("ada@example.com",)


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ({"source": "aws.ses", "detail": {"eventType": "Nope", "mail": MAIL}}, "eventType"),
        ({"source": "aws.ses", "detail": {"eventType": "Send", "mail": {"timestamp": "x"}}}, "messageId"),
        ({"source": "aws.ses", "detail": {"eventType": "Send", "mail": {"messageId": "m"}}}, "timestamp"),
        ({"Type": "Notification", "Message": "not json"}, "not JSON"),
        ({"anything": 1}, "eventType"),
    ],
)
def test_what_is_no_ses_event_is_refused_naming_what_is_missing(body: dict[str, Any], problem: str) -> None:
    with pytest.raises(NotFeedback, match=problem):
        parse(body)


def test_a_hard_bounce_blocks_all_email_a_complaint_marketing_and_a_soft_bounce_is_counted() -> None:
    hard = verdict(parse(envelope(bounce("Permanent"))))
    soft = verdict(parse(envelope(bounce("Transient"))))
    complaint = verdict(parse(envelope({"eventType": "Complaint", "mail": MAIL, "complaint": {}})))
    opened = verdict(parse(envelope({"eventType": "Open", "mail": MAIL, "open": {}})))
    assert (hard.reason, hard.scope, hard.count_soft_bounce) == ("bounce", "email", False)
    assert (complaint.reason, complaint.scope) == ("complaint", "email")
    assert (soft.reason, soft.count_soft_bounce) == (None, True)
    assert (opened.reason, opened.count_soft_bounce) == (None, False)


def test_the_limit_th_soft_bounce_within_the_window_suppresses_and_older_ones_do_not_count() -> None:
    window, limit = timedelta(days=14), 3
    kept: list[tuple[str, datetime]] = [("old", AT - timedelta(days=20)), ("a", AT - timedelta(days=3))]
    # When a second bounce within the window arrives: not yet
    kept, reached = soft_bounces(kept, "b", AT, AT, window, limit)
    assert not reached
    assert [m for m, _ in kept] == ["a", "b"]
    # ...the same message's bounce reported again changes nothing
    again, reached = soft_bounces(kept, "b", AT, AT, window, limit)
    assert not reached
    assert again == kept
    # ...a third one reaches the limit
    kept, reached = soft_bounces(kept, "c", AT + timedelta(hours=1), AT + timedelta(hours=1), window, limit)
    assert reached
    assert [m for m, _ in kept] == ["a", "b", "c"]


@given(st.text(min_size=1, max_size=64))
def test_a_user_id_survives_its_tag_and_the_tag_uses_only_what_ses_allows(user: str) -> None:
    tag = encode_user(user)
    assert tag is not None
    assert all(c.isascii() and (c.isalnum() or c in "_-") for c in tag)
    assert decode_user(tag) == user


def test_an_id_too_long_for_a_tag_is_not_tagged() -> None:
    assert encode_user("x" * 193) is None
    assert "user" not in feedback_tags("r", "d", "x" * 193, marketing=True)
    assert feedback_tags("r", "d", "ada", marketing=False) == {
        "rule": "r",
        "decision": "d",
        "category": "transactional",
        "user": "YWRh",
    }
