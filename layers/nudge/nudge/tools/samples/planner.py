"""The plan of a history: who is in it (roster), which persona each user follows, each user's
sessions, then the changes over the window (plan upgrades, consent switched) and the traits a
signup sends.

The steps draw from one random.Random in a fixed order, so a seed always gives the same plan;
a step's helpers live with it (roster, persona_assignment, sessions).
"""

from __future__ import annotations

import hashlib
import random
from typing import Any

from nudge.tools.samples.catalog import HIGH_VALUE_MRR, NEXT_PLAN, SEAT_PRICE
from nudge.tools.samples.persona_assignment import PersonaAssigner
from nudge.tools.samples.personas import Persona
from nudge.tools.samples.records import PlannedAccount, PlannedSession, PlannedUser
from nudge.tools.samples.roster import Roster, round_up
from nudge.tools.samples.sessions import SessionPlanner
from nudge.tools.samples.timeutil import DAY, iso

# Of the users who gave a phone number and opted in to SMS (a minority, roster), this share chose
# texts as the way to reach them. Derived from the address, not drawn from the generator's random
# stream, like the device token: every other part of the history stays as it was.
SMS_FIRST_SHARE = 0.5


def prefers_sms(email: str) -> bool:
    digest = hashlib.sha256(f"sms-first|{email}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < SMS_FIRST_SHARE


class Planner:
    """Plans accounts, users and their sessions over [start, end) (epoch seconds)."""

    def __init__(self, rng: random.Random, start: int, end: int) -> None:
        self.rng = rng
        self.end = end
        self.roster = Roster(rng, start, end)
        self.assigner = PersonaAssigner(rng, start, end)
        self.sessions = SessionPlanner(rng, end)

    def plan(
        self, n_users: int, n_accounts: int
    ) -> tuple[list[PlannedAccount], list[PlannedUser], list[PlannedSession]]:
        accounts = self.roster.accounts(n_accounts)
        users = self.roster.users(accounts, n_users)
        self.roster.plans(accounts)
        self.assigner.assign(accounts, users)
        sessions: list[PlannedSession] = []
        by_user: dict[int, list[PlannedSession]] = {}
        for index, user in enumerate(users):
            by_user[index] = self.sessions.plan(user)
        self._upgrades(accounts, users, by_user)
        self._consent_changes(users, by_user)
        for index, user in enumerate(users):
            first = by_user[index][0]
            first.identify = self._signup_traits(user)
            first.group = user.account.traits_at(user.signup)
            sessions.extend(by_user[index])
        # Users are numbered by signup, so (start, user id) orders sessions the same on every run.
        order = {id(u): i for i, u in enumerate(users)}
        sessions.sort(key=lambda s: (s.start, order[id(s.user)]))
        return accounts, users, sessions

    # --- account and trait changes ------------------------------------------------------------

    def _upgrades(
        self,
        accounts: list[PlannedAccount],
        users: list[PlannedUser],
        by_user: dict[int, list[PlannedSession]],
    ) -> None:
        """Some smaller accounts upgrade, likelier when a power user keeps hitting the wall."""
        rng = self.rng
        index_of = {id(u): i for i, u in enumerate(users)}
        for account in accounts:
            if account.high_value or account.plan == "business":
                continue
            power = [m for m in account.members if m.persona is Persona.POWER]
            if rng.random() >= (0.3 if power else 0.08):
                continue
            deciders = power or account.members
            candidates = [
                s
                for m in deciders
                for s in by_user[index_of[id(m)]]
                if not s.signup and s.events and account.created + 7 * DAY <= s.start <= self.end - DAY
            ]
            if not candidates:
                continue
            chosen = rng.choice(candidates)
            account.upgraded_at = chosen.start
            account.upgraded_plan = NEXT_PLAN[account.plan]
            account.upgraded_seats = max(round_up(len(account.members), 5), account.seats)
            if account.upgraded_plan == "business":
                account.upgraded_seats = min(
                    account.upgraded_seats, (HIGH_VALUE_MRR - 1) // SEAT_PRICE["business"]
                )
                account.upgraded_seats = max(account.upgraded_seats, len(account.members))
            chosen.group = account.traits_at(chosen.start)
            # Members already signed up learn the new plan at their next visit (the app identifies
            # on login); later signups get it in their first identify.
            for member in account.members:
                if member.signup >= chosen.start:
                    continue
                for session in by_user[index_of[id(member)]]:
                    if session.start >= chosen.start and not session.signup:
                        session.identify = {"plan": account.upgraded_plan}
                        break

    def _consent_changes(self, users: list[PlannedUser], by_user: dict[int, list[PlannedSession]]) -> None:
        """A few users switch push notifications on or off in their settings later on."""
        for index, user in enumerate(users):
            later = by_user[index][1:]
            if not later or self.rng.random() >= 0.04:
                continue
            session = self.rng.choice(later)
            user_consent = dict(user.consent, push=not user.consent["push"])
            session.identify = {**(session.identify or {}), "consent": user_consent}

    def _signup_traits(self, user: PlannedUser) -> dict[str, Any]:
        traits: dict[str, Any] = {
            "email": user.email,
            "plan": user.account.plan_at(user.signup),
            "timezone": user.zone_name,
            "locale": user.locale,
            "consent": dict(user.consent),
            "created_at": iso(user.signup * 1000),
        }
        if user.phone:
            traits["phone"] = user.phone
            if prefers_sms(user.email):
                # Chose texts in the product's notification settings: Nudge's channel choice puts sms
                # first for them wherever a rule names it (nudge.domain.channel_choice).
                traits["preferred_channel"] = "sms"
        # The mobile app's device token (what it registers for push); derived, not drawn from the
        # generator's random stream, so every other part of the history stays as it was.
        traits["push_token"] = hashlib.sha256(f"device|{user.email}".encode()).hexdigest()
        return traits
