"""Channel choice: of a rule's channels in order of preference, the first the user can receive."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from nudge.domain.channel_choice import choose
from nudge.domain.verdicts import channel_for, guard
from nudge.model.decisions import Decision
from nudge.model.delivery import DeliveryRecord
from tests.shipped import UNHELD

RULES = UNHELD
NOON = datetime(2025, 3, 4, 20, 0, tzinfo=UTC)  # 15:00 in New York
NIGHT = datetime(2025, 3, 5, 4, 0, tzinfo=UTC)  # 23:00 in New York: quiet hours for push
DECLINING: dict[str, Any] = {
    "email": "ada@example.com",
    "timezone": "America/New_York",
    "consent": {"email": True, "push": True},
}


def rescue(**changes: Any) -> Decision:
    spec = RULES.trigger_by_id["rescue_declining"].spec
    values: dict[str, Any] = {
        "decision_id": "d-rescue",
        "user": "u1",
        "account": "a1",
        "rule": "rescue_declining",
        "kind": spec.kind,
        "action": spec.action,
        "channel": spec.channels[0],
        "channels": list(spec.channels),
        "template": spec.template,
        "priority": spec.priority,
        "reason": "test",
        "facts": {},
        "decided_at": NOON,
    }
    return Decision(**{**values, **changes})


def judge(d: Decision, traits: dict[str, Any], now: datetime = NOON) -> tuple[str, str, str, str]:
    verdicts, _ = guard([d], DeliveryRecord(), traits, False, RULES, RULES.guardrails, now)
    v = verdicts[0]
    return v.outcome, v.reason, v.decision.channel, v.channel_why


def test_the_shipped_rescue_names_push_then_email() -> None:
    assert RULES.trigger_by_id["rescue_declining"].spec.channels == ("push", "email")


def test_a_declining_user_with_an_email_but_no_device_is_rescued_by_email() -> None:
    # Given a declining user with an email address and no push device
    # When the rescue (push, then email) is judged
    outcome = judge(rescue(), DECLINING)
    # Then it goes by email, and the ledger's entry says why
    assert outcome == ("send", "", "email", "push: no_address; email: chosen")


def test_with_push_alone_the_same_user_gets_nothing_as_before() -> None:
    # What main did with the rescue's `action: push`: no device, no rescue at all.
    outcome = judge(rescue(channels=[]), DECLINING)
    assert outcome == ("suppressed", "no_address", "push", "")


def test_a_user_with_a_device_gets_the_first_choice_with_nothing_to_explain() -> None:
    outcome = judge(rescue(), {**DECLINING, "push_token": "device"})
    assert outcome == ("send", "", "push", "")


def test_no_push_consent_falls_back_to_email() -> None:
    traits = {**DECLINING, "push_token": "device", "consent": {"email": True, "push": False}}
    assert judge(rescue(), traits) == ("send", "", "email", "push: no_consent; email: chosen")


def test_the_users_preferred_channel_goes_first() -> None:
    traits = {**DECLINING, "push_token": "device", "preferred_channel": "email"}
    assert judge(rescue(), traits) == ("send", "", "email", "email: chosen (preferred_channel)")


def test_a_preference_the_rule_does_not_name_is_ignored() -> None:
    traits = {**DECLINING, "push_token": "device", "preferred_channel": "sms"}
    assert judge(rescue(), traits) == ("send", "", "push", "")


def test_inside_push_quiet_hours_email_goes_now() -> None:
    traits = {**DECLINING, "push_token": "device"}
    outcome = judge(rescue(decided_at=NIGHT), traits, NIGHT)
    assert outcome == ("send", "", "email", "push: quiet_hours; email: chosen")


def test_when_every_receivable_channel_is_quiet_the_first_waits() -> None:
    # No email address: push is the only channel the user can receive, and it is night.
    traits = {"push_token": "device", "timezone": "America/New_York", "consent": {"push": True}}
    outcome, reason, channel, why = judge(rescue(decided_at=NIGHT), traits, NIGHT)
    assert (outcome, reason, channel) == ("deferred", "quiet_hours", "push")
    assert why == "push: quiet_hours; email: no_address; push: chosen"


def test_no_channel_receivable_is_suppressed_with_the_first_channels_reason_and_each_why() -> None:
    traits = {"timezone": "America/New_York"}
    assert judge(rescue(), traits) == (
        "suppressed",
        "no_address",
        "push",
        "push: no_address; email: no_address",
    )


def test_choose_is_pure_and_follows_the_rules_order() -> None:
    blocked = {"push": "no_consent", "sms": "", "email": ""}
    choice = choose(["push", "sms", "email"], {}, blocked.__getitem__)
    assert (choice.channel, choice.reason, choice.why) == ("sms", "", "push: no_consent; sms: chosen")
    # A list-valued preference trait: the user's own order among the rule's channels.
    choice = choose(["push", "sms", "email"], {"preferred_channel": ["email", "sms"]}, blocked.__getitem__)
    assert (choice.channel, choice.why) == ("email", "email: chosen (preferred_channel)")


def test_explain_and_backtest_see_the_channel_the_guard_would_choose() -> None:
    spec = RULES.trigger_by_id["rescue_declining"].spec
    choice = channel_for(spec, DECLINING, RULES.guardrails, NOON)
    assert choice is not None
    assert (choice.channel, choice.why) == ("email", "push: no_address; email: chosen")
    # An escalation has no channel to choose; a one-channel rule has nothing to explain.
    assert channel_for(RULES.trigger_by_id["at_risk_account"].spec, DECLINING, RULES.guardrails, NOON) is None
    one = channel_for(RULES.trigger_by_id["finish_setup"].spec, DECLINING, RULES.guardrails, NOON)
    assert one is not None
    assert (one.channel, one.why) == ("email", "")


def test_preferred_means_every_channel_with_the_users_choice_first() -> None:
    spec = RULES.trigger_by_id["rescue_declining"].spec.model_copy(update={"channel": "preferred"})
    assert spec.channels == ("email", "push", "sms")
    traits = {**DECLINING, "phone": "+12025550123", "consent": {"sms": True}, "preferred_channel": "sms"}
    choice = channel_for(spec, traits, RULES.guardrails, NOON)
    assert choice is not None
    assert (choice.channel, choice.why) == ("sms", "sms: chosen (preferred_channel)")


def test_rules_may_read_the_preference_trait_without_declaring_it() -> None:
    # Nudge itself reads preferred_channel, so a condition on it is no unknown trait to lint
    assert "preferred_channel" in RULES.plan.user_traits


def test_an_action_that_reaches_no_user_channel_has_no_channels_to_choose() -> None:
    spec = RULES.trigger_by_id["at_risk_account"].spec
    assert (spec.action, spec.channels) == ("escalate", ())
    assert RULES.trigger_by_id["finish_setup"].spec.channels == ("email",)
