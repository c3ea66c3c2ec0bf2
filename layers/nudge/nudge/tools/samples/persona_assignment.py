"""Which persona each planned user follows: shares of all users, met as closely as the window
allows, the most constrained personas choosing first among users who signed up early enough.

The at-risk high-value account is mostly decliners and dormant users, falling away together
around the middle of the window, so customer success has an account to rescue.
"""

from __future__ import annotations

import random

from nudge.tools.samples.personas import PERSONA_SHARES, Persona
from nudge.tools.samples.records import PlannedAccount, PlannedUser
from nudge.tools.samples.timeutil import DAY, WEEK, monday_after, monday_on_or_after, monday_on_or_before


class PersonaAssigner:
    """Gives every user a persona (and a decliner or dormant user its dates), from the one rng."""

    def __init__(self, rng: random.Random, start: int, end: int) -> None:
        self.rng = rng
        self.start = start
        self.end = end

    def assign(self, accounts: list[PlannedAccount], users: list[PlannedUser]) -> None:
        rng = self.rng
        n = len(users)
        quotas = {p: round(share * n) for p, share in PERSONA_SHARES.items()}
        quotas[Persona.STALLED_SETUP] = n - sum(
            q for p, q in quotas.items() if p is not Persona.STALLED_SETUP
        )
        for account in accounts:
            if not account.at_risk:
                continue
            # The whole account falls away together, around the middle of the window.
            account.falls_from = monday_on_or_after(self.start + (self.end - self.start) * 45 // 100)
            for user in account.members:
                options = [(Persona.DECLINER, 0.5), (Persona.DORMANT, 0.35), (Persona.ACTIVATED, 0.15)]
                feasible = [(p, w) for p, w in options if self._feasible(user, p)]
                if feasible:
                    user.persona = rng.choices([p for p, _ in feasible], [w for _, w in feasible])[0]
                    quotas[user.persona] -= 1
        # The most constrained personas choose first, among users who signed up early enough.
        order = (
            Persona.DORMANT,
            Persona.DECLINER,
            Persona.POWER,
            Persona.ACTIVATED,
            Persona.STALLED_NO_INVITE,
            Persona.STALLED_NO_PROJECT,
        )
        for position, persona in enumerate(order):
            pool = [u for u in users if u.persona is None and self._feasible(u, persona)]
            wanted = max(0, quotas[persona])
            if persona is Persona.POWER:
                # Power users hit the upgrade wall, so most sit on free and team plans.
                cheap = [u for u in pool if u.account.plan != "business"]
                first = rng.sample(cheap, min(len(cheap), round(wanted * 0.8)))
                taken = {id(u) for u in first}
                rest = [u for u in pool if id(u) not in taken]
                chosen = first + rng.sample(rest, min(len(rest), wanted - len(first)))
            else:
                chosen = rng.sample(pool, min(wanted, len(pool)))
            for user in chosen:
                user.persona = persona
            # A short window leaves no room for some personas (no one can be dormant for 30 days
            # in a 30-day history): share the shortfall among the rest, keeping their proportions.
            short = wanted - len(chosen)
            later = (*order[position + 1 :], Persona.STALLED_SETUP)
            weight = sum(PERSONA_SHARES[p] for p in later)
            for other in later:
                quotas[other] += round(short * PERSONA_SHARES[other] / weight)
        for user in users:
            if user.persona is None:
                user.persona = Persona.STALLED_SETUP
            if user.persona is Persona.DECLINER:
                user.decline_from = self._decline_from(user)
            elif user.persona is Persona.DORMANT:
                user.last_active = self._last_active(user)

    def _feasible(self, user: PlannedUser, persona: Persona) -> bool:
        """Does the window after this user's signup leave room for the persona to show?"""
        left = self.end - user.signup
        if persona is Persona.DECLINER:
            # A full habitual week, then two full weeks below the line.
            return monday_after(user.signup) + 3 * WEEK <= self.end
        if persona is Persona.DORMANT:
            return left >= 45 * DAY
        if persona is Persona.POWER:
            return left >= 7 * DAY
        if persona is Persona.ACTIVATED:
            return left >= 2 * DAY
        return left >= DAY or persona is Persona.STALLED_SETUP

    def _decline_from(self, user: PlannedUser) -> int:
        earliest = monday_after(user.signup) + WEEK
        latest = monday_on_or_before(self.end - 2 * WEEK)
        falls = user.account.falls_from
        if falls is not None and earliest <= falls <= latest:
            return falls
        # Habitual for two to six whole weeks, as far as the window allows.
        most = (latest - earliest) // WEEK
        return earliest + WEEK * self.rng.randint(min(1, most), min(5, most))

    def _last_active(self, user: PlannedUser) -> int:
        earliest = user.signup + 14 * DAY
        latest = self.end - 31 * DAY
        falls = user.account.falls_from
        if falls is not None:
            return max(earliest, min(latest, falls - self.rng.randrange(5 * DAY)))
        return self.rng.randint(earliest, max(earliest, latest))
