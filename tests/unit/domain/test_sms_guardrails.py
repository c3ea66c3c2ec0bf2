"""SMS under the shipped guardrails.yaml, for the shipped rescue's [push, sms, email] quick win: a text
needs opt-in (`consent: sms: opt_in`), waits out the user's quiet hours (`quiet_hours: channels:
[push, sms]`, `when_quiet: defer`) unless email can go now, and has its own cap (1 per 7 days)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import count
from typing import Any

from nudge.domain.verdicts import Verdict, guard
from nudge.model.decisions import Decision
from nudge.model.delivery import DeliveryRecord, Sent
from tests.shipped import SHIPPED, without_holdouts

RULES = without_holdouts(SHIPPED)
AFTERNOON = datetime(2025, 3, 4, 20, 0, tzinfo=UTC)  # 15:00 in New York
NIGHT = datetime(2025, 3, 5, 3, 0, tzinfo=UTC)  # 22:00 in New York: inside 21:00-08:00
MORNING = datetime(2025, 3, 5, 13, 0, tzinfo=UTC)  # 08:00 in New York, when the quiet hours end
TEXTER: dict[str, Any] = {"phone": "+12025550123", "timezone": "America/New_York", "consent": {"sms": True}}
_ids = count()


def quick_win(channels: tuple[str, ...] = ("push", "sms", "email")) -> Decision:
    return Decision(
        decision_id=f"d{next(_ids)}",
        user="u1",
        account=None,
        rule="declining_rescue",
        kind="rescue",
        action=channels[0],
        channel=channels[0],
        channels=list(channels),
        template="declining_nudge",
        priority=70,
        reason="",
        facts={},
        decided_at=AFTERNOON,
        step="quick_win",
        journey="declining_rescue",
    )


def judge(traits: dict[str, Any], now: datetime, record: DeliveryRecord | None = None, **kw: Any) -> Verdict:
    (verdict,), _ = guard(
        [quick_win(**kw)], record or DeliveryRecord(), traits, False, RULES, RULES.guardrails, now
    )
    return verdict


def test_the_shipped_rescue_names_sms_between_push_and_email() -> None:
    step = RULES.journey_by_id["declining_rescue"].steps["quick_win"]
    assert step.spec.send is not None
    assert step.spec.send.channels == ("push", "sms", "email")


def test_a_text_goes_now_outside_the_users_quiet_hours() -> None:
    verdict = judge(TEXTER, AFTERNOON)
    assert (verdict.outcome, verdict.decision.channel, verdict.reason) == ("send", "sms", "")
    assert verdict.channel_why == "push: no_address; sms: chosen"


def test_a_text_waits_for_the_end_of_the_users_quiet_hours_when_nothing_else_can_go() -> None:
    verdict = judge(TEXTER, NIGHT)
    assert (verdict.outcome, verdict.decision.channel, verdict.reason) == ("deferred", "sms", "quiet_hours")
    assert verdict.deliver_at == MORNING


def test_at_night_email_goes_now_rather_than_a_text() -> None:
    # guardrails.yaml: "email waits in the inbox; a buzzing phone at night does not"
    verdict = judge({**TEXTER, "email": "ann@example.com"}, NIGHT)
    assert (verdict.outcome, verdict.decision.channel) == ("send", "email")
    assert verdict.channel_why == "push: no_address; sms: quiet_hours; email: chosen"


def test_no_text_without_sms_opt_in() -> None:
    # opt_in: a phone number alone, or consent not given for sms, or a no, is no consent
    for consent in ({}, {"email": True}, {"sms": False}):
        traits = {**TEXTER, "consent": consent}
        assert judge(traits, AFTERNOON, channels=("sms",)).reason == "no_consent"
        with_email = judge({**traits, "email": "ann@example.com"}, AFTERNOON)
        assert (with_email.outcome, with_email.decision.channel) == ("send", "email")


def test_one_text_a_week_and_a_full_sms_cap_does_not_move_the_message_to_email() -> None:
    # Given a text sent three days ago (caps: sms 1 per 7d)
    before = AFTERNOON - timedelta(days=3)
    record = DeliveryRecord(sends=[Sent(at=before, channel="sms", rule="come_back", journey="rescue")])
    verdict = judge({**TEXTER, "email": "ann@example.com", "preferred_channel": "sms"}, AFTERNOON, record)
    assert (verdict.outcome, verdict.decision.channel, verdict.reason) == ("suppressed", "sms", "cap_sms_7d")
