"""Planned sessions into Segment messages (track, identify, group), a day at a time, so a
1,000-user, 90-day history streams without being held in memory.

One random.Random, seeded from the planner's, draws every detail (message ids included), so a
history gives the same messages, byte for byte, every time it is iterated.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Iterator, Sequence
from datetime import datetime
from operator import itemgetter
from typing import Any, TypeVar

from nudge.tools.samples.catalog import (
    AUTOMATION_TRIGGERS,
    BROWSE_PAGES,
    EVENT_PAGES,
    INTEGRATIONS,
    INVITE_ROLES,
    LIBRARY_NAME,
    LIBRARY_VERSION,
    NEXT_PLAN,
    PREMIUM_FEATURES,
    REPORT_FORMATS,
    SIGNUP_METHODS,
    SIGNUP_SOURCES,
    TEMPLATES,
)
from nudge.tools.samples.records import PlannedSession, PlannedUser
from nudge.tools.samples.timeutil import DAY, iso

_T = TypeVar("_T")


class Expander:
    """Turns planned sessions into messages, a day at a time, so memory stays at a day's worth."""

    def __init__(
        self, sessions: Sequence[PlannedSession], start: datetime, end: datetime, rng: random.Random
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

    def _expand(self, session: PlannedSession, out: list[tuple[int, dict[str, Any]]]) -> None:
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
            # The account's first paid plan (its creator's signup) or its upgrade is invoiced.
            if traits.get("mrr") and (not session.signup or user is user.account.members[0]):
                paid = {"revenue": float(traits["mrr"]), "plan": traits["plan"]}
                body = {"type": "track", "userId": uid, "event": "invoice_paid", "properties": paid}
                out.append((t + 1, _derived_message(t + 1, body)))

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

    def _props(self, event: str, user: PlannedUser, t: int) -> dict[str, Any]:
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

    def _login_method(self, user: PlannedUser) -> str:
        return "sso" if user.account.high_value else "password" if self.random() < 0.6 else "google"

    def _message(self, t: int, body: dict[str, Any]) -> dict[str, Any]:
        body["timestamp"] = iso(t)
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
    # `name` is the page's name as the tracking plan declares it (a dimension: where: {name: ...}).
    return {"path": path, "title": title, "name": title}


def _derived_message(t: int, body: dict[str, Any]) -> dict[str, Any]:
    """A message whose id is derived from its content, not drawn from the seeded random stream,
    so adding it leaves every other message of the history as it was."""
    h = hashlib.sha256(f"{t}|{json.dumps(body, sort_keys=True)}".encode()).hexdigest()
    h = h[:12] + "4" + h[13:16] + "8" + h[17:32]
    body["timestamp"] = iso(t)
    body["messageId"] = f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"
    body["context"] = {"library": {"name": LIBRARY_NAME, "version": LIBRARY_VERSION}}
    return body
