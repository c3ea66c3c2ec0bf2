"""What is next for a user: deferrals coming due, the re-check, each rule that holds with its
cooldown's end or `once`, soonest first."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

from nudge.domain.upcoming import upcoming
from nudge.model.decisions import Decision
from nudge.model.delivery import DeliveryRecord
from nudge.model.ledger import LedgerEntry
from nudge.model.segments import SegmentRecord
from tests.shipped import RULES

NOW = datetime(2026, 11, 25, 17, 0, tzinfo=UTC)
DAY = timedelta(days=1)


def deferred(rule: str, until: datetime) -> LedgerEntry:
    decision = Decision(
        decision_id=f"{rule}-d",
        user="ann",
        account=None,
        rule=rule,
        kind="rescue",
        action="push",
        channel="push",
        template="t",
        priority=50,
        reason="",
        facts={},
        decided_at=NOW,
    )
    return LedgerEntry(
        decision=decision,
        outcome="deferred",
        reason="quiet_hours",
        deliver_at=until,
        recorded_at=NOW,
        updated_at=NOW,
    )


def test_soonest_first_with_what_each_is() -> None:
    record = SegmentRecord(next_check_at=NOW + 2 * DAY)
    delivery = DeliveryRecord(last_by_rule={"finish_setup": NOW - DAY})
    items = upcoming(
        RULES,
        ["finish_setup", "create_first_project"],
        record,
        [deferred("rescue_declining", NOW + timedelta(hours=15))],
        delivery,
        NOW,
    )
    assert [(i.at, i.what.split(":")[0].split(" holds")[0]) for i in items] == [
        (NOW + timedelta(hours=15), "rescue_declining (push), deferred for quiet_hours"),
        (NOW + 2 * DAY, "finish_setup"),  # sent a day ago, cooldown 3 days
        (NOW + 2 * DAY, "time-based re-check"),
        (None, "create_first_project"),  # never sent: at the next evaluation
    ]
    assert items[1].what == "finish_setup holds; its cooldown (3d) ends"


def test_a_once_rule_already_sent_never_comes_again() -> None:
    once = dataclasses.replace(
        RULES,
        triggers=[
            dataclasses.replace(t, spec=t.spec.model_copy(update={"once": True}))
            if t.id == "finish_setup"
            else t
            for t in RULES.triggers
        ],
    )
    items = upcoming(
        once, ["finish_setup"], None, [], DeliveryRecord(last_by_rule={"finish_setup": NOW - 9 * DAY}), NOW
    )
    assert [i.what for i in items] == [
        f"finish_setup holds, but it is sent once and went on {NOW - 9 * DAY:%Y-%m-%d}"
    ]


def test_nothing_holds_and_nothing_is_due_is_an_empty_list() -> None:
    assert upcoming(RULES, [], None, [], DeliveryRecord(), NOW) == []
