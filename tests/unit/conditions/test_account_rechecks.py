"""An account's figures are re-checked at the next week close, whatever they say now: the other
users of the account may be active before it, and their events re-evaluate none of this user's
rules (the review of the fewer-`due`-moves change found them predicted weeks ahead)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from nudge.conditions import features as F
from nudge.conditions.facts import account_metric_fact
from nudge.conditions.tree import Context
from nudge.model.calendar import week_key
from nudge.model.state import AccountRollup, UserState, WeekRollup

WEDNESDAY = datetime(2026, 3, 4, 12, tzinfo=UTC)


@pytest.mark.parametrize("metric", ["active_users", "active_users_trend"])
def test_an_account_figure_is_rechecked_at_the_next_week_close(metric: str) -> None:
    # Given an account with one user active so far this week and none the week before
    rollup = AccountRollup(weeks={week_key(WEDNESDAY.date()): WeekRollup(active_users=1)})
    ctx = Context(UserState(user_id="u1", account_id="acme"), WEDNESDAY, F.AccountFacts({}, rollup))
    # When the sweep asks when `account <metric> >= 3` could next flip
    at = account_metric_fact(metric).changes_at(ctx, "gte", 3)
    # Then it is the coming Monday: two more users may be active by then
    assert at == F.next_week_start(WEDNESDAY)
