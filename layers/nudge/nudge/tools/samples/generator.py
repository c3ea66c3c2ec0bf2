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

Weeks below are ISO weeks in UTC, as the usage state counts them (nudge.domain.fold).
"""

from __future__ import annotations

import bisect
import hashlib
import random
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from operator import itemgetter
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

DAY = 86_400
WEEK = 7 * DAY
HOUR = 3_600
MINUTE = 60
# 1970-01-05 was a Monday, so UTC ISO weeks start at MONDAY0 + k * WEEK.
MONDAY0 = 4 * DAY
# Session starts are at least an hour apart and a session lasts under 25 minutes, so two planned
# sessions never merge under the tracking plan's 30-minute session gap.
SESSION_SPACING = HOUR
END_MARGIN = 30 * MINUTE
# At most this many meaningful events a session (each takes under ~3 minutes with its page view).
MAX_EVENTS = 6

HIGH_VALUE_MRR = 2000
SEAT_PRICE = {"free": 0, "team": 20, "business": 45}
NEXT_PLAN = {"free": "team", "team": "business", "business": "enterprise"}
FREE_SEATS = 10
ONBOARDING = ("setup_completed", "project_created", "teammate_invited")
LIBRARY_NAME = "nudge-sample"
LIBRARY_VERSION = "1"


class Persona(StrEnum):
    """How a user behaves over the window."""

    ACTIVATED = "activated"  # all three onboarding steps within days, then habitual
    POWER = "power"  # many sessions a week, automations, integrations, hits premium features
    STALLED_SETUP = "stalled_setup"  # signed up, never finished setup (a few logins at most)
    STALLED_NO_PROJECT = "stalled_no_project"  # finished setup, never created a project
    STALLED_NO_INVITE = "stalled_no_invite"  # created a project, never invited a teammate
    DECLINER = "decliner"  # habitual for some weeks, then under 2 meaningful sessions a week
    DORMANT = "dormant"  # active, then nothing at all for the last 30+ days


# Shares of all users, roughly what a B2B product with self-serve signup sees.
PERSONA_SHARES: Mapping[Persona, float] = {
    Persona.ACTIVATED: 0.28,
    Persona.POWER: 0.08,
    Persona.STALLED_SETUP: 0.16,
    Persona.STALLED_NO_PROJECT: 0.10,
    Persona.STALLED_NO_INVITE: 0.12,
    Persona.DECLINER: 0.13,
    Persona.DORMANT: 0.13,
}

# Zone, relative weight, usual locale.
ZONES: tuple[tuple[str, float, str], ...] = (
    ("America/New_York", 20, "en-US"),
    ("America/Chicago", 8, "en-US"),
    ("America/Denver", 3, "en-US"),
    ("America/Los_Angeles", 14, "en-US"),
    ("America/Toronto", 4, "en-CA"),
    ("America/Sao_Paulo", 4, "pt-BR"),
    ("America/Mexico_City", 2, "es-MX"),
    ("Europe/London", 10, "en-GB"),
    ("Europe/Dublin", 2, "en-IE"),
    ("Europe/Berlin", 7, "de-DE"),
    ("Europe/Paris", 5, "fr-FR"),
    ("Europe/Madrid", 3, "es-ES"),
    ("Europe/Amsterdam", 3, "nl-NL"),
    ("Asia/Kolkata", 6, "en-IN"),
    ("Asia/Singapore", 3, "en-SG"),
    ("Asia/Tokyo", 3, "ja-JP"),
    ("Australia/Sydney", 3, "en-AU"),
)
CS_AGENTS = ("Priya Raman", "Marcus Webb", "Sofia Alvarez", "Kenji Watanabe", "Amara Okafor")
NAME_HEADS = (
    "Acme", "Northwind", "Bluefin", "Copperleaf", "Driftwood", "Evergreen", "Falcon", "Granite",
    "Harbor", "Ironbark", "Juniper", "Keystone", "Lumen", "Meridian", "Nimbus", "Oakridge",
    "Pinnacle", "Quarry", "Redwood", "Summit", "Tidewater", "Umber", "Vantage", "Willow",
    "Yellowtail", "Zenith", "Atlas", "Beacon", "Cobalt", "Delta", "Ember", "Fjord", "Glacier",
    "Helix", "Indigo", "Kestrel", "Lattice", "Mosaic", "Orbit", "Prairie",
)  # fmt: skip
NAME_TAILS = (
    ("Robotics", "manufacturing"), ("Analytics", "software"), ("Logistics", "logistics"),
    ("Health", "healthcare"), ("Labs", "software"), ("Studio", "agency"), ("Foods", "retail"),
    ("Energy", "energy"), ("Capital", "finance"), ("Learning", "education"), ("Media", "media"),
    ("Systems", "software"), ("Outfitters", "retail"), ("Dental", "healthcare"), ("Legal", "legal"),
    ("Realty", "real estate"), ("Freight", "logistics"), ("Bio", "life sciences"), ("Design", "agency"),
    ("Security", "software"), ("Consulting", "consulting"), ("Manufacturing", "manufacturing"),
    ("Travel", "travel"), ("Insurance", "finance"), ("Events", "agency"), ("Works", "construction"),
)  # fmt: skip

# When sessions happen: weekdays (Mon..Sun) and local hours, weekdays heavier than weekends.
DAY_WEIGHTS = (1.0, 1.05, 1.05, 1.0, 0.85, 0.18, 0.12)
WEEKDAY_HOURS = {7: 2, 8: 6, 9: 10, 10: 10, 11: 9, 12: 5, 13: 8, 14: 10, 15: 9, 16: 8, 17: 5,
                 18: 2.5, 19: 1.5, 20: 1.5, 21: 1}  # fmt: skip
WEEKEND_HOURS = {9: 3, 10: 6, 11: 7, 12: 6, 13: 6, 14: 6, 15: 6, 16: 5, 17: 4, 18: 3, 19: 3, 20: 3, 21: 2}

# Recurring meaningful events of an established user (one-off ones are placed separately).
Mix = tuple[tuple[str, ...], tuple[float, ...]]
HABIT_MIX: Mix = (
    ("project_created", "report_exported", "automation_created", "teammate_invited"),
    (5, 4, 1, 0.6),
)
POWER_MIX: Mix = (
    ("project_created", "report_exported", "automation_created", "teammate_invited"),
    (4, 4, 4, 1),
)
SOLO_MIX: Mix = (("project_created", "report_exported"), (3, 2))

# The page a user usually opens just before an event.
EVENT_PAGES = {
    "setup_completed": ("/setup", "Set up your workspace"),
    "project_created": ("/projects/new", "New project"),
    "teammate_invited": ("/settings/team", "Team"),
    "integration_connected": ("/integrations", "Integrations"),
    "automation_created": ("/automations/new", "New automation"),
    "report_exported": ("/reports", "Reports"),
}
BROWSE_PAGES = (
    ("/dashboard", "Dashboard"),
    ("/projects", "Projects"),
    ("/projects/board", "Project board"),
    ("/inbox", "Inbox"),
    ("/reports", "Reports"),
    ("/automations", "Automations"),
    ("/settings", "Settings"),
)
PREMIUM_FEATURES = {
    "advanced_automation": "/automations/advanced",
    "sso": "/settings/security",
    "audit_log": "/settings/audit-log",
    "portfolio_view": "/portfolio",
    "custom_roles": "/settings/roles",
}
INTEGRATIONS = ("slack", "github", "google_drive", "jira", "salesforce", "hubspot", "microsoft_teams")
# Weighted choices, spelled out so one random() picks them.
SIGNUP_METHODS = ("email",) * 5 + ("google",) * 4 + ("microsoft",)
SIGNUP_SOURCES = ("organic",) * 4 + ("invite",) * 3 + ("paid_search",) * 2 + ("referral",)
INVITE_ROLES = ("member",) * 7 + ("admin",) + ("guest",) * 2
AUTOMATION_TRIGGERS = ("status_changed", "due_date", "schedule", "form_submitted")
REPORT_FORMATS = ("csv",) * 5 + ("pdf",) * 3 + ("xlsx",) * 2
TEMPLATES = ("blank", "sprint", "roadmap", "client_onboarding", "content_calendar", "bug_tracker")

_T = TypeVar("_T")


@dataclass(frozen=True)
class UserProfile:
    """Who a generated user is, for tests and the demo (the messages carry the same facts)."""

    user_id: str
    account_id: str
    persona: Persona
    signed_up: datetime
    timezone: str


@dataclass(frozen=True)
class AccountProfile:
    """A generated account as it stands at the end of the window."""

    account_id: str
    name: str
    plan: str
    mrr: int
    seats: int
    cs_owner: str
    created: datetime
    members: tuple[str, ...]
    at_risk: bool  # the high-value account whose users mostly decline or go dormant

    @property
    def high_value(self) -> bool:
        return self.mrr >= HIGH_VALUE_MRR


@dataclass(eq=False, slots=True)
class _Account:
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
    members: list[_User] = field(default_factory=list)
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
            "created_at": _iso(self.created * 1000),
        }


@dataclass(eq=False, slots=True)
class _User:
    account: _Account
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
class _Session:
    """One visit: a login (or the signup), a few page views and the meaningful events, minutes apart."""

    start: int  # epoch seconds, UTC
    user: _User
    use: bool  # planned as real use (meaningful events) rather than a look around
    signup: bool = False
    events: list[str] = field(default_factory=list)
    identify: dict[str, Any] | None = None  # traits sent at the session's start
    group: dict[str, Any] | None = None  # account traits sent (signup, or a plan upgrade)


class SampleHistory:
    """A planned history: who is who (`users`, `accounts`, `personas`) and its `messages()`."""

    def __init__(
        self,
        *,
        start: datetime,
        end: datetime,
        seed: int,
        accounts: Sequence[_Account],
        users: Sequence[_User],
        sessions: Sequence[_Session],
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
                _datetime(u.signup),
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
                created=_datetime(a.created),
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
        return _Expander(self._sessions, self.start, self.end, random.Random(self._expand_seed)).run()


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
    planner = _Planner(rng, int(start.timestamp()), int(end.timestamp()))
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


class _Planner:
    def __init__(self, rng: random.Random, start: int, end: int) -> None:
        self.rng = rng
        self.start = start
        self.end = end

    def plan(self, n_users: int, n_accounts: int) -> tuple[list[_Account], list[_User], list[_Session]]:
        accounts = self._accounts(n_accounts)
        users = self._users(accounts, n_users)
        self._plans(accounts)
        self._assign_personas(accounts, users)
        sessions: list[_Session] = []
        by_user: dict[int, list[_Session]] = {}
        for index, user in enumerate(users):
            by_user[index] = self._sessions(user)
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

    # --- accounts and users -------------------------------------------------------------------

    def _accounts(self, n: int) -> list[_Account]:
        rng = self.rng
        zones = [z for z, _, _ in ZONES]
        zone_weights = [w for _, w, _ in ZONES]
        combos = len(NAME_HEADS) * len(NAME_TAILS)
        picks = rng.sample(range(combos), min(n, combos))
        accounts: list[_Account] = []
        for i in range(n):
            pick = picks[i % len(picks)]
            head = NAME_HEADS[pick // len(NAME_TAILS)]
            tail, industry = NAME_TAILS[pick % len(NAME_TAILS)]
            name = f"{head} {tail}" if i < combos else f"{head} {tail} {i // combos + 1}"
            accounts.append(
                _Account(
                    index=i,
                    name=name,
                    industry=industry,
                    domain=name.lower().replace(" ", "-") + ".example",
                    zone=rng.choices(zones, zone_weights)[0],
                    cs_owner=rng.choice(CS_AGENTS),
                    # Team sizes are skewed: most accounts are small, a few are large.
                    weight=rng.lognormvariate(0, 0.8),
                )
            )
        # A couple of big accounts, a handful of other high-value ones, and one of those at risk.
        big = 2 if n >= 20 else 1
        extra = max(1, round(n * 0.04)) if n >= 2 else 0
        chosen = rng.sample(accounts, min(n, big + extra))
        for account in chosen[:big]:
            account.big = account.high_value = True
            account.weight *= 9
        for account in chosen[big:]:
            account.high_value = True
            account.weight = max(account.weight, 1.0) * 2
        if len(chosen) > big:
            chosen[big].at_risk = True
            chosen[big].weight *= 1.5
        span = self.end - self.start
        for account in accounts:
            # Accounts sign up over the whole window, more of them early; big and at-risk accounts
            # are established customers, there from the first days.
            if account.at_risk:
                offset = rng.uniform(0, min(2 * DAY, span * 0.05))
            elif account.big:
                offset = rng.uniform(0, span * 0.2)
            else:
                offset = span * rng.random() ** 1.7
            account.created = self._signup_time(ZoneInfo(account.zone), self.start + int(offset))
            if account.at_risk:
                # Not pushed past a weekend: its rollout must fit in the first week.
                account.created = min(account.created, self.start + int(offset))
        return accounts

    def _users(self, accounts: list[_Account], n: int) -> list[_User]:
        rng = self.rng
        sizes = [1] * len(accounts)  # every account has its owner
        for index in rng.choices(range(len(accounts)), [a.weight for a in accounts], k=n - len(accounts)):
            sizes[index] += 1
        zones = [z for z, _, _ in ZONES]
        zone_weights = [w for _, w, _ in ZONES]
        locale_of = {z: loc for z, _, loc in ZONES}
        users: list[_User] = []
        for account, size in zip(accounts, sizes, strict=True):
            # Teammates join over the days after the account's signup; big teams roll out slowly.
            mean_delay = 12 * DAY if account.big else 5 * DAY
            # The at-risk account rolled out to everyone in its first week, so its users have habits
            # to lose even in a short window (a decliner needs a full habitual UTC week first).
            rollout_end = _monday_after(account.created)
            if rollout_end - account.created < DAY:
                rollout_end += WEEK
            for k in range(size):
                zone_name = account.zone if rng.random() < 0.75 else rng.choices(zones, zone_weights)[0]
                zone = ZoneInfo(zone_name)
                if k == 0:
                    signup = account.created
                elif account.at_risk:
                    signup = self._signup_time(
                        zone, account.created + rng.randrange(rollout_end - account.created)
                    )
                    latest = min(rollout_end - HOUR, self.end - 2 * HOUR)
                    if signup > latest:  # working hours fell past the rollout week (or the window)
                        signup = account.created + rng.randrange(max(1, latest - account.created))
                else:
                    delay = min(rng.expovariate(1 / mean_delay), 60 * DAY)
                    signup = self._signup_time(zone, account.created + int(delay))
                locale = locale_of[zone_name]
                if not locale.startswith("en") and rng.random() < 0.15:
                    locale = "en-US"  # plenty of people run their tools in English
                sms = rng.random() < 0.18
                users.append(
                    _User(
                        account=account,
                        zone_name=zone_name,
                        zone=zone,
                        locale=locale,
                        signup=signup,
                        consent={"email": True, "push": rng.random() < 0.55, "sms": sms},
                        # 555-01xx numbers are reserved for fiction.
                        phone=f"+1{rng.choice((202, 312, 415, 512, 617, 646))}55501{rng.randrange(100):02d}"
                        if sms
                        else None,
                    )
                )
        # Ids follow signup order, like an auto-increment key.
        users.sort(key=lambda u: (u.signup, u.account.index))
        for number, user in enumerate(users, start=1):
            user.user_id = f"user-{number}"
            user.email = f"user-{number}@{user.account.domain}"
            user.account.members.append(user)
        accounts.sort(key=lambda a: (a.members[0].signup, a.index))
        width = max(3, len(str(len(accounts))))
        for number, account in enumerate(accounts, start=1):
            account.account_id = f"acct-{number:0{width}d}"
            account.created = account.members[0].signup
        return users

    def _plans(self, accounts: list[_Account]) -> None:
        rng = self.rng
        for account in accounts:
            size = len(account.members)
            if account.high_value:
                # Enterprise-ish customers buy seats ahead of rollout: 45+ business seats is 2,025+/month.
                account.plan = "business"
                account.seats = max(_round_up(size, 10), rng.randrange(45, 121, 5))
            else:
                # Small teams mostly stay free; the free plan stops at FREE_SEATS members.
                if size <= 3:
                    weights = (0.70, 0.27, 0.03)
                elif size <= FREE_SEATS:
                    weights = (0.45, 0.45, 0.10)
                else:
                    weights = (0.0, 0.75, 0.25)
                account.plan = rng.choices(("free", "team", "business"), weights)[0]
                account.seats = FREE_SEATS if account.plan == "free" else _round_up(size, 5)
                if account.plan == "business":
                    # An ordinary business account stays under the high-value line.
                    account.seats = min(account.seats, (HIGH_VALUE_MRR - 1) // SEAT_PRICE["business"])
                    account.seats = max(account.seats, size)

    # --- personas -----------------------------------------------------------------------------

    def _assign_personas(self, accounts: list[_Account], users: list[_User]) -> None:
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
            account.falls_from = _monday_on_or_after(self.start + (self.end - self.start) * 45 // 100)
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

    def _feasible(self, user: _User, persona: Persona) -> bool:
        """Does the window after this user's signup leave room for the persona to show?"""
        left = self.end - user.signup
        if persona is Persona.DECLINER:
            # A full habitual week, then two full weeks below the line.
            return _monday_after(user.signup) + 3 * WEEK <= self.end
        if persona is Persona.DORMANT:
            return left >= 45 * DAY
        if persona is Persona.POWER:
            return left >= 7 * DAY
        if persona is Persona.ACTIVATED:
            return left >= 2 * DAY
        return left >= DAY or persona is Persona.STALLED_SETUP

    def _decline_from(self, user: _User) -> int:
        earliest = _monday_after(user.signup) + WEEK
        latest = _monday_on_or_before(self.end - 2 * WEEK)
        falls = user.account.falls_from
        if falls is not None and earliest <= falls <= latest:
            return falls
        # Habitual for two to six whole weeks, as far as the window allows.
        most = (latest - earliest) // WEEK
        return earliest + WEEK * self.rng.randint(min(1, most), min(5, most))

    def _last_active(self, user: _User) -> int:
        earliest = user.signup + 14 * DAY
        latest = self.end - 31 * DAY
        falls = user.account.falls_from
        if falls is not None:
            return max(earliest, min(latest, falls - self.rng.randrange(5 * DAY)))
        return self.rng.randint(earliest, max(earliest, latest))

    # --- sessions -----------------------------------------------------------------------------

    def _sessions(self, user: _User) -> list[_Session]:
        rng = self.rng
        start, end = user.signup + SESSION_SPACING, self.end - END_MARGIN
        planned: list[tuple[int, bool]] = []
        persona = user.persona
        if persona is Persona.ACTIVATED:
            rate = rng.uniform(3.2, 6.0)
            planned += self._uses(user, start, end, rate, least=3, cap=2 if rate > 5 else 1)
            planned += self._looks(user, start, end, 0.6)
            sessions = self._merge(user, planned)
            uses = [s for s in sessions if s.use]
            done = self._onboard(uses, ONBOARDING, rng.choice((1, 2, 2, 3)))
            later = uses[done + 1 :] or uses
            self._habit(uses[done + 1 :], HABIT_MIX, 1, 3)
            self._sprinkle(later, "integration_connected", rng.choice((0, 0, 1, 1, 2)))
        elif persona is Persona.POWER:
            planned += self._uses(user, start, end, rng.uniform(8, 14), least=6, cap=3)
            planned += self._looks(user, start, end, 1.0)
            sessions = self._merge(user, planned)
            uses = [s for s in sessions if s.use]
            done = self._onboard(uses, ONBOARDING, rng.choice((2, 3)))
            later = uses[done + 1 :] or uses
            self._habit(uses[done + 1 :], POWER_MIX, 1, 3)
            self._sprinkle(later, "integration_connected", rng.randint(2, 5))
            # The upgrade wall comes once they go deep, not on day one.
            self._sprinkle(later[len(later) // 6 :], "premium_feature_attempted", rng.randint(3, 8))
            for needed in ("automation_created", "report_exported"):
                if not any(needed in s.events for s in uses):
                    self._sprinkle(later, needed, 1)
        elif persona is Persona.DECLINER:
            falls = user.decline_from
            # Habitual sessions end a day before the decline week so none slips into it in UTC.
            planned += self._uses(user, start, falls - DAY, rng.uniform(3.2, 5.5), least=3, cap=1)
            planned += self._looks(user, start, falls - DAY, 0.5)
            planned += self._fading(user, falls, end)
            sessions = self._merge(user, planned)
            uses = [s for s in sessions if s.use]
            done = self._onboard(uses, ONBOARDING, rng.choice((1, 2, 2, 3)))
            self._habit(uses[done + 1 :], HABIT_MIX, 1, 3)
        elif persona is Persona.DORMANT:
            last = user.last_active
            planned += self._uses(user, start, last, rng.uniform(2.2, 4.5), least=2, cap=1)
            # Dormant means they were really active first: a few uses at least, however the weeks fell.
            if sum(use for _, use in planned) < 4:
                planned += [(t, True) for t in self._scatter(user, start, last, 3)]
            planned += self._looks(user, start, last, 0.4)
            sessions = self._merge(user, planned)
            uses = [s for s in sessions if s.use]
            steps = ONBOARDING if rng.random() < 0.75 else ONBOARDING[:2]
            done = self._onboard(uses, steps, rng.choice((1, 2, 2, 3)))
            self._habit(uses[done + 1 :], HABIT_MIX if len(steps) == 3 else SOLO_MIX, 1, 2)
        elif persona is Persona.STALLED_NO_INVITE:
            solo_until = min(end, user.signup + rng.randint(1, 4) * WEEK)
            planned += self._uses(user, start, solo_until, rng.uniform(0.8, 2.0), least=0, cap=1)
            planned += [(t, False) for t in self._scatter(user, solo_until, end, rng.choice((0, 1, 2, 3)))]
            sessions = self._merge(user, planned)
            uses = [s for s in sessions if s.use]
            done = self._onboard(uses, ONBOARDING[:2], rng.choice((1, 2, 2)))
            self._habit(uses[done + 1 :], SOLO_MIX, 1, 2)
        elif persona is Persona.STALLED_NO_PROJECT:
            in_signup = rng.random() < 0.7
            if not in_signup:
                planned += [(t, True) for t in self._scatter(user, start, user.signup + 3 * DAY, 1)]
            planned += [
                (t, False) for t in self._scatter(user, start, user.signup + 28 * DAY, rng.randint(0, 4))
            ]
            sessions = self._merge(user, planned)
            self._onboard([s for s in sessions if s.use], ONBOARDING[:1], 1 if in_signup else 0)
        else:  # stalled at setup: signed up, then a few logins at most
            looks = self._scatter(user, start, user.signup + 21 * DAY, rng.choice((0, 0, 1, 1, 2, 3)))
            sessions = self._merge(user, [(t, False) for t in looks])
        return sessions

    def _merge(self, user: _User, planned: list[tuple[int, bool]]) -> list[_Session]:
        """The signup session, then the planned ones in time order, keeping starts an hour apart.

        Real use is placed first, so an idle login never crowds out a session the persona needs.
        """
        starts = [user.signup]
        kept: dict[int, bool] = {user.signup: True}
        for ts, use in sorted(planned, key=lambda p: (not p[1], p[0])):
            at = bisect.bisect_left(starts, ts)
            clear_before = at == 0 or ts - starts[at - 1] >= SESSION_SPACING
            clear_after = at == len(starts) or starts[at] - ts >= SESSION_SPACING
            if clear_before and clear_after and user.signup < ts <= self.end - END_MARGIN:
                starts.insert(at, ts)
                kept[ts] = use
        sessions = [_Session(ts, user, kept[ts]) for ts in starts]
        sessions[0].signup = True
        return sessions

    def _onboard(self, uses: list[_Session], steps: Sequence[str], first: int) -> int:
        """Do `first` steps in the first session and the rest one or two a session after it.

        The last session available takes whatever is left, so a late signup still finishes.
        Returns the index of the session in which the last step was done.
        """
        rest = list(steps)
        take = first
        index = 0
        while True:
            if index == len(uses) - 1:
                take = len(rest)
            uses[index].events.extend(rest[:take])
            rest = rest[take:]
            if not rest:
                return index
            index += 1
            take = self.rng.choice((1, 1, 2))

    def _habit(self, sessions: Sequence[_Session], mix: Mix, low: int, high: int) -> None:
        names, weights = mix
        for session in sessions:
            session.events.extend(self.rng.choices(names, weights, k=self.rng.randint(low, high)))

    def _sprinkle(self, sessions: Sequence[_Session], event: str, n: int) -> None:
        """Put `event` into n of the sessions (distinct ones when there are enough)."""
        room = [s for s in sessions if len(s.events) < MAX_EVENTS]
        if n <= 0 or not room:
            return
        picks = self.rng.sample(room, n) if n <= len(room) else self.rng.choices(room, k=n)
        for session in picks:
            session.events.insert(self.rng.randrange(len(session.events) + 1), event)

    def _uses(
        self, user: _User, lo: int, hi: int, rate: float, *, least: int, cap: int
    ) -> list[tuple[int, bool]]:
        return [(t, True) for t in self._spread(user, lo, hi, rate, least, cap)]

    def _looks(self, user: _User, lo: int, hi: int, rate: float) -> list[tuple[int, bool]]:
        """Logins that only look around: no meaningful event."""
        return [(t, False) for t in self._spread(user, lo, hi, rate, 0, 1)]

    def _fading(self, user: _User, falls: int, end: int) -> list[tuple[int, bool]]:
        """A decliner's weeks from `falls`: at most one meaningful session, and a few idle logins."""
        rng = self.rng
        planned: list[tuple[int, bool]] = []
        for monday in range(falls, end, WEEK):
            if rng.random() < 0.45:
                # Tuesday to Thursday local is Monday to Friday in UTC, whatever the zone: the
                # session stays inside its UTC week.
                day = datetime.fromtimestamp(monday, UTC).date() + timedelta(days=rng.randint(1, 3))
                ts = self._at(user.zone, day, self._hours(1, weekend=False)[0])
                if ts < end:
                    planned.append((ts, True))
            for _ in range(rng.choice((0, 1, 1, 2))):
                ts = self._working_time(user.zone, monday + rng.randrange(WEEK))
                if monday <= ts < min(monday + WEEK, end):
                    planned.append((ts, False))
        return planned

    def _spread(self, user: _User, lo: int, hi: int, rate: float, least: int, cap: int) -> list[int]:
        """Session starts in [lo, hi): about `rate` a local week (at least `least` in a full week),
        weekdays heavier, at most `cap` a day, in the user's working hours."""
        if hi <= lo:
            return []
        rng = self.rng
        zone = user.zone
        first, last = _local_day(zone, lo), _local_day(zone, hi)
        monday = first - timedelta(days=first.weekday())
        total = sum(DAY_WEIGHTS)
        out: list[int] = []
        while monday <= last:
            days = [d for d in (monday + timedelta(days=i) for i in range(7)) if first <= d <= last]
            weights = [DAY_WEIGHTS[d.weekday()] for d in days]
            wanted = max(0.0, rng.gauss(rate, rate * 0.25))
            if days[0] == monday and len(days) >= 5:
                # Every working day is open (the weekend may be cut off): a full week for the habit.
                count = max(least, round(wanted))
            else:
                count = _round_randomly(rng, wanted * sum(weights) / total)
            per_day = [0] * len(days)
            for _ in range(count):
                if not any(weights):
                    break
                index = rng.choices(range(len(days)), weights)[0]
                per_day[index] += 1
                if per_day[index] >= cap:
                    weights[index] = 0.0
            for day, k in zip(days, per_day, strict=True):
                for hour in self._hours(k, weekend=day.weekday() >= 5):
                    ts = self._at(zone, day, hour)
                    if lo <= ts < hi:
                        out.append(ts)
            monday += timedelta(days=7)
        return out

    def _scatter(self, user: _User, lo: int, hi: int, n: int) -> list[int]:
        """n working-hours moments at random in [lo, hi)."""
        out = []
        for _ in range(n):
            if hi > lo:
                ts = self._working_time(user.zone, lo + self.rng.randrange(hi - lo))
                if ts < hi:
                    out.append(ts)
        return out

    def _hours(self, k: int, *, weekend: bool) -> list[int]:
        """k local hours for sessions on one day, two hours apart at least."""
        table = WEEKEND_HOURS if weekend else WEEKDAY_HOURS
        picked: list[int] = []
        for _ in range(k):
            options = [h for h in table if all(abs(h - p) >= 2 for p in picked)]
            if not options:
                break
            picked.append(self.rng.choices(options, [table[h] for h in options])[0])
        return picked

    def _at(self, zone: ZoneInfo, day: date, hour: int) -> int:
        minute, second = self.rng.randrange(60), self.rng.randrange(60)
        return int(datetime(day.year, day.month, day.day, hour, minute, second, tzinfo=zone).timestamp())

    def _working_time(self, zone: ZoneInfo, not_before: int) -> int:
        """A working-hours moment on the local day of `not_before` or soon after (weekdays likelier)."""
        day = _local_day(zone, not_before)
        for _ in range(5):
            weekend = day.weekday() >= 5
            if not weekend or self.rng.random() < 0.3:
                ts = self._at(zone, day, self._hours(1, weekend=weekend)[0])
                if ts >= not_before:
                    return ts
            day += timedelta(days=1)
        return not_before

    def _signup_time(self, zone: ZoneInfo, around: int) -> int:
        """When someone signs up near `around`: in working hours, inside the window with room after."""
        ts = self._working_time(zone, max(self.start, around))
        latest = self.end - 2 * HOUR
        return ts if ts <= latest else max(self.start, latest - self.rng.randrange(HOUR))

    # --- account and trait changes ------------------------------------------------------------

    def _upgrades(
        self, accounts: list[_Account], users: list[_User], by_user: dict[int, list[_Session]]
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
            account.upgraded_seats = max(_round_up(len(account.members), 5), account.seats)
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

    def _consent_changes(self, users: list[_User], by_user: dict[int, list[_Session]]) -> None:
        """A few users switch push notifications on or off in their settings later on."""
        for index, user in enumerate(users):
            later = by_user[index][1:]
            if not later or self.rng.random() >= 0.04:
                continue
            session = self.rng.choice(later)
            user_consent = dict(user.consent, push=not user.consent["push"])
            session.identify = {**(session.identify or {}), "consent": user_consent}

    def _signup_traits(self, user: _User) -> dict[str, Any]:
        traits: dict[str, Any] = {
            "email": user.email,
            "plan": user.account.plan_at(user.signup),
            "timezone": user.zone_name,
            "locale": user.locale,
            "consent": dict(user.consent),
            "created_at": _iso(user.signup * 1000),
        }
        if user.phone:
            traits["phone"] = user.phone
        # The mobile app's device token (what it registers for push); derived, not drawn from the
        # generator's random stream, so every other part of the history stays as it was.
        traits["push_token"] = hashlib.sha256(f"device|{user.email}".encode()).hexdigest()
        return traits


class _Expander:
    """Turns planned sessions into messages, a day at a time, so memory stays at a day's worth."""

    def __init__(
        self, sessions: Sequence[_Session], start: datetime, end: datetime, rng: random.Random
    ) -> None:
        self.sessions = sessions
        self.start_ms = int(start.timestamp() * 1000)
        self.end_ms = int(end.timestamp() * 1000)
        self.rng = rng
        # random() is several times cheaper than randint/choice, and this is the hot path.
        self.random = rng.random

    def run(self) -> Iterator[dict[str, Any]]:
        pending: list[tuple[int, dict[str, Any]]] = []
        boundary = self.start_ms + DAY * 1000
        for session in self.sessions:
            # A session lasts under half an hour, so one starting before a day boundary only spills
            # into the next day's messages, which are not yet yielded.
            while session.start * 1000 >= boundary:
                yield from _flush(pending, boundary)
                boundary += DAY * 1000
            self._expand(session, pending)
        yield from _flush(pending, self.end_ms)

    def _expand(self, session: _Session, out: list[tuple[int, dict[str, Any]]]) -> None:
        between, pick = self._between, self._pick
        user = session.user
        uid = user.user_id
        account_id = user.account.account_id
        t = session.start * 1000 + between(0, 999)

        def track(event: str, properties: dict[str, Any]) -> None:
            out.append(
                (
                    t,
                    self._message(
                        t, {"type": "track", "userId": uid, "event": event, "properties": properties}
                    ),
                )
            )

        def identify(traits: dict[str, Any]) -> None:
            out.append((t, self._message(t, {"type": "identify", "userId": uid, "traits": dict(traits)})))

        def group(traits: dict[str, Any]) -> None:
            body = {"type": "group", "userId": uid, "groupId": account_id, "traits": dict(traits)}
            out.append((t, self._message(t, body)))

        if session.signup:
            track("page_viewed", _page("/signup", "Sign up"))
            t += between(20_000, 90_000)
            track("signed_up", self._props("signed_up", user, t))
            t += between(200, 900)
            identify(session.identify or {})
            t += between(200, 900)
            group(session.group or {})
            t += between(2_000, 15_000)
            track("page_viewed", _page("/welcome", "Welcome"))
        else:
            track("login", {"method": self._login_method(user)})
            if session.identify:
                t += between(200, 900)
                identify(session.identify)
            t += between(2_000, 20_000)
            track("page_viewed", _page("/dashboard", "Dashboard"))
            if session.group:  # the plan upgrade, done on the billing page
                t += between(10_000, 60_000)
                track("page_viewed", _page("/settings/billing", "Billing"))
                t += between(30_000, 120_000)
                group(session.group)
            for _ in range(pick((0, 1, 1, 2)) if session.events else between(1, 3)):
                t += between(5_000, 60_000)
                track("page_viewed", _page(*pick(BROWSE_PAGES)))
        for event in session.events:
            props = self._props(event, user, t)
            page = EVENT_PAGES.get(event)
            if event == "premium_feature_attempted":
                page = (PREMIUM_FEATURES[props["feature"]], "Upgrade to unlock")
            if page is not None and self.random() < 0.8:
                t += between(5_000, 40_000)
                track("page_viewed", _page(*page))
            t += between(30_000, 150_000)
            track(event, props)

    def _props(self, event: str, user: _User, t: int) -> dict[str, Any]:
        between, pick = self._between, self._pick
        if event == "signed_up":
            return {"method": pick(SIGNUP_METHODS), "source": pick(SIGNUP_SOURCES)}
        if event == "setup_completed":
            return {"steps_completed": 5, "duration_s": between(90, 900)}
        if event == "project_created":
            return {"project_id": f"prj_{self.rng.getrandbits(40):010x}", "template": pick(TEMPLATES)}
        if event == "teammate_invited":
            return {"role": pick(INVITE_ROLES), "invitees": between(1, 4)}
        if event == "integration_connected":
            return {"integration": pick(INTEGRATIONS)}
        if event == "automation_created":
            return {"trigger": pick(AUTOMATION_TRIGGERS), "actions": between(1, 4)}
        if event == "report_exported":
            return {"format": pick(REPORT_FORMATS), "rows": between(10, 5000)}
        if event == "premium_feature_attempted":
            plan = user.account.plan_at(t // 1000)
            return {"feature": pick(tuple(PREMIUM_FEATURES)), "plan": plan, "required_plan": NEXT_PLAN[plan]}
        return {}

    def _login_method(self, user: _User) -> str:
        return "sso" if user.account.high_value else "password" if self.random() < 0.6 else "google"

    def _message(self, t: int, body: dict[str, Any]) -> dict[str, Any]:
        body["timestamp"] = _iso(t)
        # A version-4 UUID from the seeded rng, formatted directly (uuid.UUID is slow in bulk).
        h = f"{self.rng.getrandbits(128) & _UUID_CLEAR | _UUID_SET:032x}"
        body["messageId"] = f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
        body["context"] = {"library": {"name": LIBRARY_NAME, "version": LIBRARY_VERSION}}
        return body

    def _between(self, low: int, high: int) -> int:
        """A whole number in [low, high]."""
        return low + int(self.random() * (high - low + 1))

    def _pick(self, options: Sequence[_T]) -> _T:
        return options[int(self.random() * len(options))]


# The version (4) and variant (RFC 4122) bits of a random UUID, as uuid.UUID(version=4) sets them.
_UUID_CLEAR = ~((0xF000 << 64) | (0xC000 << 48))
_UUID_SET = (0x4000 << 64) | (0x8000 << 48)


def _flush(pending: list[tuple[int, dict[str, Any]]], boundary: int) -> Iterator[dict[str, Any]]:
    """Yield, in time order, the pending messages before `boundary`; keep the rest pending."""
    pending.sort(key=itemgetter(0))  # stable: ties keep the order they were made in
    cut = 0
    while cut < len(pending) and pending[cut][0] < boundary:
        cut += 1
    ready = pending[:cut]
    del pending[:cut]
    for _, message in ready:
        yield message


def _page(path: str, title: str) -> dict[str, Any]:
    return {"path": path, "title": title}


_DAY_PREFIX: dict[int, str] = {}


def _iso(ms: int) -> str:
    """ISO 8601 UTC with milliseconds and a Z, as Segment libraries send; cached per day for speed."""
    day, rest = divmod(ms, DAY * 1000)
    prefix = _DAY_PREFIX.get(day)
    if prefix is None:
        prefix = _DAY_PREFIX[day] = datetime.fromtimestamp(day * DAY, UTC).strftime("%Y-%m-%dT")
    seconds, millis = divmod(rest, 1000)
    hours, seconds = divmod(seconds, 3600)
    minutes, seconds = divmod(seconds, 60)
    return f"{prefix}{hours:02d}:{minutes:02d}:{seconds:02d}.{millis:03d}Z"


def _datetime(ts: int) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def _local_day(zone: ZoneInfo, ts: int) -> date:
    return datetime.fromtimestamp(ts, zone).date()


def _monday_after(ts: int) -> int:
    """The first UTC Monday midnight strictly after ts."""
    return MONDAY0 + ((ts - MONDAY0) // WEEK + 1) * WEEK


def _monday_on_or_after(ts: int) -> int:
    return MONDAY0 + -((MONDAY0 - ts) // WEEK) * WEEK


def _monday_on_or_before(ts: int) -> int:
    return MONDAY0 + ((ts - MONDAY0) // WEEK) * WEEK


def _round_up(n: int, step: int) -> int:
    return max(step, -(-n // step) * step)


def _round_randomly(rng: random.Random, x: float) -> int:
    """Round up with probability equal to the fraction, so partial weeks keep the right mean."""
    whole = int(x)
    return whole + (1 if rng.random() < x - whole else 0)
