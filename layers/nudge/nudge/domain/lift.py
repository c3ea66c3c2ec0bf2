"""Lift: does a rule's message move the outcome it aims at, against the users held out from it?

For each rule with a `goal` (triggers.yaml), each user's FIRST decision of the rule that was sent
(treated) or held out (control: the global control group or the rule's holdout) is their
exposure, at the time it was recorded. The outcome is whether the goal was reached within the
goal's window after it; exposures whose window has not closed by `now` are pending and left out.
Then the rates, their difference and a 95% always-valid interval (nudge.domain.experiment: a
mixture SPRT confidence sequence, so the report can be opened any day without inflating false
"works"), with a plain warning when the groups are too small to say or the look is early.

Day-level caveat: events are kept per UTC day (with first/last times), so an event on the day of
the exposure counts only if the event's latest occurrence is after it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from nudge.domain.experiment import Arm, Comparison, Direction, compare
from nudge.model.ledger import LedgerEntry
from nudge.model.state import AccountState, UserState
from nudge.rulebook.ruleset import GoalSpec, RuleSet


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
    # When the rule's first exposure was recorded and when this was computed: for the "looked at
    # early" warning only (None: not known).
    started: datetime | None = None
    now: datetime | None = None

    @property
    def comparison(self) -> Comparison:
        """Treated against held out, with the always-valid interval (nudge.domain.experiment)."""
        return compare(
            Arm("treated", self.treated, self.treated_reached),
            Arm("held out", self.control, self.control_reached),
            started=self.started,
            now=self.now,
            pending=self.pending,
        )

    @property
    def treated_rate(self) -> float | None:
        return self.treated_reached / self.treated if self.treated else None

    @property
    def control_rate(self) -> float | None:
        return self.control_reached / self.control if self.control else None

    @property
    def difference(self) -> float | None:
        return self.comparison.difference

    @property
    def interval(self) -> tuple[float, float] | None:
        """95% always-valid interval of the difference: it may be looked at any time, any often."""
        return self.comparison.interval

    @property
    def warning(self) -> str:
        """Why no verdict can be given yet (the sample is too small); "" when one can."""
        return self.comparison.too_small

    @property
    def early(self) -> str:
        """Why this look is early (the verdict stands, but may move); "" when it is not."""
        return self.comparison.early

    @property
    def verdict(self) -> str:
        """works / no effect seen / hurts / can't say yet, from the interval."""
        return VERDICTS[self.comparison.direction]


VERDICTS: dict[Direction, str] = {
    "higher": "works",
    "lower": "hurts",
    "no difference seen": "no effect seen",
    "can't say yet": "can't say yet",
}


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
        exposed = by_rule.get(trigger.id, [])
        for exposure in exposed:
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
                started=min((e.at for e in exposed), default=None),
                now=now,
            )
        )
    return rows
