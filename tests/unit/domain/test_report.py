"""The report's numbers, gathered from a small hand-made snapshot (no tables, no HTML)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from nudge.domain.report import Snapshot, build, segment_at
from nudge.model.decisions import Decision, SegmentState, Transition
from nudge.model.inapp import InAppMessage, Survey
from nudge.model.ledger import LedgerEntry
from nudge.model.segments import SegmentRecord
from nudge.model.state import AccountState, EventStats, FeatureStats, Stamped, UserState, WeekStats
from tests.shipped import RULES, SHIPPED

MON = datetime(2025, 3, 3, tzinfo=UTC)  # a Monday: ISO week 2025-W10
DAY = timedelta(days=1)
NOW = MON + 63 * DAY  # nine weeks later


def record(*moves: tuple[str, datetime]) -> SegmentRecord:
    history, before = [], None
    for to, at in moves:
        history.append(Transition(from_=before, to=to, at=at))
        before = to
    return SegmentRecord(segments=SegmentState(segment=before, since=moves[-1][1], history=history))


def stats(at: datetime) -> EventStats:
    return EventStats(count=1, first=at, last=at, daily={at.date().toordinal(): 1})


def entry(rule: str, user: str, outcome: str, status: str = "", reason: str = "", **kw: Any) -> LedgerEntry:
    spec = RULES.trigger_by_id[rule].spec
    channel = {"escalate": "cs"}.get(spec.action, spec.action)
    d = Decision(
        decision_id=f"{rule}-{user}",
        user=user,
        account=kw.get("account"),
        rule=rule,
        kind="escalation" if spec.action == "escalate" else spec.kind,
        action=spec.action,
        channel=channel,
        template=spec.template,
        priority=spec.priority,
        reason="",
        facts={},
        decided_at=MON,
    )
    return LedgerEntry(
        decision=d, outcome=outcome, status=status, reason=reason, recorded_at=MON, updated_at=MON
    )  # type: ignore[arg-type]


def snapshot() -> Snapshot:
    users = {
        "a": UserState(
            user_id="a",
            first_seen=MON,
            events={"signed_up": stats(MON), "setup_completed": stats(MON + 2 * DAY)},
            features={"projects": FeatureStats(first=MON, last=MON, count=1, days=[MON.toordinal()])},
            weeks={"2025-W10": WeekStats(sessions=3), "2025-W14": WeekStats(sessions=1)},
        ),
        "b": UserState(
            user_id="b",
            first_seen=MON,
            events={"signed_up": stats(MON)},
            weeks={"2025-W10": WeekStats(sessions=1)},
        ),
    }
    records = {
        "a": record(("not_activated", MON), ("newly_activated", MON + 9 * DAY)),
        "b": record(("not_activated", MON), ("dormant", MON + 40 * DAY)),
    }
    accounts = {
        "big": AccountState(account_id="big", traits={"mrr": Stamped(v=9000, at=MON, mid="m")}),
        "small": AccountState(account_id="small", traits={"mrr": Stamped(v=50, at=MON, mid="m")}),
    }
    entries = [
        entry("finish_setup", "a", "send", "sent"),
        entry("finish_setup", "b", "suppressed", reason="no_consent"),
        entry("finish_setup", "c", "held_out", reason="rule_holdout"),
        entry("at_risk_account", "b", "send", "sent", account="big"),
    ]
    return Snapshot(users, records, accounts, entries)


def test_weekly_sizes_and_week_to_week_flows_come_from_the_segment_histories() -> None:
    data = build(RULES, snapshot(), NOW, "test")
    weeks = dict(data.weekly_sizes)
    assert weeks["2025-W10"] == {"not_activated": 2}
    assert weeks["2025-W11"] == {"newly_activated": 1, "not_activated": 1}
    assert weeks["2025-W16"] == {"newly_activated": 1, "dormant": 1}
    assert data.flows == {("not_activated", "newly_activated"): 1, ("not_activated", "dormant"): 1}


def test_the_funnel_counts_users_at_each_step_and_the_median_time_between_steps() -> None:
    data = build(RULES, snapshot(), NOW, "test")
    steps = {s.name: s for s in data.funnel}
    assert (steps["signed_up"].users, steps["setup_completed"].users, steps["project_created"].users) == (
        2,
        1,
        0,
    )
    assert steps["setup_completed"].median_hours_from_previous == 48
    assert steps["signed_up"].median_hours_from_previous is None


def test_messages_escalations_and_adoption() -> None:
    data = build(RULES, snapshot(), NOW, "test")
    finish = next(m for m in data.messages if m.rule == "finish_setup")
    assert (finish.decisions, finish.sent, finish.held_out, finish.suppressed) == (3, 1, 1, {"no_consent": 1})
    buckets = {b.label: (b.accounts, b.escalated) for b in data.escalations}
    assert buckets["under $1k"] == (1, 0)
    assert buckets["$5k to 20k"] == (1, 1)
    assert data.adoption["newly_activated"]["projects"] == 1.0
    assert data.adoption["dormant"]["projects"] == 0.0


def test_each_rules_email_feedback_is_counted_once_per_message_and_kind() -> None:
    # Given three finish_setup emails sent: one delivered, opened and clicked, one bounced, one
    # delivered and complained of; and one suppressed before sending, with no feedback
    at = MON + DAY
    entries = [
        entry("finish_setup", "a", "send", "sent").model_copy(
            update={"feedback": {"sent": at, "delivered": at, "opened": at, "clicked": at}}
        ),
        entry("finish_setup", "b", "send", "sent").model_copy(
            update={"feedback": {"sent": at, "bounced": at}}
        ),
        entry("finish_setup", "c", "send", "sent").model_copy(
            update={"feedback": {"delivered": at, "complained": at}}
        ),
        entry("finish_setup", "d", "suppressed", reason="suppression_list"),
    ]
    base = snapshot()
    data = build(RULES, Snapshot(base.users, base.records, base.accounts, entries), NOW, "test")
    [finish] = [m for m in data.messages if m.rule == "finish_setup"]
    # Then the counts are per message, and the rates as mailers quote them
    assert finish.feedback == {
        "bounced": 1,
        "clicked": 1,
        "complained": 1,
        "delivered": 2,
        "opened": 1,
        "sent": 2,
    }
    assert (finish.rate("delivered"), finish.rate("bounced"), finish.rate("complained")) == (
        2 / 3,
        1 / 3,
        1 / 3,
    )
    assert (finish.rate("opened"), finish.rate("clicked")) == (1 / 2, 1 / 2)


def journey_entry(step: str, channel: str, user: str, status: str = "sent", **kw: Any) -> LedgerEntry:
    d = Decision(
        decision_id=f"declining_rescue-{step}-{user}",
        user=user,
        account=None,
        rule="declining_rescue",
        kind="rescue",
        action=channel,
        channel=channel,
        channels=["push", "sms", "email"] if step == "quick_win" else [],
        template="declining_nudge",
        priority=70,
        reason="",
        facts={},
        decided_at=MON,
        step=step,
        journey="declining_rescue",
    )
    fields = {"decision": d, "outcome": "send", "status": status, "recorded_at": MON, "updated_at": MON}
    return LedgerEntry.model_validate({**fields, **kw})


def test_a_journeys_messages_are_counted_per_step_and_channel_chosen() -> None:
    # Given the shipped rescue's quick win sent by SMS to two users and by email to one (opened),
    # and its survey put in one user's inbox
    at = MON + DAY
    entries = [
        journey_entry("quick_win", "sms", "a"),
        journey_entry("quick_win", "sms", "b"),
        journey_entry("quick_win", "email", "c", feedback={"delivered": at, "opened": at}),
        journey_entry("survey", "in_app", "a"),
    ]
    base = snapshot()
    data = build(SHIPPED, Snapshot(base.users, base.records, base.accounts, entries), NOW, "test")
    # Then "Messages by rule and journey step" has a row per step and channel, in the journey's order
    rows = [(m.rule, m.channel, m.sent) for m in data.messages]
    assert rows == [
        ("declining_rescue:quick_win", "email", 1),
        ("declining_rescue:quick_win", "sms", 2),
        ("declining_rescue:survey", "in_app", 1),
    ]
    [email] = [m for m in data.messages if m.channel == "email"]
    assert (email.kind, email.rate("opened")) == ("rescue", 1.0)


def test_what_users_did_with_a_steps_in_app_messages_comes_from_their_inbox_items() -> None:
    # Given the rescue's survey in three inboxes: answered "too_complex", dismissed, not opened
    entries = [journey_entry("survey", "in_app", u) for u in ("a", "b", "c")]
    statuses = {"a": ("answered", "too_complex"), "b": ("dismissed", None), "c": ("new", None)}
    inbox = {
        e.decision_id: InAppMessage(
            message_id=e.decision_id,
            user_id=e.decision.user,
            rule="declining_rescue",
            title="One question",
            body="Why?",
            survey=Survey(question="Why?", choices=["too_complex", "no_time"], property="blocker"),
            created_at=MON,
            expires_at=MON + 7 * DAY,
            status=statuses[e.decision.user][0],  # type: ignore[arg-type]
            answer=statuses[e.decision.user][1],
        )
        for e in entries
    }
    base = snapshot()
    data = build(SHIPPED, Snapshot(base.users, base.records, base.accounts, entries, inbox), NOW, "test")
    # Then the step's row counts how far each got (answered and dismissed were seen first) and the answers
    [survey] = data.messages
    assert (survey.rule, survey.channel, survey.sent) == ("declining_rescue:survey", "in_app", 3)
    assert survey.feedback == {"seen": 2, "answered": 1, "dismissed": 1}
    assert survey.answers == {"too_complex": 1}
    assert (survey.rate("seen"), survey.rate("answered")) == (2 / 3, 1 / 3)


def test_segment_quality_counts_retention_four_weeks_later() -> None:
    data = build(RULES, snapshot(), NOW, "test")
    rows = {r.segment: (r.user_weeks, r.retained) for r in data.quality}
    # Weeks W10-W14 have their fourth week after (W14-W18) complete by now (W19's Monday).
    # a: W10 not_activated (active in W14: retained), W11-W14 newly_activated (never active again);
    # b: not_activated all five weeks (dormant from W15), never active after W10.
    assert rows == {"not_activated": (6, 1), "newly_activated": (4, 0)}
    assert data.retained_overall == 0.1


def test_segment_at_reads_the_history() -> None:
    r = record(("not_activated", MON), ("habitual", MON + 5 * DAY))
    assert segment_at(r.segments, MON - DAY) is None
    assert segment_at(r.segments, MON + DAY) == "not_activated"
    assert segment_at(r.segments, MON + 5 * DAY) == "habitual"
