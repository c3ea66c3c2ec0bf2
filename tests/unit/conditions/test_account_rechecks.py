"""An account's figures are re-checked at the next week close, whatever they say now: the other
users of the account may be active before it, and their events re-evaluate none of this user's
rules (the review of the fewer-`due`-moves change found them predicted weeks ahead)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from nudge.conditions import features as F
from nudge.conditions.facts import account_metric_fact
from nudge.conditions.tree import Context
from nudge.model.calendar import week_key
from nudge.model.limits import ROLLUP_SETTLE_SECONDS
from nudge.model.state import AccountRollup, UserState, WeekRollup

WEDNESDAY = datetime(2026, 3, 4, 12, tzinfo=UTC)


@pytest.mark.parametrize("metric", ["active_users", "active_users_trend"])
def test_an_account_figure_is_rechecked_at_the_next_week_close(metric: str) -> None:
    # Given an account with one user active so far this week and none the week before
    rollup = AccountRollup(weeks={week_key(WEDNESDAY.date()): WeekRollup(active_users=1)})
    ctx = Context(UserState(user_id="u1", account_id="acme"), WEDNESDAY, F.AccountFacts({}, rollup))
    # When the sweep asks when `account <metric> >= 3` could next flip
    at = account_metric_fact(metric).changes_at(ctx, "gte", 3)
    # Then it is the coming Monday, once the week's last rollups are in: two more users may be
    # active by then
    assert at == F.next_week_start(WEDNESDAY) + timedelta(seconds=ROLLUP_SETTLE_SECONDS)


def test_a_week_close_is_read_once_the_rollup_window_has_passed() -> None:
    # Given an evaluation minutes after a week closed, before the rollup function has applied the
    # week's last deltas (its batching window, template.yaml)
    monday = F.next_week_start(WEDNESDAY)
    rollup = AccountRollup(weeks={week_key(WEDNESDAY.date()): WeekRollup(active_users=1)})
    early = Context(
        UserState(user_id="u1", account_id="acme"), monday + timedelta(minutes=2), F.AccountFacts({}, rollup)
    )
    settled = Context(
        UserState(user_id="u1", account_id="acme"), monday + timedelta(minutes=11), F.AccountFacts({}, rollup)
    )
    fact = account_metric_fact("active_users")
    # Then the closed week is read again once they are in, this Monday; after that, next Monday's
    assert fact.changes_at(early, "gte", 3) == monday + timedelta(seconds=ROLLUP_SETTLE_SECONDS)
    assert fact.changes_at(settled, "gte", 3) == F.next_week_start(monday) + timedelta(
        seconds=ROLLUP_SETTLE_SECONDS
    )
