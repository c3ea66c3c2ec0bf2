"""The whole pipeline on the local stack: events -> evaluate -> dispatch (guardrails, ledger) ->
the email and notify functions -> moto's SES and SNS, seen through GET /_local/outbox."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import pytest

from nudge.domain.evaluate import window_end
from nudge.domain.verdicts import in_group
from tests.shipped import RULES

if TYPE_CHECKING:
    from tests.e2e.conftest import Api

# Most of these move the stack's clock: they run after the e2e tests that need the wall clock.
pytestmark = [pytest.mark.e2e, pytest.mark.moves_clock]


def message(api: Api, user: str, kind: str, **fields: Any) -> dict[str, Any]:
    when = api.stack.clock.now() - timedelta(minutes=1)
    return {
        "type": kind,
        "userId": user,
        "messageId": str(uuid.uuid4()),
        "timestamp": when.isoformat(),
        **fields,
    }


def unheld(base: str, rule: str = "finish_setup") -> str:
    """A user id that neither the control group nor `rule`'s holdout holds out (ids hash into them)."""
    salt = RULES.guardrails.spec.holdout.salt
    percent = RULES.guardrails.spec.holdout.control_group
    rule_percent = RULES.trigger_by_id[rule].spec.holdout
    for n in range(100):
        user = f"{base}-{n}"
        if not in_group(salt, user, percent) and not in_group(salt, f"{rule}|{user}", rule_percent):
            return user
    raise AssertionError("no id outside the holdouts in 100 tries")


def signed_up_with_traits(api: Api, user: str, **traits: Any) -> list[dict[str, Any]]:
    batch = [
        message(
            api,
            user,
            "identify",
            traits={
                "email": f"{user}@example.com",
                "first_name": "Ada",
                "timezone": "UTC",
                "consent": {"email": True},
                **traits,
            },
        ),
        message(api, user, "track", event="signed_up"),
    ]
    response = api.post("/v1/batch", {"batch": batch})
    assert response.status_code == 200, response.text
    return batch


def move_clock(api: Api, delta: timedelta) -> None:
    when = api.stack.clock.now() + delta
    response = api.session.post(f"{api.base_url}/_local/clock", json={"now": when.isoformat()}, timeout=600)
    assert response.status_code == 200, response.text


def at_window_start(api: Api, rule: str = "finish_setup") -> None:
    """Make room for a test that spans two days: a decision's id holds for a cooldown window
    aligned to the epoch, and from a start late in a window (which depends on the time of day, and
    on the tests before) the rule would decide again in the next window, a second decision the
    cooldown suppresses. So when less than two days of the window are left, move the stack's clock
    just past its end (the clock only moves forward: no further than needed)."""
    now = api.stack.clock.now()
    end = window_end(RULES.trigger_by_id[rule], now)
    assert end is not None
    if end - now < timedelta(days=2):
        move_clock(api, end + timedelta(minutes=5) - now)


def outbox(api: Api, user: str) -> list[dict[str, Any]]:
    response = api.session.get(f"{api.base_url}/_local/outbox", params={"user": user}, timeout=60)
    assert response.status_code == 200, response.text
    sent: list[dict[str, Any]] = response.json()["messages"]
    return sent


def test_a_stalled_signup_gets_one_finish_setup_email_and_its_ledger_says_so(api: Api, uid: str) -> None:
    # Given a user who signed up and did nothing else (and is not held out of the rule)
    uid = unheld(uid)
    at_window_start(api)
    batch = signed_up_with_traits(api, uid)
    # When a day and a half passes (the rule waits a day), and the same batch is posted again
    move_clock(api, timedelta(hours=36))
    assert api.post("/v1/batch", {"batch": batch}).status_code == 200
    move_clock(api, timedelta(hours=1))
    # Then exactly one email went out, rendered from the template, with a working unsubscribe link
    sent = outbox(api, uid)
    assert [(m["rule"], m["channel"], m["to"]) for m in sent] == [
        ("finish_setup", "email", f"{uid}@example.com")
    ]
    assert "Ada" in sent[0]["subject"]
    assert "https://app.acme.example/setup" in sent[0]["body"]
    assert "/v1/unsubscribe?token=" in sent[0]["headers"]["List-Unsubscribe"]
    # ...and the user's ledger holds the decision, sent
    ledger = api.user(uid)["ledger"]
    assert [(e["rule"], e["outcome"], e["status"]) for e in ledger] == [("finish_setup", "send", "sent")]


def test_a_user_who_said_no_to_email_gets_nothing_and_the_ledger_says_why(api: Api, uid: str) -> None:
    # Given a user who said no to email
    at_window_start(api)
    signed_up_with_traits(api, uid, consent={"email": False})
    # When the finish_setup rule fires
    move_clock(api, timedelta(hours=36))
    # Then nothing is sent, and the ledger records why
    assert outbox(api, uid) == []
    ledger = api.user(uid)["ledger"]
    assert [(e["rule"], e["outcome"], e["outcome_reason"]) for e in ledger] == [
        ("finish_setup", "suppressed", "no_consent")
    ]


def test_every_stream_record_and_queue_message_delivered_twice_out_of_order_sends_nothing_twice(
    api: Api, uid: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given every event source of the stack delivering each record twice in its batch, out of order
    uid = unheld(uid)
    at_window_start(api)

    def doubled(invoke: Any) -> Any:
        def twice(function: str, event: dict[str, Any]) -> dict[str, Any]:
            # Twice, and out of order: the batch reversed, then again as it came.
            records = event["Records"]
            result: dict[str, Any] = invoke(function, {**event, "Records": [*reversed(records), *records]})
            return result

        return twice

    for pump in [*api.stack.pumps, *api.stack.queue_pumps]:
        monkeypatch.setattr(pump, "_invoke", doubled(pump._invoke))
    # When a stalled signup's finish_setup rule fires
    signed_up_with_traits(api, uid)
    move_clock(api, timedelta(hours=36))
    # Then one decision, one email
    assert [m["rule"] for m in outbox(api, uid)] == ["finish_setup"]
    assert len(api.user(uid)["ledger"]) == 1


def test_a_poison_decision_message_ends_in_the_dlq_and_the_rest_still_flow(api: Api, uid: str) -> None:
    import boto3

    sqs = boto3.client(
        "sqs",
        endpoint_url=api.stack.endpoint_url,
        region_name="us-east-1",
        aws_access_key_id="local",
        aws_secret_access_key="local",
    )
    # Given a message on the decision queue that is not a decision batch at all
    sqs.send_message(QueueUrl=api.stack.queue_urls["DecisionQueue"], MessageBody='{"not": "a batch"}')
    # ...and a real decision on its way for a stalled signup
    uid = unheld(uid)
    at_window_start(api)
    signed_up_with_traits(api, uid)
    # When the stack runs what is due
    move_clock(api, timedelta(hours=36))
    # Then the poison message was retried up to the queue's maxReceiveCount, then moved to its DLQ,
    dead = sqs.receive_message(QueueUrl=api.stack.queue_urls["DecisionDLQ"], MaxNumberOfMessages=10)
    assert [m["Body"] for m in dead.get("Messages", [])] == ['{"not": "a batch"}']
    # and the real decision went through
    assert [m["rule"] for m in outbox(api, uid)] == ["finish_setup"]


def test_the_upgrade_email_names_the_premium_feature_the_user_tried(api: Api, uid: str) -> None:
    # Given a power user on the free plan (seven weeks of daily projects) who tried SSO six days ago
    uid = unheld(uid, "upgrade_power_user")
    now = api.stack.clock.now()

    def past(event: str, days: float, **properties: Any) -> dict[str, Any]:
        at = now - timedelta(days=days)
        return {**message(api, uid, "track", event=event, properties=properties), "timestamp": at.isoformat()}

    batch = [
        {**message(api, uid, "identify", traits={"email": f"{uid}@example.com", "plan": "free",
                                                  "timezone": "UTC", "consent": {"email": True}}),
         "timestamp": (now - timedelta(days=50)).isoformat()},
        past("signed_up", 50), past("setup_completed", 50), past("teammate_invited", 49),
        *(past("project_created", 49 - i) for i in range(48)),
        past("premium_feature_attempted", 6, feature="sso"),
    ]  # fmt: skip
    # When the product sends it
    response = api.post("/v1/batch", {"batch": batch})
    assert response.status_code == 200, response.text
    move_clock(api, timedelta(minutes=5))
    # Then the upgrade email names the feature
    sent = outbox(api, uid)
    assert [(m["rule"], m["channel"]) for m in sent] == [("upgrade_power_user", "email")]
    assert sent[0]["subject"] == "You tried SSO: it comes with the next plan"
    assert "You tried SSO, which your free plan doesn't include." in sent[0]["body"]
    assert "You tried SSO," in sent[0]["html"]


def test_a_premium_feature_of_the_wrong_type_is_refused_naming_event_property_and_type(
    api: Api, uid: str
) -> None:
    bad = message(api, uid, "track", event="premium_feature_attempted", properties={"feature": 42})
    response = api.post("/v1/track", bad)
    assert response.status_code == 400
    [error] = response.json()["errors"]
    assert error["field"] == "properties.feature"
    assert error["message"] == (
        "event 'premium_feature_attempted': property 'feature' should be a string, got number 42"
    )
