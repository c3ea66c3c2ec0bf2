"""Facts over kept event properties: counts and recency filtered by a dimension's value, sums and
last values, and when time alone changes them (for the sweep)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from nudge.conditions.facts import days_since_fact, days_without_fact
from nudge.conditions.property_facts import count_where_fact, last_fact, last_number_fact, sum_fact
from nudge.conditions.tree import Context
from nudge.domain.fold import fold
from nudge.model.messages import Track
from nudge.model.state import UserState
from nudge.rulebook.plan import load_plan

PLAN = load_plan(Path("rules"))
NOW = datetime(2026, 6, 17, 12, tzinfo=UTC)
DAY = timedelta(days=1)
SSO = ("feature", frozenset({"sso"}))


def user(*events: tuple[str, int, dict[str, object]]) -> UserState:
    messages = [
        Track(userId="u", event=e, timestamp=NOW - days * DAY, messageId=f"m{i}", properties=props)
        for i, (e, days, props) in enumerate(events)
    ]
    return fold(None, "u", messages, PLAN, NOW)


def test_a_where_count_counts_only_the_matching_value_within_the_window() -> None:
    state = user(
        ("premium_feature_attempted", 2, {"feature": "sso"}),
        ("premium_feature_attempted", 3, {"feature": "audit_log"}),
        ("premium_feature_attempted", 20, {"feature": "sso"}),
    )
    ctx = Context(state, NOW)
    assert count_where_fact("premium_feature_attempted", SSO, 14).compute(ctx) == 1
    assert count_where_fact("premium_feature_attempted", SSO, 28).compute(ctx) == 2
    both = ("feature", frozenset({"sso", "audit_log"}))
    assert count_where_fact("premium_feature_attempted", both, 14).compute(ctx) == 2
    other = ("feature", frozenset({"custom_roles"}))
    assert count_where_fact("premium_feature_attempted", other, 28).compute(ctx) == 0


def test_a_where_count_falls_when_its_oldest_matching_day_leaves_the_window() -> None:
    state = user(
        ("premium_feature_attempted", 2, {"feature": "sso"}),
        ("premium_feature_attempted", 1, {"feature": "audit_log"}),
    )
    fact = count_where_fact("premium_feature_attempted", SSO, 7)
    change = fact.changes_at(Context(state, NOW), "gte", 1)
    assert change is not None
    assert fact.compute(Context(state, change - timedelta(seconds=1))) == 1
    assert fact.compute(Context(state, change)) == 0


def test_where_recency_reads_the_last_time_of_the_matching_value() -> None:
    state = user(
        ("signed_up", 30, {}),
        ("page_viewed", 10, {"name": "Pricing"}),
        ("page_viewed", 1, {"name": "Docs"}),
    )
    ctx = Context(state, NOW)
    pricing = ("name", frozenset({"Pricing"}))
    assert days_since_fact("page_viewed", pricing).compute(ctx) == 10
    assert days_since_fact("page_viewed").compute(ctx) == 1
    # Never seen with that value: days without it count from signup, as for an event never done.
    assert days_without_fact("page_viewed", ("name", frozenset({"Careers"}))).compute(ctx) == 30
    assert days_since_fact("page_viewed", pricing).key != days_since_fact("page_viewed").key


def test_where_keys_stay_distinct_for_values_that_differ_only_in_case() -> None:
    upper = count_where_fact("page_viewed", ("name", frozenset({"Pricing"})), 7)
    lower = count_where_fact("page_viewed", ("name", frozenset({"pricing"})), 7)
    assert upper.key != lower.key


def test_a_sum_is_lifetime_or_within_a_window() -> None:
    state = user(
        ("invoice_paid", 40, {"revenue": 500}),
        ("invoice_paid", 10, {"revenue": 60.5}),
        ("invoice_paid", 2, {"revenue": 39.5}),
    )
    ctx = Context(state, NOW)
    assert sum_fact("invoice_paid", "revenue", None).compute(ctx) == 600
    assert sum_fact("invoice_paid", "revenue", 28).compute(ctx) == 100
    assert sum_fact("invoice_paid", "revenue", None).changes_at(ctx, "gte", 100) is None
    assert sum_fact("invoice_paid", "revenue", 28).changes_at(ctx, "gte", 100) is not None


def test_a_last_value_is_the_newest_as_text_and_as_number() -> None:
    state = user(
        ("premium_feature_attempted", 1, {"feature": "audit_log"}),
        ("premium_feature_attempted", 5, {"feature": "sso"}),
    )
    ctx = Context(state, NOW)
    assert last_fact("premium_feature_attempted", "feature").compute(ctx) == "audit_log"
    assert last_fact("invoice_paid", "plan").compute(ctx) == ""  # never seen
    assert last_number_fact("invoice_paid", "plan").compute(ctx) < 0
