"""A seeded, realistic usage history of the sample product, as Segment messages.

The sample product is the B2B project-automation SaaS that rules/tracking-plan.yaml describes.
Accounts sign up over the window (more of them early), their users join over the following days,
and each user follows one persona: activates quickly and becomes habitual, stalls at one of the
three onboarding steps, becomes a power user who keeps hitting the upgrade wall, declines after
some habitual weeks, or goes dormant. One high-value account is mostly decliners and dormant
users, so customer success has an account to rescue.

Everything is pure: the caller passes `start`, and one random.Random(seed) makes every choice
(message ids included), so a seed always gives the same messages, byte for byte. Planning keeps
only small session records; messages are made a day at a time when iterated, so a 1,000-user,
90-day history streams without being held in memory.

Weeks in this package are ISO weeks in UTC, as the usage state counts them (nudge.domain.fold).

Here are the entry points (`build_history`, `generate`, `SampleHistory`); the product's tables
are in catalog, the personas and profiles in personas, the planning in planner (with roster,
persona_assignment and sessions), the messages in expander.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from nudge.tools.samples.catalog import SEAT_PRICE
from nudge.tools.samples.expander import Expander
from nudge.tools.samples.personas import AccountProfile, Persona, UserProfile
from nudge.tools.samples.planner import Planner
from nudge.tools.samples.records import PlannedAccount, PlannedSession, PlannedUser
from nudge.tools.samples.timeutil import utc_datetime

# The profiles a history hands out are part of this module's interface.
__all__ = ["AccountProfile", "Persona", "SampleHistory", "UserProfile", "build_history", "generate"]


class SampleHistory:
    """A planned history: who is who (`users`, `accounts`, `personas`) and its `messages()`."""

    def __init__(
        self,
        *,
        start: datetime,
        end: datetime,
        seed: int,
        accounts: Sequence[PlannedAccount],
        users: Sequence[PlannedUser],
        sessions: Sequence[PlannedSession],
        expand_seed: int,
    ) -> None:
        self.start = start
        self.end = end
        self.seed = seed
        self._sessions = sessions
        self._expand_seed = expand_seed
        self.users: dict[str, UserProfile] = {
            u.user_id: UserProfile(
                u.user_id,
                u.account.account_id,
                u.persona or Persona.STALLED_SETUP,
                utc_datetime(u.signup),
                u.zone_name,
            )
            for u in users
        }
        end_ts = int(end.timestamp())
        self.accounts: dict[str, AccountProfile] = {
            a.account_id: AccountProfile(
                account_id=a.account_id,
                name=a.name,
                plan=a.plan_at(end_ts),
                mrr=a.seats_at(end_ts) * SEAT_PRICE[a.plan_at(end_ts)],
                seats=a.seats_at(end_ts),
                cs_owner=a.cs_owner,
                created=utc_datetime(a.created),
                members=tuple(m.user_id for m in a.members),
                at_risk=a.at_risk,
            )
            for a in accounts
        }

    @property
    def personas(self) -> dict[str, Persona]:
        """user id -> persona."""
        return {uid: profile.persona for uid, profile in self.users.items()}

    def persona_counts(self) -> dict[Persona, int]:
        counts = Counter(profile.persona for profile in self.users.values())
        return {persona: counts[persona] for persona in Persona}

    def messages(self) -> Iterator[dict[str, Any]]:
        """The Segment messages in timestamp order, all within [start, end). Same every time."""
        return Expander(self._sessions, self.start, self.end, random.Random(self._expand_seed)).run()


def build_history(
    *, users: int = 1000, accounts: int = 100, days: int = 90, seed: int = 7, start: datetime
) -> SampleHistory:
    """Plan a history of `users` users in `accounts` accounts over `days` days from `start`.

    A naive `start` is taken as UTC. Accounts are capped at the number of users (an account is
    only seen through its members' group calls).
    """
    if users < 1 or accounts < 1 or days < 1:
        raise ValueError("users, accounts and days must each be at least 1")
    if start.tzinfo is None:
        start = start.replace(tzinfo=UTC)
    start = start.astimezone(UTC)
    end = start + timedelta(days=days)
    rng = random.Random(seed)
    planner = Planner(rng, int(start.timestamp()), int(end.timestamp()))
    plan_accounts, plan_users, sessions = planner.plan(users, min(accounts, users))
    return SampleHistory(
        start=start,
        end=end,
        seed=seed,
        accounts=plan_accounts,
        users=plan_users,
        sessions=sessions,
        expand_seed=rng.getrandbits(64),
    )


def generate(
    *, users: int = 1000, accounts: int = 100, days: int = 90, seed: int = 7, start: datetime
) -> Iterator[dict[str, Any]]:
    """Segment messages (track, identify, group) of a realistic history, sorted by timestamp."""
    return build_history(users=users, accounts=accounts, days=days, seed=seed, start=start).messages()
