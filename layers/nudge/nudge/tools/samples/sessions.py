"""Each user's sessions, as their persona would have them: when they log in (a rate a local
week, weekdays heavier, in working hours), which sessions are real use rather than a look
around, and which meaningful events each holds (onboarding steps first, then habits).

Weeks are ISO weeks in UTC, as the usage state counts them (nudge.domain.fold).
"""

from __future__ import annotations

import bisect
import random
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from nudge.tools.samples.catalog import ONBOARDING
from nudge.tools.samples.personas import HABIT_MIX, POWER_MIX, SOLO_MIX, Mix, Persona
from nudge.tools.samples.records import PlannedSession, PlannedUser
from nudge.tools.samples.timeutil import DAY, HOUR, MINUTE, WEEK, local_day
from nudge.tools.samples.working_hours import DAY_WEIGHTS, local_moment, session_hours, working_time

# Session starts are at least an hour apart and a session lasts under 25 minutes, so two planned
# sessions never merge under the tracking plan's 30-minute session gap.
SESSION_SPACING = HOUR
END_MARGIN = 30 * MINUTE
# At most this many meaningful events a session (each takes under ~3 minutes with its page view).
MAX_EVENTS = 6


class SessionPlanner:
    """Plans one user's sessions at a time, from the one rng."""

    def __init__(self, rng: random.Random, end: int) -> None:
        self.rng = rng
        self.end = end

    def plan(self, user: PlannedUser) -> list[PlannedSession]:
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

    def _merge(self, user: PlannedUser, planned: list[tuple[int, bool]]) -> list[PlannedSession]:
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
        sessions = [PlannedSession(ts, user, kept[ts]) for ts in starts]
        sessions[0].signup = True
        return sessions

    def _onboard(self, uses: list[PlannedSession], steps: Sequence[str], first: int) -> int:
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

    def _habit(self, sessions: Sequence[PlannedSession], mix: Mix, low: int, high: int) -> None:
        names, weights = mix
        for session in sessions:
            session.events.extend(self.rng.choices(names, weights, k=self.rng.randint(low, high)))

    def _sprinkle(self, sessions: Sequence[PlannedSession], event: str, n: int) -> None:
        """Put `event` into n of the sessions (distinct ones when there are enough)."""
        room = [s for s in sessions if len(s.events) < MAX_EVENTS]
        if n <= 0 or not room:
            return
        picks = self.rng.sample(room, n) if n <= len(room) else self.rng.choices(room, k=n)
        for session in picks:
            session.events.insert(self.rng.randrange(len(session.events) + 1), event)

    def _uses(
        self, user: PlannedUser, lo: int, hi: int, rate: float, *, least: int, cap: int
    ) -> list[tuple[int, bool]]:
        return [(t, True) for t in self._spread(user, lo, hi, rate, least, cap)]

    def _looks(self, user: PlannedUser, lo: int, hi: int, rate: float) -> list[tuple[int, bool]]:
        """Logins that only look around: no meaningful event."""
        return [(t, False) for t in self._spread(user, lo, hi, rate, 0, 1)]

    def _fading(self, user: PlannedUser, falls: int, end: int) -> list[tuple[int, bool]]:
        """A decliner's weeks from `falls`: at most one meaningful session, and a few idle logins."""
        rng = self.rng
        planned: list[tuple[int, bool]] = []
        for monday in range(falls, end, WEEK):
            if rng.random() < 0.45:
                # Tuesday to Thursday local is Monday to Friday in UTC, whatever the zone: the
                # session stays inside its UTC week.
                day = datetime.fromtimestamp(monday, UTC).date() + timedelta(days=rng.randint(1, 3))
                ts = local_moment(rng, user.zone, day, session_hours(rng, 1, weekend=False)[0])
                if ts < end:
                    planned.append((ts, True))
            for _ in range(rng.choice((0, 1, 1, 2))):
                ts = working_time(rng, user.zone, monday + rng.randrange(WEEK))
                if monday <= ts < min(monday + WEEK, end):
                    planned.append((ts, False))
        return planned

    def _spread(self, user: PlannedUser, lo: int, hi: int, rate: float, least: int, cap: int) -> list[int]:
        """Session starts in [lo, hi): about `rate` a local week (at least `least` in a full week),
        weekdays heavier, at most `cap` a day, in the user's working hours."""
        if hi <= lo:
            return []
        rng = self.rng
        zone = user.zone
        first, last = local_day(zone, lo), local_day(zone, hi)
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
                for hour in session_hours(rng, k, weekend=day.weekday() >= 5):
                    ts = local_moment(rng, zone, day, hour)
                    if lo <= ts < hi:
                        out.append(ts)
            monday += timedelta(days=7)
        return out

    def _scatter(self, user: PlannedUser, lo: int, hi: int, n: int) -> list[int]:
        """n working-hours moments at random in [lo, hi)."""
        out = []
        for _ in range(n):
            if hi > lo:
                ts = working_time(self.rng, user.zone, lo + self.rng.randrange(hi - lo))
                if ts < hi:
                    out.append(ts)
        return out


def _round_randomly(rng: random.Random, x: float) -> int:
    """Round up with probability equal to the fraction, so partial weeks keep the right mean."""
    whole = int(x)
    return whole + (1 if rng.random() < x - whole else 0)
