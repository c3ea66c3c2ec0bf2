"""The planner's working records: accounts, users and sessions as planned, before they become
messages. Planning keeps only these small records; the expander turns sessions into messages.

Times are epoch seconds, UTC.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from nudge.tools.samples.catalog import SEAT_PRICE
from nudge.tools.samples.personas import Persona
from nudge.tools.samples.timeutil import iso


@dataclass(eq=False, slots=True)
class PlannedAccount:
    index: int
    name: str
    industry: str
    domain: str
    zone: str
    cs_owner: str
    weight: float
    big: bool = False
    high_value: bool = False
    at_risk: bool = False
    created: int = 0
    plan: str = "free"
    seats: int = 0
    account_id: str = ""
    members: list[PlannedUser] = field(default_factory=list)
    upgraded_at: int | None = None
    upgraded_plan: str = ""
    upgraded_seats: int = 0
    # At-risk account: the UTC Monday from which its users' use falls away (a champion left).
    falls_from: int | None = None

    def plan_at(self, ts: int) -> str:
        return self.upgraded_plan if self.upgraded_at is not None and ts >= self.upgraded_at else self.plan

    def seats_at(self, ts: int) -> int:
        return self.upgraded_seats if self.upgraded_at is not None and ts >= self.upgraded_at else self.seats

    def traits_at(self, ts: int) -> dict[str, Any]:
        plan, seats = self.plan_at(ts), self.seats_at(ts)
        return {
            "name": self.name,
            "plan": plan,
            "mrr": seats * SEAT_PRICE[plan],
            "seats": seats,
            "cs_owner": self.cs_owner,
            "industry": self.industry,
            "created_at": iso(self.created * 1000),
        }


@dataclass(eq=False, slots=True)
class PlannedUser:
    account: PlannedAccount
    zone_name: str
    zone: ZoneInfo
    locale: str
    signup: int
    consent: dict[str, bool]
    phone: str | None
    persona: Persona | None = None
    user_id: str = ""
    email: str = ""
    decline_from: int = 0  # decliners: the UTC Monday their use falls below 2 sessions a week
    last_active: int = 0  # dormant users: nothing after this


@dataclass(eq=False, slots=True)
class PlannedSession:
    """One visit: a login (or the signup), a few page views and the meaningful events, minutes apart."""

    start: int  # epoch seconds, UTC
    user: PlannedUser
    use: bool  # planned as real use (meaningful events) rather than a look around
    signup: bool = False
    events: list[str] = field(default_factory=list)
    identify: dict[str, Any] | None = None  # traits sent at the session's start
    group: dict[str, Any] | None = None  # account traits sent (signup, or a plan upgrade)
