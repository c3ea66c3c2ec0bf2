"""Lift on a small hand-made history: the counts, rates, interval and warnings are right."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from nudge.domain.lift import LiftRow, exposures, lift
from nudge.model.decisions import Decision
from nudge.model.ledger import LedgerEntry
from nudge.model.state import AccountState, EventStats, Stamped, UserState
from nudge.rulebook.loader import load_rules
from nudge.rulebook.ruleset import GoalSpec, RuleSet
from tests.shipped import ONE_SHOT_DIR

RULES = load_rules(ONE_SHOT_DIR)
T0 = datetime(2025, 3, 3, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)
NOW = T0 + 60 * DAY


def with_goals(**goals: dict[str, Any]) -> RuleSet:
    """The shipped rules, with exactly these rules having these goals."""
    triggers = [
        dataclasses.replace(
            t,
            spec=t.spec.model_copy(
                update={"goal": GoalSpec.model_validate(goals[t.id]) if t.id in goals else None}
            ),
        )
        for t in RULES.triggers
    ]
    return dataclasses.replace(RULES, triggers=triggers)


def entry(
    user: str,
    rule: str,
    at: datetime,
    outcome: str = "send",
    status: str = "sent",
    account: str | None = None,
) -> LedgerEntry:
    decision = Decision(
        decision_id=f"{rule}-{user}-{at.timestamp()}",
        user=user,
        account=account,
        rule=rule,
        kind="onboarding",
        action="email",
        channel="email",
        template="t",
        priority=50,
        reason="",
        facts={},
        decided_at=at,
    )
    return LedgerEntry(decision=decision, outcome=outcome, status=status, recorded_at=at, updated_at=at)


def user(user_id: str, **events: datetime) -> UserState:
    stats = {
        name: EventStats(count=1, first=at, last=at, daily={at.date().toordinal(): 1})
        for name, at in events.items()
    }
    return UserState(user_id=user_id, events=stats)


def test_counts_rates_and_interval_for_a_rule_that_works() -> None:
    # Given finish_setup aims at setup within 7 days; 40 users emailed, 40 held out
    rules = with_goals(finish_setup={"event": "setup_completed", "within": "7d"})
    entries, users = [], {}
    for n in range(40):
        entries.append(entry(f"t{n}", "finish_setup", T0))
        # 24 of the emailed finish setup within the week (one on day 8: too late)
        setup = T0 + (2 * DAY if n < 24 else 8 * DAY)
        users[f"t{n}"] = user(f"t{n}", setup_completed=setup)
    for n in range(40):
        entries.append(entry(f"c{n}", "finish_setup", T0, outcome="held_out", status=""))
        users[f"c{n}"] = user(f"c{n}", **({"setup_completed": T0 + 3 * DAY} if n < 8 else {}))
    # ... and a second decision for one emailed user counts once (first exposure)
    entries.append(entry("t0", "finish_setup", T0 + 10 * DAY))
    # When lift is computed
    (row,) = lift(rules, entries, users, {}, NOW)
    # Then
    assert (row.treated, row.treated_reached, row.control, row.control_reached) == (40, 24, 40, 8)
    assert row.treated_rate == pytest.approx(0.6)
    assert row.control_rate == pytest.approx(0.2)
    assert row.difference == pytest.approx(0.4)
    assert row.interval is not None
    low, high = row.interval
    # The always-valid interval (nudge.domain.experiment), by hand: smoothed rates 25/42 and 9/42,
    # V = (25/42)(17/42)/40 + (9/42)(33/42)/40 = 0.010232; tau^2 = 0.01;
    # half width = sqrt(2 V (V + tau^2) / tau^2 * (ln 20 + ln((V + tau^2) / V) / 2)) = 0.3717
    assert low == pytest.approx(0.4 - 0.3717, abs=1e-3)
    assert high == pytest.approx(0.4 + 0.3717, abs=1e-3)
    assert row.warning == ""
    assert row.verdict == "works"


def test_small_groups_get_a_plain_warning_and_no_verdict() -> None:
    rules = with_goals(finish_setup={"event": "setup_completed", "within": "7d"})
    entries = [entry("a", "finish_setup", T0), entry("b", "finish_setup", T0, outcome="held_out", status="")]
    (row,) = lift(rules, entries, {"a": user("a"), "b": user("b")}, {}, NOW)
    assert "too few users" in row.warning
    assert row.verdict == "can't say yet"


def test_pending_windows_suppressed_and_unsent_decisions_are_left_out() -> None:
    rules = with_goals(rescue_dormant={"event": "any", "within": "14d"})
    entries = [
        entry("late", "rescue_dormant", NOW - 3 * DAY),  # window still open
        entry("supp", "rescue_dormant", T0, outcome="suppressed", status=""),
        entry("fail", "rescue_dormant", T0, status="failed"),
        entry("ok", "rescue_dormant", T0),
    ]
    users = {name: user(name, project_created=T0 + DAY) for name in ("late", "supp", "fail", "ok")}
    (row,) = lift(rules, entries, users, {}, NOW)
    assert (row.treated, row.treated_reached, row.control, row.pending) == (1, 1, 0, 1)


def test_goals_by_milestone_and_account_trait() -> None:
    rules = with_goals(
        invite_a_teammate={"milestone": "activated", "within": "7d"},
        upgrade_power_user={"account_trait": "plan", "within": "30d"},
    )
    activated = UserState(user_id="a", milestones={"activated": T0 + 2 * DAY})
    never = UserState(user_id="b")
    entries = [
        entry("a", "invite_a_teammate", T0),
        entry("b", "invite_a_teammate", T0),
        entry("a", "upgrade_power_user", T0, account="acme"),
        entry("b", "upgrade_power_user", T0, outcome="held_out", status="", account="globex"),
    ]
    accounts = {
        "acme": AccountState(
            account_id="acme", traits={"plan": Stamped(v="business", at=T0 + 20 * DAY, mid="m")}
        ),
        "globex": AccountState(account_id="globex", traits={"plan": Stamped(v="team", at=T0 - DAY, mid="m")}),
    }
    rows = {r.rule: r for r in lift(rules, entries, {"a": activated, "b": never}, accounts, NOW)}
    assert (rows["invite_a_teammate"].treated, rows["invite_a_teammate"].treated_reached) == (2, 1)
    upgrade = rows["upgrade_power_user"]
    assert (upgrade.treated_reached, upgrade.control, upgrade.control_reached) == (1, 1, 0)


def test_the_first_exposure_decides_the_group() -> None:
    entries = [
        entry("u", "finish_setup", T0 + DAY),
        entry("u", "finish_setup", T0, outcome="held_out", status=""),
    ]
    (first,) = exposures(entries)["finish_setup"]
    assert first.treated is False
    assert first.at == T0


def test_a_difference_whose_interval_spans_zero_is_no_effect() -> None:
    row = LiftRow("r", "g", treated=100, treated_reached=30, control=100, control_reached=28, pending=0)
    assert row.verdict == "no effect seen"


def test_a_look_days_after_the_first_exposure_is_early_but_keeps_its_verdict() -> None:
    # Given a rule whose first users were emailed or held out three days ago, windows of one day
    rules = with_goals(finish_setup={"event": "setup_completed", "within": "1d"})
    start = NOW - 3 * DAY
    entries, users = [], {}
    for n in range(100):
        entries.append(entry(f"t{n}", "finish_setup", start))
        users[f"t{n}"] = user(f"t{n}", **({"setup_completed": start + DAY / 2} if n < 60 else {}))
        entries.append(entry(f"c{n}", "finish_setup", start, outcome="held_out", status=""))
        users[f"c{n}"] = user(f"c{n}", **({"setup_completed": start + DAY / 2} if n < 20 else {}))
    # When lift is computed now
    (row,) = lift(rules, entries, users, {}, NOW)
    # Then the look is early (not a full week), and the interval still gives its verdict
    assert row.early.startswith("looked at early: 3.0 days")
    assert row.warning == ""
    assert row.verdict == "works"
    # A week later it is no longer early
    (later,) = lift(rules, entries, users, {}, NOW + 5 * DAY)
    assert later.early == ""
