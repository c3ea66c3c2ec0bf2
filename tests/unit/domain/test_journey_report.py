"""Journeys in the report (nudge.domain.journey_report and the report's journeys section): users per
step and edge from the instances' paths, per-arm counts, conversion judged alike for sent and
held-out users, and the comparison against the holdout with its always-valid interval."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from nudge.domain.journey_report import ALL_TREATED, journey_reports
from nudge.domain.report import Snapshot, build
from nudge.model.decisions import Decision
from nudge.model.journeys import HOLDOUT, JourneyInstance
from nudge.model.ledger import LedgerEntry
from nudge.model.segments import SegmentRecord
from nudge.model.state import EventStats, UserState
from nudge.rulebook.loader import load_rules
from nudge.rulebook.ruleset import RuleSet
from nudge.tools.report.html import render

ROOT = Path(__file__).resolve().parents[3]
START = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
DAY = timedelta(days=1)
NOW = START + 40 * DAY  # every 21-day window closed
RESCUE = ("quick_win", "pause", "survey", "answer")


@pytest.fixture(scope="module")
def rules(tmp_path_factory: pytest.TempPathFactory) -> RuleSet:
    target = tmp_path_factory.mktemp("report") / "rules"
    shutil.copytree(ROOT / "rules", target)
    shutil.copy(ROOT / "tests" / "journeys" / "declining_rescue.yaml", target / "journeys")
    return load_rules(target)


def instance(
    path: tuple[str, ...], reason: str | None, variant: str = "", converted: bool = False
) -> JourneyInstance:
    ended = START + 10 * DAY if reason else None
    return JourneyInstance(
        journey="declining_rescue",
        step=None if reason else path[-1],
        step_since=START,
        entered_at=START,
        exited_at=ended,
        converted_at=ended if converted else None,
        reason=reason,  # type: ignore[arg-type]
        variant=variant,
        path=path,
    )


def population() -> tuple[dict[str, list[JourneyInstance]], dict[str, UserState]]:
    """60 sent users: 20 converted on the survey wait, 10 timed out to the walkthrough path and
    completed, 30 still waiting for the answer (live); 40 held out: 6 converted."""
    records: dict[str, list[JourneyInstance]] = {}
    for i in range(20):
        records[f"c{i}"] = [instance(RESCUE, "converted", converted=True)]
    for i in range(10):
        path = (*RESCUE, "route", "walkthrough", "high_value")
        records[f"w{i}"] = [instance(path, "completed")]
    for i in range(30):
        records[f"l{i}"] = [instance(RESCUE, None)]
    for i in range(40):
        records[f"h{i}"] = [instance((), "converted" if i < 6 else HOLDOUT, HOLDOUT, converted=i < 6)]
    users = {uid: UserState(user_id=uid, first_seen=START - 60 * DAY) for uid in records}
    return records, users


def test_a_journeys_flow_counts_users_on_each_step_and_edge_and_how_they_ended(rules: RuleSet) -> None:
    records, users = population()
    sent = [
        LedgerEntry(
            decision=Decision(
                decision_id=f"d{uid}",
                user=uid,
                account=None,
                rule="declining_rescue",
                kind="rescue",
                action="email",
                channel="email",
                template="rescue_survey",
                priority=70,
                reason="",
                facts={},
                decided_at=START,
                journey="declining_rescue",
                step="survey",
                instance="declining_rescue",
            ),
            outcome="send",
            status="sent",
            recorded_at=START,
            updated_at=START,
        )
        for uid in list(records)[:45]
    ]
    (flow,), _ = journey_reports(rules.journeys, records, users, sent, rules.plan.meaningful, NOW)
    assert flow.problems() == []
    nodes = {n.id: n for n in flow.nodes}
    edges = {(e.source, e.target): e.count for e in flow.edges}
    assert nodes["entered"].count == 100
    assert nodes["held_out"].count == 40
    assert nodes["quick_win"].count == 60
    assert nodes["answer"].count == 60
    assert nodes["walkthrough"].count == 10
    assert nodes["customer_success"].count == 0
    assert nodes["survey"].note == "45 sent"  # the ledger: guardrails may hold a send back
    assert nodes["answer"].note == "30 here now"
    assert edges[("entered", "quick_win")] == 60
    assert edges[("answer", "route")] == 10
    assert edges[("answer", "end_converted")] == 20
    assert edges[("high_value", "end_completed")] == 10
    assert edges[("held_out", "end_converted")] == 6
    assert edges[("held_out", "end_holdout")] == 34


def test_arms_are_compared_against_the_holdout_with_conversion_judged_alike(rules: RuleSet) -> None:
    records, users = population()
    # Users who completed the journey and then came back within the window converted too: the engine
    # stops following them, the usage does not (the holdout is followed to the window's end).
    for i in range(10):
        users[f"w{i}"] = UserState(
            user_id=f"w{i}",
            first_seen=START - 60 * DAY,
            events={
                "project_created": EventStats(
                    first=START + 12 * DAY,
                    last=START + 12 * DAY,
                    count=1,
                    daily={(START + 12 * DAY).date().toordinal(): 1},
                )
            },
        )
    _, (result,) = journey_reports(rules.journeys, records, users, [], rules.plan.meaningful, NOW)
    assert result.goal == "event any within 21 days"  # as the file says 21d
    arms = {a.name: a for a in result.arms}
    assert set(arms) == {ALL_TREATED, HOLDOUT}
    assert arms[ALL_TREATED].entered == 60
    assert arms[ALL_TREATED].converted == 30
    assert arms[ALL_TREATED].reached["walkthrough"] == 10
    assert arms[HOLDOUT].entered == 40
    assert arms[HOLDOUT].converted == 6
    (comparison,) = result.comparisons
    assert comparison.a.name == ALL_TREATED
    assert comparison.b.name == HOLDOUT
    assert comparison.interval is not None
    assert comparison.interval[0] > 0
    assert comparison.direction == "higher"
    # A week later than entry the windows are open: nothing counted, and the look is early
    _, (early,) = journey_reports(rules.journeys, records, users, [], rules.plan.meaningful, START + 5 * DAY)
    assert all(a.closed == 0 and a.pending == a.entered for a in early.arms)
    assert early.comparisons
    assert all(any(w.startswith("looked at early") for w in c.warnings) for c in early.comparisons)


def test_the_report_draws_each_journey_as_a_flow_with_its_arms(rules: RuleSet) -> None:
    records, users = population()
    segment_records = {
        uid: SegmentRecord(journeys={f"declining_rescue#{i}": x for i, x in enumerate(kept)})
        for uid, kept in records.items()
    }
    data = build(rules, Snapshot(users, segment_records, {}, []), NOW, "test")
    html = render(data)
    assert 'id="journeys"' in html
    assert "journey declining_rescue" in html
    assert "treated against holdout" in html
    assert html.count("<svg") >= 1


def test_variants_are_each_compared_with_the_holdout_and_with_each_other(rules: RuleSet) -> None:
    records: dict[str, list[JourneyInstance]] = {}
    for arm, converted in (("quick:a", 20), ("quick:b", 10), (HOLDOUT, 5)):
        for i in range(40):
            path = () if arm == HOLDOUT else RESCUE
            reason = "converted" if i < converted else (HOLDOUT if arm == HOLDOUT else "completed")
            records[f"{arm}{i}"] = [instance(path, reason, arm, converted=i < converted)]
    users = {uid: UserState(user_id=uid, first_seen=START) for uid in records}
    _, (result,) = journey_reports(rules.journeys, records, users, [], rules.plan.meaningful, NOW)
    pairs = [(c.a.name, c.b.name, round(c.alpha, 4)) for c in result.comparisons]
    # Two arms against the holdout share alpha (Bonferroni); the variants against the first variant
    assert pairs == [("quick:a", HOLDOUT, 0.025), ("quick:b", HOLDOUT, 0.025), ("quick:b", "quick:a", 0.05)]
    assert [a.name for a in result.arms] == ["quick:a", "quick:b", HOLDOUT]
    assert [a.converted for a in result.arms] == [20, 10, 5]
