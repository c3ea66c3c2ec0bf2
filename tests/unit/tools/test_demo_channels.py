"""The demo's channel tables: messages sent per rule or journey step and channel, and what users did
with their in-app messages (read back from the inbox items)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from nudge.model.decisions import Decision
from nudge.model.inapp import InAppMessage, Survey
from nudge.model.ledger import LedgerEntry
from nudge.tools.local.demo_channels import channel_counts, in_app_counts

AT = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def entry(user: str, channel: str, rule: str, step: str = "", status: str = "sent", **kw: Any) -> LedgerEntry:
    decision = Decision(
        decision_id=f"{rule}-{step}-{user}",
        user=user,
        account=None,
        rule=rule,
        kind="rescue",
        action=channel,
        channel=channel,
        template="t",
        priority=50,
        reason="",
        facts={},
        decided_at=AT,
        step=step,
        journey=rule if step else "",
    )
    fields = {"decision": decision, "outcome": "send", "status": status, "recorded_at": AT, "updated_at": AT}
    return LedgerEntry.model_validate({**fields, **kw})


def survey(entry: LedgerEntry, status: str, answer: str | None = None) -> InAppMessage:
    return InAppMessage(
        message_id=entry.decision_id,
        user_id=entry.decision.user,
        rule=entry.decision.rule,
        title="One question",
        body="Why?",
        survey=Survey(question="Why?", choices=["too_complex", "no_time"], property="blocker"),
        created_at=AT,
        expires_at=AT + timedelta(days=7),
        status=status,  # type: ignore[arg-type]
        answer=answer,
    )


def test_sent_messages_are_counted_per_journey_step_and_the_channel_chosen() -> None:
    # Given the rescue's quick win sent by SMS twice and by email once, one that failed, and a one-shot rule
    entries = [
        entry("a", "sms", "declining_rescue", "quick_win"),
        entry("b", "sms", "declining_rescue", "quick_win"),
        entry("c", "email", "declining_rescue", "quick_win"),
        entry("d", "sms", "declining_rescue", "quick_win", status="failed"),
        entry("e", "email", "rescue_dormant"),
    ]
    # Then each step or rule counts what was sent on each channel, and nothing that failed
    counts = channel_counts(entries)
    assert counts == {
        "declining_rescue:quick_win": {"sms": 2, "email": 1},
        "rescue_dormant": {"email": 1},
    }


def test_in_app_counts_read_how_far_each_user_took_the_message_and_the_answers() -> None:
    # Given four surveys in inboxes: answered twice, seen once, never opened once (and one gone: expired)
    sent = [entry(u, "in_app", "declining_rescue", "survey") for u in ("a", "b", "c", "d", "e")]
    messages = {
        sent[0].decision_id: survey(sent[0], "answered", "too_complex"),
        sent[1].decision_id: survey(sent[1], "answered", "no_time"),
        sent[2].decision_id: survey(sent[2], "seen"),
        sent[3].decision_id: survey(sent[3], "new"),
    }
    per_step, answers = in_app_counts(sent, messages)
    # Then an answered survey counts as seen too, and each answer by its property
    assert per_step["declining_rescue:survey"] == {"sent": 5, "seen": 3, "answered": 2}
    assert answers == {"blocker=too_complex": 1, "blocker=no_time": 1}
