"""Derived features and when they change with time alone (what the sweep schedules)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from nudge.conditions import features as F
from nudge.conditions.facts import count_fact, feature_fact
from nudge.conditions.tree import Context
from nudge.domain.fold import fold
from nudge.model.messages import Track
from nudge.rulebook.plan import load_plan

PLAN = load_plan(Path("rules"))
NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def user_with(event: str, days_ago: list[int]) -> F.UserState:
    msgs = [
        Track(userId="u", event=event, timestamp=NOW - timedelta(days=d), messageId=f"{event}{d}")
        for d in days_ago
    ]
    signup = Track(userId="u", event="signed_up", timestamp=NOW - timedelta(days=60), messageId="s")
    return fold(None, "u", [signup, *msgs], PLAN, NOW)


def test_a_habit_lapses_when_its_third_latest_day_leaves_the_28_days() -> None:
    user = user_with("report_exported", [1, 5, 10])
    fact = feature_fact("reporting")
    lapse = fact.changes_at(Context(user=user, now=NOW), "eq", "habitual")
    assert lapse == datetime(2026, 12, 14, tzinfo=UTC)  # (today - 10 days) + 28 days, at midnight
    assert F.feature_status(user, "reporting", lapse - timedelta(seconds=1)) == "habitual"
    assert F.feature_status(user, "reporting", lapse) == "tried"


def test_a_feature_that_is_only_tried_never_needs_a_timed_recheck() -> None:
    user = user_with("report_exported", [2])
    assert feature_fact("reporting").changes_at(Context(user=user, now=NOW), "eq", "tried") is None


def test_a_count_falls_when_its_oldest_counted_day_leaves_the_window() -> None:
    user = user_with("premium_feature_attempted", [3, 6])
    fact = count_fact("premium_feature_attempted", 7)
    change = fact.changes_at(Context(user=user, now=NOW), "gte", 1)
    assert change == datetime(2026, 11, 27, tzinfo=UTC)  # the day 6 days ago leaves at midnight
    assert F.count_within(user, "premium_feature_attempted", 7, change - timedelta(seconds=1)) == 2
    assert F.count_within(user, "premium_feature_attempted", 7, change) == 1
