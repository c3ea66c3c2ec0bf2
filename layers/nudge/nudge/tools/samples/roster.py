"""Who is in the history: the accounts (names, zones, owners, when they sign up, which are
high value and which one is at risk), their members and when each joins, and each account's plan.

Accounts sign up over the window (more of them early) and their users join over the following
days. One high-value account is there from the first days and rolls out to everyone in its first
week, so its users have habits to lose.
"""

from __future__ import annotations

import random
from zoneinfo import ZoneInfo

from nudge.tools.samples.catalog import (
    CS_AGENTS,
    FREE_SEATS,
    HIGH_VALUE_MRR,
    NAME_HEADS,
    NAME_TAILS,
    SEAT_PRICE,
    ZONES,
)
from nudge.tools.samples.records import PlannedAccount, PlannedUser
from nudge.tools.samples.timeutil import DAY, HOUR, WEEK, monday_after
from nudge.tools.samples.working_hours import working_time


class Roster:
    """Draws the accounts, their members and their plans, in that order, from the one rng."""

    def __init__(self, rng: random.Random, start: int, end: int) -> None:
        self.rng = rng
        self.start = start
        self.end = end

    def accounts(self, n: int) -> list[PlannedAccount]:
        rng = self.rng
        zones = [z for z, _, _ in ZONES]
        zone_weights = [w for _, w, _ in ZONES]
        combos = len(NAME_HEADS) * len(NAME_TAILS)
        picks = rng.sample(range(combos), min(n, combos))
        accounts: list[PlannedAccount] = []
        for i in range(n):
            pick = picks[i % len(picks)]
            head = NAME_HEADS[pick // len(NAME_TAILS)]
            tail, industry = NAME_TAILS[pick % len(NAME_TAILS)]
            name = f"{head} {tail}" if i < combos else f"{head} {tail} {i // combos + 1}"
            accounts.append(
                PlannedAccount(
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

    def users(self, accounts: list[PlannedAccount], n: int) -> list[PlannedUser]:
        rng = self.rng
        sizes = [1] * len(accounts)  # every account has its owner
        for index in rng.choices(range(len(accounts)), [a.weight for a in accounts], k=n - len(accounts)):
            sizes[index] += 1
        zones = [z for z, _, _ in ZONES]
        zone_weights = [w for _, w, _ in ZONES]
        locale_of = {z: loc for z, _, loc in ZONES}
        users: list[PlannedUser] = []
        for account, size in zip(accounts, sizes, strict=True):
            # Teammates join over the days after the account's signup; big teams roll out slowly.
            mean_delay = 12 * DAY if account.big else 5 * DAY
            # The at-risk account rolled out to everyone in its first week, so its users have habits
            # to lose even in a short window (a decliner needs a full habitual UTC week first).
            rollout_end = monday_after(account.created)
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
                    PlannedUser(
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
            user.email = simulated_address(number) or f"user-{number}@{user.account.domain}"
            user.account.members.append(user)
        accounts.sort(key=lambda a: (a.members[0].signup, a.index))
        width = max(3, len(str(len(accounts))))
        for number, account in enumerate(accounts, start=1):
            account.account_id = f"acct-{number:0{width}d}"
            account.created = account.members[0].signup
        return users

    def plans(self, accounts: list[PlannedAccount]) -> None:
        rng = self.rng
        for account in accounts:
            size = len(account.members)
            if account.high_value:
                # Enterprise-ish customers buy seats ahead of rollout: 45+ business seats is 2,025+/month.
                account.plan = "business"
                account.seats = max(round_up(size, 10), rng.randrange(45, 121, 5))
            else:
                # Small teams mostly stay free; the free plan stops at FREE_SEATS members.
                if size <= 3:
                    weights = (0.70, 0.27, 0.03)
                elif size <= FREE_SEATS:
                    weights = (0.45, 0.45, 0.10)
                else:
                    weights = (0.0, 0.75, 0.25)
                account.plan = rng.choices(("free", "team", "business"), weights)[0]
                account.seats = FREE_SEATS if account.plan == "free" else round_up(size, 5)
                if account.plan == "business":
                    # An ordinary business account stays under the high-value line.
                    account.seats = min(account.seats, (HIGH_VALUE_MRR - 1) // SEAT_PRICE["business"])
                    account.seats = max(account.seats, size)

    def _signup_time(self, zone: ZoneInfo, around: int) -> int:
        """When someone signs up near `around`: in working hours, inside the window with room after."""
        ts = working_time(self.rng, zone, max(self.start, around))
        latest = self.end - 2 * HOUR
        return ts if ts <= latest else max(self.start, latest - self.rng.randrange(HOUR))


def round_up(n: int, step: int) -> int:
    return max(step, -(-n // step) * step)


# Some of the sample's users have addresses at SES's mailbox simulator, so the demo shows feedback:
# on real SES they bounce, complain or sit on the account's suppression list without hurting the
# sender's reputation, and the local stack makes the same outcomes (tools/local/mailbox_simulator).
# A +label keeps each address its own person's. Every 29th user bounces, every 97th complains, every
# 151st is on SES's suppression list (a few percent: enough to see, the bounce rate alarm aside).
SIMULATED = ((29, "bounce"), (97, "complaint"), (151, "suppressionlist"))


def simulated_address(number: int) -> str | None:
    for every, box in SIMULATED:
        if number % every == 0:
            return f"{box}+user-{number}@simulator.amazonses.com"
    return None
