"""Lift: does a rule's message move the outcome it aims at, against the users held out from it?

For each rule with a `goal` (triggers.yaml), each user's FIRST decision of the rule that was sent
(treated) or held out (control: the global control group or the rule's holdout) is their
exposure, at the time it was recorded. The outcome is whether the goal was reached within the
goal's window after it; exposures whose window has not closed by `now` are pending and left out.
Then the rates, their difference and a 95% confidence interval (normal approximation, the
difference of two proportions), with a plain warning when the groups are too small to say.

Day-level caveat: events are kept per UTC day (with first/last times), so an event on the day of
the exposure counts only if the event's latest occurrence is after it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from nudge.model.ledger import LedgerEntry
from nudge.model.state import AccountState, UserState
from nudge.rulebook.ruleset import GoalSpec, RuleSet

Z95 = 1.959964
# Below this many users in either group, or this many outcomes (or non-outcomes) expected in
# either, the normal approximation is not to be trusted: say so rather than print a verdict.
MIN_GROUP = 30
MIN_EXPECTED = 5


@dataclass(frozen=True)
class Exposure:
    user_id: str
    account_id: str | None
    at: datetime
    treated: bool


@dataclass(frozen=True)
class LiftRow:
    rule: str
    goal: str
    treated: int
    treated_reached: int
    control: int
    control_reached: int
    pending: int

    @property
    def treated_rate(self) -> float | None:
        return self.treated_reached / self.treated if self.treated else None

    @property
    def control_rate(self) -> float | None:
        return self.control_reached / self.control if self.control else None

    @property
    def difference(self) -> float | None:
        if self.treated_rate is None or self.control_rate is None:
            return None
        return self.treated_rate - self.control_rate

    @property
    def interval(self) -> tuple[float, float] | None:
        """95% confidence interval of the difference (Wald, unpooled)."""
        p1, p0, diff = self.treated_rate, self.control_rate, self.difference
        if p1 is None or p0 is None or diff is None:
            return None
        se = math.sqrt(p1 * (1 - p1) / self.treated + p0 * (1 - p0) / self.control)
        return diff - Z95 * se, diff + Z95 * se

    @property
    def warning(self) -> str:
        if self.treated < MIN_GROUP or self.control < MIN_GROUP:
            return (
                f"too few users to say (treated {self.treated}, held out {self.control}; "
                f"at least {MIN_GROUP} each are needed)"
            )
        for group, n, x in (
            ("treated", self.treated, self.treated_reached),
            ("held out", self.control, self.control_reached),
        ):
            if min(x, n - x) < MIN_EXPECTED:
                return f"too few outcomes to say ({group}: {x} of {n} reached the goal)"
        return ""

    @property
    def verdict(self) -> str:
        """works / no effect seen / hurts / can't say, from the interval."""
        if self.warning or self.interval is None:
            return "can't say yet"
        low, high = self.interval
        if low > 0:
            return "works"
        if high < 0:
            return "hurts"
        return "no effect seen"


def describe(goal: GoalSpec) -> str:
    days = goal.within.total_seconds() / 86400
    window = f"{days:g} days" if days != 1 else "1 day"
    if goal.milestone:
        return f"{goal.milestone} within {window}"
    if goal.event == "any":
        return f"meaningful use within {window}"
    if goal.event:
        return f"{goal.event} within {window}"
    return f"account {goal.account_trait} changed within {window}"


def exposures(entries: Iterable[LedgerEntry]) -> dict[str, list[Exposure]]:
    """Rule -> each user's first sent or held-out decision of it."""
    first: dict[tuple[str, str], Exposure] = {}
    for entry in sorted(entries, key=lambda e: (e.recorded_at, e.decision_id)):
        d = entry.decision
        treated = entry.outcome == "send" and entry.status == "sent"
        if not treated and entry.outcome != "held_out":
            continue
        first.setdefault((d.rule, d.user), Exposure(d.user, d.account, entry.recorded_at, treated))
    by_rule: dict[str, list[Exposure]] = {}
    for (rule, _), exposure in first.items():
        by_rule.setdefault(rule, []).append(exposure)
    return by_rule


def reached(
    goal: GoalSpec, user: UserState, account: AccountState | None, at: datetime, meaningful: frozenset[str]
) -> bool:
    """Whether the user reached the goal in (at, at + within]."""
    end = at + goal.within
    if goal.milestone:
        when = user.milestones.get(goal.milestone)
        return when is not None and at < when <= end
    if goal.account_trait:
        stamped = account.traits.get(goal.account_trait) if account else None
        return stamped is not None and at < stamped.at <= end
    names = meaningful if goal.event == "any" else frozenset({str(goal.event)})
    first_day, last_day = at.date().toordinal(), end.date().toordinal()
    for name in names:
        stats = user.events.get(name)
        if stats is None or stats.last <= at:
            continue
        if any(first_day < day <= last_day for day in stats.daily) or (
            first_day in stats.daily and stats.last <= end
        ):
            return True
    return False


def lift(
    rules: RuleSet,
    entries: Iterable[LedgerEntry],
    users: Mapping[str, UserState],
    accounts: Mapping[str, AccountState],
    now: datetime,
) -> list[LiftRow]:
    """One row per rule with a goal, in triggers.yaml order."""
    by_rule = exposures(entries)
    rows: list[LiftRow] = []
    for trigger in rules.triggers:
        goal = trigger.spec.goal
        if goal is None:
            continue
        counts = {True: [0, 0], False: [0, 0]}  # treated -> [users, reached]
        pending = 0
        for exposure in by_rule.get(trigger.id, []):
            user = users.get(exposure.user_id)
            if user is None:
                continue  # erased since
            if exposure.at + goal.within > now:
                pending += 1
                continue
            account = accounts.get(exposure.account_id) if exposure.account_id else None
            hit = reached(goal, user, account, exposure.at, rules.plan.meaningful)
            counts[exposure.treated][0] += 1
            counts[exposure.treated][1] += int(hit)
        rows.append(
            LiftRow(
                rule=trigger.id,
                goal=describe(goal),
                treated=counts[True][0],
                treated_reached=counts[True][1],
                control=counts[False][0],
                control_reached=counts[False][1],
                pending=pending,
            )
        )
    return rows
