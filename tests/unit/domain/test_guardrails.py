"""The guardrails, pure: each check holds, alone and together; caps never exceeded."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from itertools import count
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nudge.domain.verdicts import guard, guard_escalation, in_group, quiet_until
from nudge.model.decisions import Decision
from nudge.model.delivery import DeliveryRecord
from nudge.rulebook.guardrails import Guardrails, GuardrailsFile
from nudge.rulebook.ruleset import RuleSet
from tests.shipped import UNHELD

RULES = UNHELD  # no holdouts: these tests are about what else happens to a decision
# A Tuesday, 15:00 in New York (20:00Z): outside quiet hours there.
NOON = datetime(2025, 3, 4, 20, 0, tzinfo=UTC)
_ids = count()

TRAITS: dict[str, Any] = {
    "email": "ada@example.com",
    "phone": "+12025550123",
    "push_token": "device-token",
    "timezone": "America/New_York",
    "consent": {"email": True, "push": True, "sms": True},
}


def policy(**changes: Any) -> RuleSet:
    """The shipped rules with guardrails.yaml replaced by the given sections (no control group)."""
    base: dict[str, Any] = {
        "sender": {"email_from": "Acme <hello@acme.example>"},
        "holdout": {"control_group": 0},
    }
    spec = GuardrailsFile.model_validate({**base, **changes})
    return dataclasses.replace(RULES, guardrails=Guardrails(spec, "guardrails.yaml"))


def decision(rule: str = "finish_setup", at: datetime = NOON, user: str = "u1", **changes: Any) -> Decision:
    trigger = RULES.trigger_by_id[rule].spec
    values: dict[str, Any] = {
        "decision_id": f"d{next(_ids)}",
        "user": user,
        "account": "a1",
        "rule": rule,
        "kind": trigger.kind,
        "action": trigger.action,
        "channel": {"escalate": "cs"}.get(trigger.action, trigger.action),
        "template": trigger.template,
        "priority": trigger.priority,
        "reason": "test",
        "facts": {},
        "decided_at": at,
    }
    return Decision(**{**values, **changes})


def run(
    rules: RuleSet,
    decisions: list[Decision],
    record: DeliveryRecord | None = None,
    traits: dict[str, Any] | None = None,
    escalated: bool = False,
    now: datetime = NOON,
) -> tuple[list[tuple[str, str, str]], DeliveryRecord]:
    verdicts, after = guard(
        decisions,
        record or DeliveryRecord(),
        TRAITS if traits is None else traits,
        escalated,
        rules,
        rules.guardrails,
        now,
    )
    return [(v.decision.rule, v.outcome, v.reason) for v in verdicts], after


def sent_through(rules: RuleSet, times: list[datetime], rule: str = "finish_setup", **kw: Any) -> list[str]:
    """Decide `rule` at each time in turn, carrying the record; the outcome of each."""
    record = DeliveryRecord()
    outcomes = []
    for at in times:
        result, record = run(rules, [decision(rule, at)], record, now=at, **kw)
        outcomes.append(result[0][1] if result[0][2] == "" else f"{result[0][1]}:{result[0][2]}")
    return outcomes


# ------------------------------------------------------------------------------------------ caps


def test_a_daily_cap_counts_the_users_calendar_day_not_utcs() -> None:
    # Given 1 email a day, and a user in Tokyo (UTC+9)
    rules = policy(caps={"email": [{"max": 1, "per": "day"}]})
    tokyo = {**TRAITS, "timezone": "Asia/Tokyo"}
    # When a rule with no cooldown in the way fires at 23:30 and 00:30 Tokyo time (same UTC day)
    first = datetime(2025, 3, 4, 14, 30, tzinfo=UTC)  # 23:30 in Tokyo
    second = first + timedelta(hours=1)  # 00:30 the next day in Tokyo
    record = DeliveryRecord()
    a, record = run(rules, [decision("upgrade_power_user", first)], record, tokyo, now=first)
    b, record = run(rules, [decision("rescue_dormant", second)], record, tokyo, now=second)
    c, _ = run(
        rules,
        [decision("finish_setup", second + timedelta(minutes=5))],
        record,
        tokyo,
        now=second + timedelta(minutes=5),
    )
    # Then both go (different local days) and a third that day is capped
    assert [a[0][1], b[0][1]] == ["send", "send"]
    assert c[0][1:] == ("suppressed", "cap_email_day")


def with_rule(rules: RuleSet, rule: str, **changes: Any) -> RuleSet:
    trigger = RULES.trigger_by_id[rule]
    changed = dataclasses.replace(trigger, spec=trigger.spec.model_copy(update=changes))
    return dataclasses.replace(rules, triggers=[changed if t.id == rule else t for t in rules.triggers])


def test_several_caps_hold_at_once_and_a_rolling_week_counts_the_last_seven_days() -> None:
    # Given 1 push a day and 2 in any 7 days, and a rule with a short cooldown
    rules = with_rule(
        policy(caps={"push": [{"max": 1, "per": "day"}, {"max": 2, "per": "7d"}]}),
        "rescue_declining",
        cooldown=timedelta(hours=1),
    )
    hours = [0, 2, 24, 48, 7 * 24, 8 * 24 - 1]
    # When the rule fires at each of these times
    outcomes = sent_through(rules, [NOON + timedelta(hours=h) for h in hours], "rescue_declining")
    # Then: sent; capped by the day; sent; capped by the 7 days; sent (the first left the window);
    # capped (the third and fifth are within 7 days)
    assert outcomes == [
        "send",
        "suppressed:cap_push_day",
        "send",
        "suppressed:cap_push_7d",
        "send",
        "suppressed:cap_push_7d",
    ]


def test_a_global_cap_counts_every_channel_together() -> None:
    rules = policy(caps={"all": [{"max": 2, "per": "day"}]})
    record = DeliveryRecord()
    outcomes = []
    for n, rule in enumerate(["finish_setup", "rescue_declining", "upgrade_power_user"]):
        at = NOON + timedelta(minutes=n)
        result, record = run(rules, [decision(rule, at)], record, now=at)
        outcomes.append(result[0][2] or result[0][1])
    assert outcomes == ["send", "send", "cap_all_day"]


def test_a_journey_cap_counts_the_rules_of_that_journey_only() -> None:
    # Given at most 1 onboarding message a week
    rules = policy(journeys={"onboarding": [{"max": 1, "per": "week"}]})
    record = DeliveryRecord()
    outcomes = []
    for n, rule in enumerate(["finish_setup", "create_first_project", "upgrade_power_user"]):
        at = NOON + timedelta(hours=n)
        result, record = run(rules, [decision(rule, at)], record, now=at)
        outcomes.append(result[0][2] or result[0][1])
    assert outcomes == ["send", "cap_onboarding_week", "send"]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=14 * 24 * 60),  # minutes from the start
            st.sampled_from(["finish_setup", "rescue_declining", "upgrade_power_user", "rescue_dormant"]),
        ),
        min_size=1,
        max_size=40,
    )
)
def test_no_sequence_of_decisions_ever_exceeds_a_cap(steps: list[tuple[int, str]]) -> None:
    rules = policy(
        caps={
            "email": [{"max": 1, "per": "day"}, {"max": 3, "per": "7d"}],
            "all": [{"max": 2, "per": "day"}],
        },
    )
    record = DeliveryRecord()
    sent: list[tuple[datetime, str]] = []
    for minutes, rule in sorted(steps):
        at = NOON + timedelta(minutes=minutes)
        verdicts, record = guard([decision(rule, at)], record, TRAITS, False, rules, rules.guardrails, at)
        sent += [(at, v.decision.channel) for v in verdicts if v.outcome == "send"]
    zone = ZoneInfo("America/New_York")
    emails = [at for at, channel in sent if channel == "email"]
    for at in emails:
        assert sum(1 for other in emails if other.astimezone(zone).date() == at.astimezone(zone).date()) <= 1
        assert sum(1 for other in emails if at - timedelta(days=7) < other <= at) <= 3
    for at, _ in sent:
        assert sum(1 for o, _ in sent if o.astimezone(zone).date() == at.astimezone(zone).date()) <= 2


# ------------------------------------------------------------------- priority, cooldown, once


def test_one_message_per_evaluation_the_highest_priority_wins() -> None:
    rules = policy()
    result, _ = run(
        rules, [decision("upgrade_power_user"), decision("rescue_dormant"), decision("finish_setup")]
    )
    assert sorted(result) == sorted(
        [
            ("rescue_dormant", "send", ""),
            ("finish_setup", "suppressed", "lower_priority"),
            ("upgrade_power_user", "suppressed", "lower_priority"),
        ]
    )


def test_a_higher_priority_rule_that_cannot_be_sent_leaves_the_slot_to_the_next() -> None:
    # Given no push consent: the rescue push (priority 70) cannot go
    rules = policy()
    traits = {**TRAITS, "consent": {"email": True, "push": False}}
    result, _ = run(rules, [decision("rescue_declining"), decision("finish_setup")], traits=traits)
    assert dict((r, (o, why)) for r, o, why in result) == {
        "rescue_declining": ("suppressed", "no_consent"),
        "finish_setup": ("send", ""),
    }


def test_a_rule_is_not_sent_again_within_its_cooldown_and_a_once_rule_never() -> None:
    rules = policy()
    cooldown = RULES.trigger_by_id["finish_setup"].spec.cooldown
    times = [NOON, NOON + cooldown - timedelta(minutes=1), NOON + cooldown + timedelta(days=1)]
    assert sent_through(rules, times) == ["send", "suppressed:cooldown", "send"]
    once_rules = with_rule(rules, "finish_setup", once=True)
    assert sent_through(once_rules, [NOON, NOON + timedelta(days=90)]) == ["send", "suppressed:once"]


# ------------------------------------------------------------------------ consent, address


@pytest.mark.parametrize(
    ("traits", "unsubscribed", "reason"),
    [
        ({"email": None}, set(), "no_address"),
        ({"consent": {"email": False}}, set(), "no_consent"),
        ({}, {"email"}, "unsubscribed"),
        ({}, {"email:onboarding"}, "unsubscribed"),
        ({}, {"onboarding"}, "unsubscribed"),
        ({}, {"all"}, "unsubscribed"),
        ({}, {"email:upgrade"}, ""),
        ({"consent": None}, set(), ""),  # email is opt-out: no answer is a yes
    ],
)
def test_consent_and_preferences_for_an_opt_out_channel(
    traits: dict[str, Any], unsubscribed: set[str], reason: str
) -> None:
    result, _ = run(
        policy(), [decision("finish_setup")], DeliveryRecord(unsubscribed=unsubscribed), {**TRAITS, **traits}
    )
    assert result[0][2] == reason


def test_an_opt_in_channel_needs_a_yes() -> None:
    no_answer = {**TRAITS, "consent": {"email": True}}
    result, _ = run(policy(), [decision("rescue_declining")], traits=no_answer)
    assert result[0][1:] == ("suppressed", "no_consent")


def test_a_transactional_rule_skips_marketing_preferences_caps_and_quiet_hours() -> None:
    rules = with_rule(
        policy(caps={"email": [{"max": 0, "per": "day"}]}, holdout={"control_group": 100}),
        "finish_setup",
        transactional=True,
    )
    result, _ = run(rules, [decision("finish_setup")], DeliveryRecord(unsubscribed={"all"}), escalated=True)
    assert result[0][1:] == ("send", "")
    # ... but still needs somewhere to send to
    result, _ = run(rules, [decision("finish_setup")], traits={**TRAITS, "email": ""})
    assert result[0][1:] == ("suppressed", "no_address")


# ----------------------------------------------------------------------------- quiet hours


def test_quiet_hours_defer_to_their_end_in_the_users_timezone() -> None:
    rules = policy(quiet_hours={"start": "21:00", "end": "08:00", "channels": ["push"]})
    late = datetime(2025, 3, 5, 3, 0, tzinfo=UTC)  # 22:00 in New York
    verdicts, after = guard(
        [decision("rescue_declining", late)], DeliveryRecord(), TRAITS, False, rules, rules.guardrails, late
    )
    assert verdicts[0].outcome == "deferred"
    assert verdicts[0].deliver_at == datetime(2025, 3, 5, 8, 0, tzinfo=ZoneInfo("America/New_York"))
    assert after.sends == []  # a deferral takes no cap: it is judged again when it comes back


def test_quiet_hours_use_the_fallback_timezone_and_a_rule_may_drop() -> None:
    rules = policy(
        quiet_hours={
            "start": "21:00",
            "end": "08:00",
            "fallback_timezone": "Europe/Paris",
            "when_quiet": "drop",
        }
    )
    at = datetime(2025, 3, 4, 22, 30, tzinfo=UTC)  # 23:30 in Paris, 17:30 in New York
    result, _ = run(
        rules, [decision("rescue_declining", at)], traits={**TRAITS, "timezone": "Mars/Olympus"}, now=at
    )
    assert result[0][1:] == ("suppressed", "quiet_hours")
    result, _ = run(rules, [decision("rescue_declining", at)], now=at)
    assert result[0][1:] == ("send", "")
    # Email is not in the quiet channels by default
    result, _ = run(rules, [decision("finish_setup", at)], traits={**TRAITS, "timezone": None}, now=at)
    assert result[0][1:] == ("send", "")


@pytest.mark.parametrize(
    ("local", "expected_end"),
    [
        ("2025-03-04T21:00", "2025-03-05T08:00"),
        ("2025-03-04T23:59", "2025-03-05T08:00"),
        ("2025-03-05T07:59", "2025-03-05T08:00"),
        ("2025-03-05T08:00", None),
        ("2025-03-04T20:59", None),
    ],
)
def test_quiet_hours_spanning_midnight(local: str, expected_end: str | None) -> None:
    zone = ZoneInfo("Europe/Berlin")
    quiet = policy(quiet_hours={"start": "21:00", "end": "08:00"}).guardrails.spec.quiet_hours
    assert quiet is not None
    end = quiet_until(quiet, zone, datetime.fromisoformat(local).replace(tzinfo=zone))
    assert end == (datetime.fromisoformat(expected_end).replace(tzinfo=zone) if expected_end else None)


# ------------------------------------------------------------------- holdouts, escalations


def test_the_control_group_is_deterministic_and_near_its_percentage() -> None:
    members = [in_group("salt", f"user-{n}", 10) for n in range(5000)]
    assert members == [in_group("salt", f"user-{n}", 10) for n in range(5000)]
    assert 400 < sum(members) < 600
    assert members != [in_group("other salt", f"user-{n}", 10) for n in range(5000)]


def test_held_out_users_are_recorded_not_sent_and_take_the_slot() -> None:
    rules = policy(holdout={"control_group": 100})
    verdicts, after = guard(
        [decision("rescue_dormant"), decision("finish_setup")],
        DeliveryRecord(),
        TRAITS,
        False,
        rules,
        rules.guardrails,
        NOON,
    )
    assert [(v.decision.rule, v.outcome, v.reason) for v in verdicts] == [
        ("rescue_dormant", "held_out", "control_group"),
        ("finish_setup", "suppressed", "lower_priority"),
    ]
    assert after.sends == []
    assert "rescue_dormant" in after.last_by_rule


def test_a_rules_holdout_holds_out_that_share_of_users_for_that_rule_only() -> None:
    rules = with_rule(policy(), "finish_setup", holdout=50.0)
    outcomes = [run(rules, [decision("finish_setup", user=f"u{n}")])[0][0][1] for n in range(400)]
    assert 150 < outcomes.count("held_out") < 250
    others = [run(rules, [decision("upgrade_power_user", user=f"u{n}")])[0][0][1] for n in range(50)]
    assert set(others) == {"send"}


def test_an_open_escalation_holds_back_marketing_and_a_second_escalation() -> None:
    result, _ = run(policy(), [decision("rescue_dormant")], escalated=True)
    assert result[0][1:] == ("suppressed", "account_escalated")
    assert guard_escalation(decision("at_risk_account"), open_escalation=True).reason == "escalation_open"
    assert guard_escalation(decision("at_risk_account"), open_escalation=False).outcome == "send"


def test_the_record_after_a_send_still_knows_which_merged_ids_it_adopted() -> None:
    # Forgotten, dispatch would adopt them again on every run and merge their old sends in again.
    rules = policy()
    before = DeliveryRecord(adopted=["old-id"])

    verdicts, after = run(rules, [decision()], record=before)

    assert verdicts == [("finish_setup", "send", "")]
    assert after.adopted == ["old-id"]
