"""The guardrails, pure: each check holds, alone and together; caps never exceeded."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from itertools import count
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import event, example, given, settings
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


# Caps where each one binds: the email caps for emails; the push cap for pushes; the all-channel cap
# for the sum (2 a day, below 1 email + 2 pushes); every rule's cooldown the shortest allowed, so
# that caps, not cooldowns, decide. With the shipped 3-30 day cooldowns and 1 email a day, the two
# email rules and one push rule could never add up to more than 2 a day: an all-channel check
# could not fail.
BINDING_CAPS: dict[str, Any] = {
    "email": [{"max": 1, "per": "day"}, {"max": 3, "per": "7d"}],
    "push": [{"max": 2, "per": "day"}],
    "all": [{"max": 2, "per": "day"}, {"max": 5, "per": "7d"}],
}
CAPPED_RULES = ["finish_setup", "rescue_declining", "upgrade_power_user", "rescue_dormant"]
SHORT_COOLDOWN = timedelta(hours=1)
ZONE = ZoneInfo("America/New_York")  # TRAITS' timezone: "day" is the user's calendar day


def short_cooldowns(rules: RuleSet) -> RuleSet:
    for rule in CAPPED_RULES:
        rules = with_rule(rules, rule, cooldown=SHORT_COOLDOWN)
    return rules


def guard_in_turn(rules: RuleSet, steps: list[tuple[int, str]]) -> list[tuple[datetime, Decision, str, str]]:
    """Each step's decision judged alone, in time order, carrying the record: (at, decision, outcome, reason)."""
    record = DeliveryRecord()
    judged = []
    for minutes, rule in sorted(steps):
        at = NOON + timedelta(minutes=minutes)
        verdicts, record = guard([decision(rule, at)], record, TRAITS, False, rules, rules.guardrails, at)
        judged += [(at, v.decision, v.outcome, v.reason) for v in verdicts]
    return judged


def over_a_cap(sent: list[tuple[datetime, str]]) -> list[str]:
    """Every send that went over one of BINDING_CAPS (counting it and the sends before it)."""

    def day(at: datetime) -> object:
        return at.astimezone(ZONE).date()

    found = []
    for at, channel in sent:
        same_day = [c for o, c in sent if day(o) == day(at) and o <= at]
        last_7d = [c for o, c in sent if at - timedelta(days=7) < o <= at]
        if len(same_day) > 2 or len(last_7d) > 5:
            found.append(f"all at {at}")
        if channel == "email" and (same_day.count("email") > 1 or last_7d.count("email") > 3):
            found.append(f"email at {at}")
        if channel == "push" and same_day.count("push") > 2:
            found.append(f"push at {at}")
    return found


def why_not(at: datetime, d: Decision, sent: list[tuple[datetime, str, str]]) -> set[str]:
    """The reasons that really held when `d` was judged at `at`, given what was sent before it."""
    before = [(o, c, r) for o, c, r in sent if o <= at]
    same_day = [c for o, c, _ in before if o.astimezone(ZONE).date() == at.astimezone(ZONE).date()]
    last_7d = [c for o, c, _ in before if at - timedelta(days=7) < o]
    reasons = set()
    if any(r == d.rule and at - o < SHORT_COOLDOWN for o, _, r in before):
        reasons.add("cooldown")
    if d.channel == "email" and same_day.count("email") >= 1:
        reasons.add("cap_email_day")
    if d.channel == "email" and last_7d.count("email") >= 3:
        reasons.add("cap_email_7d")
    if d.channel == "push" and same_day.count("push") >= 2:
        reasons.add("cap_push_day")
    if len(same_day) >= 2:
        reasons.add("cap_all_day")
    if len(last_7d) >= 5:
        reasons.add("cap_all_7d")
    return reasons


# Both emails and a push on one afternoon: the all-channel cap is what stops the third.
ALL_CAP_BINDS = [(0, "finish_setup"), (60, "rescue_declining"), (120, "rescue_declining")]


@settings(max_examples=80, deadline=None)
@given(
    st.lists(
        st.tuples(
            # On the hour, over ten days: several decisions a day (so the day caps fill up) and
            # more than a week (so the 7-day ones do too); the push rule drawn as often as emails.
            st.integers(min_value=0, max_value=10 * 24).map(lambda hours: hours * 60),
            st.sampled_from([*CAPPED_RULES, "rescue_declining", "rescue_declining"]),
        ),
        min_size=1,
        max_size=60,
    )
)
@example(ALL_CAP_BINDS)
def test_no_sequence_of_decisions_exceeds_a_cap_and_nothing_is_held_back_without_one(
    steps: list[tuple[int, str]],
) -> None:
    # Given caps on email, on push and on all channels together, each of which binds
    rules = short_cooldowns(policy(caps=BINDING_CAPS))
    # When decisions come one after another over two weeks
    judged = guard_in_turn(rules, steps)
    # Then no cap is ever exceeded, per channel or all together
    sent = [(at, d.channel, d.rule) for at, d, outcome, _ in judged if outcome == "send"]
    event(f"all-channel cap held back {sum(r.startswith('cap_all') for *_, r in judged) > 0}")
    assert over_a_cap([(at, channel) for at, channel, _ in sent]) == []
    # ...and every decision held back was held back by a cap (or cooldown) that was really full:
    # something is always sent while there is room
    assert sent
    for at, d, outcome, reason in judged:
        assert outcome in ("send", "suppressed")
        if outcome == "suppressed":
            assert reason in why_not(at, d, sent), (at, d.rule, reason)


def test_the_all_channel_cap_binds_and_its_check_catches_a_guard_without_it() -> None:
    # Given two emails and a push decided on one afternoon
    with_all = short_cooldowns(policy(caps=BINDING_CAPS))
    without_all = short_cooldowns(policy(caps={k: v for k, v in BINDING_CAPS.items() if k != "all"}))
    # When the guardrails judge them with the all-channel cap, and without it
    capped = guard_in_turn(with_all, ALL_CAP_BINDS)
    uncapped = guard_in_turn(without_all, ALL_CAP_BINDS)
    # Then with it, the third is stopped by the all-channel cap (no other cap is full), while
    # without it all three go and the property's check reports the day over the cap
    assert [(d.channel, outcome, reason) for _, d, outcome, reason in capped] == [
        ("email", "send", ""),
        ("push", "send", ""),
        ("push", "suppressed", "cap_all_day"),
    ]
    sent = [(at, d.channel) for at, d, outcome, _ in uncapped if outcome == "send"]
    assert len(sent) == 3
    assert over_a_cap(sent) == [f"all at {sent[2][0]}"]


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
