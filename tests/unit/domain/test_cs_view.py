"""The customer-success view of escalations, and marking one handled, on the in-memory fakes."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta

import pytest

from nudge.adapters.memory import MemoryLedger, MemoryRechecks, MemoryRouter, MemoryUsageStore
from nudge.domain.cs_view import CaseRecord, escalation_row, format_age, recent_usage
from nudge.model.decisions import Decision
from nudge.model.ledger import Escalation
from nudge.model.queue import DecisionBatch
from nudge.model.state import AccountRollup, AccountState, Stamped, UserState, WeekRollup
from nudge.model.versioned import Versioned
from nudge.services.dispatch import DispatchPorts, dispatch
from nudge.services.escalations import CaseRepository, NoOpenEscalation, handle_escalation, open_escalations
from tests.shipped import UNHELD

RULES = UNHELD  # no holdouts: a send must not turn into held_out by the user id's hash
NOW = datetime(2026, 3, 4, 17, 0, tzinfo=UTC)  # a Wednesday, noon in New York
OPEN_FOR = RULES.guardrails.spec.escalations.open_for
NEXT_STEP = RULES.trigger_by_id["at_risk_account"].spec.next_step


def escalate(user: str, account: str, decision_id: str, at: datetime = NOW) -> Decision:
    return Decision(
        decision_id=decision_id,
        user=user,
        account=account,
        rule="at_risk_account",
        kind="escalation",
        action="escalate",
        channel="cs",
        template="cs_escalation",
        priority=90,
        reason="A user of a high-value account is declining or dormant.",
        facts={"lifecycle segment": "declining", "account band": "high"},
        decided_at=at,
    )


def marketing(user: str, account: str, at: datetime) -> Decision:
    spec = RULES.trigger_by_id["upgrade_power_user"].spec
    return Decision(
        decision_id=f"m-{uuid.uuid4().hex[:8]}",
        user=user,
        account=account,
        rule=spec.id,
        kind=spec.kind,
        action=spec.action,
        channel=spec.action,
        template=spec.template,
        priority=spec.priority,
        reason="test",
        facts={},
        decided_at=at,
    )


def stamped(values: dict[str, object]) -> dict[str, Stamped]:
    return {k: Stamped(v=v, at=NOW - timedelta(days=60), mid="m") for k, v in values.items()}


def a_world(account: str, user: str) -> tuple[DispatchPorts, CaseRepository]:
    """An account (Initech, business plan, 9,000 MRR, 40 seats, owned by Sam) with one user."""
    usage = MemoryUsageStore()
    usage.accounts[account] = Versioned(
        AccountState(
            account_id=account,
            traits=stamped(
                {"name": "Initech", "plan": "business", "mrr": 9000, "seats": 40, "cs_owner": "Sam"}
            ),
        ),
        1,
    )
    usage.rollups[account] = AccountRollup(
        weeks={
            "2026-W06": WeekRollup(active_users=30, sessions=200),  # older than four weeks: not shown
            "2026-W07": WeekRollup(active_users=25, sessions=140),
            "2026-W08": WeekRollup(active_users=12, sessions=50),
            "2026-W10": WeekRollup(active_users=2, sessions=3),  # this week, so far
        }
    )
    traits = {
        "email": f"{user}@example.com",
        "timezone": "America/New_York",
        "plan": "team",
        "consent": {"email": True, "push": True},
    }
    usage.users[user] = Versioned(
        UserState(user_id=user, traits=stamped(traits), account=Stamped(v=account, at=NOW, mid="g")), 1
    )
    ledger = MemoryLedger()
    ports = DispatchPorts(ledger=ledger, usage=usage, router=MemoryRouter(), rechecks=MemoryRechecks())
    return ports, CaseRepository(ledger, usage)


def ids() -> tuple[str, str]:
    suffix = uuid.uuid4().hex[:8]
    return f"acct-{suffix}", f"user-{suffix}"


def test_an_open_escalation_shows_the_account_its_health_why_what_next_and_four_weeks_of_usage() -> None:
    # Given an account escalated by dispatch two days ago
    account, user = ids()
    ports, repo = a_world(account, user)
    opened = NOW - timedelta(days=2, hours=3)
    dispatch(
        DecisionBatch(
            user=user,
            account=account,
            decided_at=opened,
            decisions=[escalate(user, account, "esc-1", opened)],
        ),
        RULES,
        ports,
        opened,
    )
    # When CS looks at the open escalations
    view = open_escalations(repo, RULES, NOW)
    # Then the account is there with everything an agent needs
    assert view.count == 1
    row = view.escalations[0]
    assert (row.account_id, row.account_name, row.plan, row.mrr, row.seats, row.cs_owner) == (
        account,
        "Initech",
        "business",
        9000.0,
        40,
        "Sam",
    )
    assert (row.score, row.band) == (120.0, "high")  # big and mid contract, many seats, paid plan
    assert row.rule == "at_risk_account"
    assert row.reason == "A user of a high-value account is declining or dormant."
    assert row.facts == {"lifecycle segment": "declining", "account band": "high"}
    assert row.next_step == NEXT_STEP
    assert row.case_id == "esc-1"
    assert (row.status, row.opened_at, row.age_seconds) == ("open", opened, (2 * 24 + 3) * 3600)
    assert row.open_until == opened + OPEN_FOR
    assert [(w.week_start, w.active_users, w.sessions) for w in row.usage] == [
        (date(2026, 2, 9), 25, 140),
        (date(2026, 2, 16), 12, 50),
        (date(2026, 2, 23), 0, 0),  # nobody active that week
        (date(2026, 3, 2), 2, 3),
    ]


def test_the_view_never_names_the_user_who_raised_the_escalation() -> None:
    # Given an escalation raised by a user whose id is an email address
    account, _ = ids()
    user = f"{uuid.uuid4().hex[:6]}@example.com"
    ports, repo = a_world(account, user)
    dispatch(
        DecisionBatch(
            user=user, account=account, decided_at=NOW, decisions=[escalate(user, account, "esc-2")]
        ),
        RULES,
        ports,
        NOW,
    )
    # When the view is rendered as JSON
    shown = open_escalations(repo, RULES, NOW).model_dump_json()
    # Then the account is in it and the user is not
    assert account in shown
    assert user not in shown


def test_handled_and_expired_escalations_show_only_with_all_and_newest_come_first() -> None:
    # Given three accounts' escalations: open, handled (with a note), and open past open_for
    ledger, usage = MemoryLedger(), MemoryUsageStore()
    repo = CaseRepository(ledger, usage)
    opened = {"a-open": NOW - timedelta(days=1), "a-handled": NOW - timedelta(hours=5)}
    opened["a-expired"] = NOW - OPEN_FOR - timedelta(hours=1)
    for account, at in opened.items():
        ledger.escalations[account] = Versioned(
            Escalation(decision_id=f"d-{account}", rule="at_risk_account", user="u", opened_at=at), 1
        )
    assert ledger.handle_escalation_noted("a-handled", "d-a-handled", "Kim", "renewal call booked", NOW)
    # When CS lists them, without and with --all
    only_open = open_escalations(repo, RULES, NOW)
    everything = open_escalations(repo, RULES, NOW, include_closed=True)
    # Then only the open one, or all three newest first, the handled one saying who, when and what
    assert [r.account_id for r in only_open.escalations] == ["a-open"]
    assert [(r.account_id, r.status) for r in everything.escalations] == [
        ("a-handled", "handled"),
        ("a-open", "open"),
        ("a-expired", "expired"),
    ]
    handled = everything.escalations[0]
    assert (handled.handled_by, handled.handled_at, handled.note) == ("Kim", NOW, "renewal call booked")


def test_marking_it_handled_lifts_the_marketing_suppression_for_the_account() -> None:
    # Given an escalated account whose marketing the guardrails hold back
    account, user = ids()
    ports, repo = a_world(account, user)
    first = dispatch(
        DecisionBatch(
            user=user,
            account=account,
            decided_at=NOW,
            decisions=[escalate(user, account, "esc-3"), marketing(user, account, NOW)],
        ),
        RULES,
        ports,
        NOW,
    )
    assert [(v.decision.rule, v.outcome, v.reason) for v in first.verdicts] == [
        ("at_risk_account", "send", ""),
        ("upgrade_power_user", "suppressed", "account_escalated"),
    ]
    # When an agent marks it handled
    later = NOW + timedelta(hours=2)
    handled = handle_escalation(repo, RULES, account, "Sam", "called the owner", later)
    # Then it says what was done, the escalation is no longer open, and marketing is sent again
    assert (handled.account_name, handled.handled_by, handled.note, handled.case_id) == (
        "Initech",
        "Sam",
        "called the owner",
        "esc-3",
    )
    assert handled.marketing_resumed
    stored = repo.escalation(account)
    assert stored is not None
    assert not stored[0].is_open(later, OPEN_FOR)
    assert open_escalations(repo, RULES, later).count == 0
    after = dispatch(
        DecisionBatch(
            user=user, account=account, decided_at=later, decisions=[marketing(user, account, later)]
        ),
        RULES,
        ports,
        later,
    )
    assert [v.outcome for v in after.verdicts] == ["send"]


def test_handling_an_account_without_an_open_escalation_says_why() -> None:
    # Given an account never escalated, one already handled, and one past open_for
    ledger, usage = MemoryLedger(), MemoryUsageStore()
    repo = CaseRepository(ledger, usage)
    for account, at in (("a-done", NOW - timedelta(days=1)), ("a-stale", NOW - OPEN_FOR)):
        ledger.escalations[account] = Versioned(
            Escalation(decision_id=f"d-{account}", rule="at_risk_account", user="u", opened_at=at), 1
        )
    assert ledger.handle_escalation_noted("a-done", "d-a-done", "Kim", "", NOW - timedelta(hours=1))
    # When an agent tries to mark each handled, then each is refused with the reason
    with pytest.raises(NoOpenEscalation, match="no escalation on record"):
        handle_escalation(repo, RULES, "a-never", "Sam", "", NOW)
    with pytest.raises(NoOpenEscalation, match="handled by Kim"):
        handle_escalation(repo, RULES, "a-done", "Sam", "", NOW)
    with pytest.raises(NoOpenEscalation, match="closed by itself after 30d"):
        handle_escalation(repo, RULES, "a-stale", "Sam", "", NOW)
    # ... and nothing changed
    done = repo.escalation("a-done")
    assert done is not None
    assert done[0].handled_by == "Kim"


def test_a_row_without_its_decision_entry_falls_back_to_the_rule() -> None:
    # Given an escalation whose decision entry is gone (expired from the ledger), and no traits
    escalation = Escalation(decision_id="d-x", rule="at_risk_account", user="u", opened_at=NOW)
    # When its row is built
    row = escalation_row(CaseRecord("acct-x", escalation), RULES, NOW + timedelta(minutes=7))
    # Then the rule's own description and next step stand in, the account id names it
    assert row.reason == RULES.trigger_by_id["at_risk_account"].spec.description
    assert (row.next_step, row.facts, row.account_name, row.band) == (NEXT_STEP, {}, "acct-x", "low")
    assert format_age(row.age_seconds) == "7m"


def test_usage_covers_the_last_four_iso_weeks_even_when_the_account_was_idle() -> None:
    weeks = recent_usage(AccountRollup(), NOW)
    assert [(w.week_start, w.active_users, w.sessions) for w in weeks] == [
        (date(2026, 2, 9), 0, 0),
        (date(2026, 2, 16), 0, 0),
        (date(2026, 2, 23), 0, 0),
        (date(2026, 3, 2), 0, 0),
    ]


def test_ages_read_as_the_two_largest_units() -> None:
    assert [format_age(s) for s in (59, 3600 * 5 + 60 * 12, 86400 * 3 + 3600 * 4)] == [
        "0m",
        "5h 12m",
        "3d 4h",
    ]


def test_an_entry_unrelated_to_the_escalation_is_not_mistaken_for_it() -> None:
    # Given an account whose escalation was re-opened under a new decision
    ledger = MemoryLedger()
    ledger.escalations["a1"] = Versioned(
        Escalation(decision_id="d-new", rule="at_risk_account", user="u", opened_at=NOW), 3
    )
    # When a handle meant for the old one arrives, then it changes nothing
    assert ledger.handle_escalation_noted("a1", "d-old", "Kim", "", NOW) is None
    assert ledger.escalations["a1"].value.handled_at is None
