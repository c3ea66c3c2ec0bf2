"""Properties of ingest over time: several users, several traits, the same messages sent again in
later requests, before and after the messageId dedupe window (7 days: a message seen on UTC day D
is a duplicate until day D+7 and counts again from day D+8), whatever the order within a request.

Each generated history is checked against a model small enough to read: a message counts when its
user has not recorded its messageId in the window; traits and the account are the latest by
(timestamp, messageId).
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from hypothesis import event, given, settings
from hypothesis import strategies as st

from nudge.adapters.memory import MemoryUsageStore
from nudge.model.messages import Group, Identify, Message, Track
from nudge.rulebook.plan import load_plan
from nudge.services.ingest import IngestLimits, ingest

PLAN = load_plan(Path("rules"))
LIMITS = IngestLimits()
DEDUPE_DAYS = LIMITS.window.dedupe_days
# Late in a UTC day, so that requests a few hours apart fall on different dedupe days.
START = datetime(2026, 11, 20, 21, 0, tzinfo=UTC)
USERS = ["u1", "u2", "u3"]
EVENTS = ["project_created", "login", "report_exported"]
TRAIT_VALUES: dict[str, list[Any]] = {
    "plan": ["free", "team", "business"],
    "timezone": ["Europe/Paris", "Asia/Tokyo"],
    "locale": ["fr-FR", "ja-JP"],
    "first_name": ["Ada", "Grace"],
}
# Days after the first request on which later requests arrive: around the window's edge, and past
# a second window.
ARRIVAL_DAYS = [0, 1, DEDUPE_DAYS - 1, DEDUPE_DAYS, DEDUPE_DAYS + 1, DEDUPE_DAYS + 2, 2 * DEDUPE_DAYS + 1]


@st.composite
def a_message(draw: st.DrawFn, index: int) -> Message:
    user = draw(st.sampled_from(USERS))
    mid = f"m{index}"
    # Up to 40 days before the first request: event time and arrival time are different clocks.
    at = START - timedelta(minutes=draw(st.integers(min_value=0, max_value=40 * 24 * 60)))
    kind = draw(st.sampled_from(["track", "track", "track", "identify", "group"]))
    if kind == "track":
        return Track(userId=user, event=draw(st.sampled_from(EVENTS)), timestamp=at, messageId=mid)
    if kind == "identify":
        keys = draw(st.lists(st.sampled_from(sorted(TRAIT_VALUES)), min_size=1, max_size=3, unique=True))
        traits = {key: draw(st.sampled_from(TRAIT_VALUES[key])) for key in keys}
        return Identify.model_validate({"userId": user, "traits": traits, "timestamp": at, "messageId": mid})
    return Group(userId=user, groupId=draw(st.sampled_from(["a1", "a2"])), timestamp=at, messageId=mid)


@dataclass(frozen=True)
class Request:
    at: datetime
    messages: list[Message]


@st.composite
def histories(draw: st.DrawFn) -> list[Request]:
    """Messages, and requests at several times each carrying some of them: a message may come in
    many requests (an SDK's retries, a replayed backlog) and twice in one."""
    messages = [draw(a_message(i)) for i in range(draw(st.integers(min_value=1, max_value=12)))]
    requests = []
    for _ in range(draw(st.integers(min_value=1, max_value=6))):
        at = START + timedelta(days=draw(st.sampled_from(ARRIVAL_DAYS)), hours=draw(st.integers(0, 5)))
        picked = draw(st.lists(st.sampled_from(messages), min_size=1, max_size=10))
        requests.append(Request(at, [m.model_copy(deep=True) for m in picked]))
    return sorted(requests, key=lambda r: r.at)


def run(requests: list[Request]) -> MemoryUsageStore:
    store = MemoryUsageStore()
    for request in requests:
        result = ingest(list(enumerate(request.messages)), PLAN, store, request.at, LIMITS)
        assert result.errors == []
        assert result.accepted == len(request.messages)
    return store


@dataclass
class Expected:
    counts: dict[str, Counter[str]]
    traits: dict[str, dict[str, Any]]
    accounts: dict[str, str | None]
    recounted: int  # messages that counted a second time, their first count out of the window


def model(requests: list[Request]) -> Expected:
    """What ingest should make of the requests, written out plainly."""
    recorded: dict[tuple[str, str], int] = {}  # (user, messageId) -> UTC day it was last counted
    counts: dict[str, Counter[str]] = {u: Counter() for u in USERS}
    latest: dict[tuple[str, str], tuple[datetime, str, Any]] = {}
    recounted = 0
    for request in requests:
        today = request.at.toordinal()
        for message in request.messages:
            user, mid = message.userId or "", message.messageId or ""
            assert message.timestamp is not None
            day = recorded.get((user, mid))
            if day is not None and day >= today - DEDUPE_DAYS:
                continue  # a duplicate within the window
            recounted += day is not None
            recorded[(user, mid)] = today
            if isinstance(message, Track):
                counts[user][message.event] += 1
            stamped: dict[str, Any] = {}
            if isinstance(message, Identify):
                stamped = message.traits.model_dump(exclude_unset=True)
            elif isinstance(message, Group):
                stamped = {"account": message.groupId}
            for key, value in stamped.items():
                mark = (message.timestamp, mid, value)
                if (user, key) not in latest or mark[:2] > latest[(user, key)][:2]:
                    latest[(user, key)] = mark
    traits = {u: {k: v[2] for (user, k), v in latest.items() if user == u and k != "account"} for u in USERS}
    accounts = {u: latest[(u, "account")][2] if (u, "account") in latest else None for u in USERS}
    return Expected(counts, traits, accounts, recounted)


@settings(max_examples=150, deadline=None)
@given(histories())
def test_every_user_counts_each_message_once_per_dedupe_window_and_keeps_the_latest_traits(
    requests: list[Request],
) -> None:
    # Given messages for several users, sent again in later requests within and past the window
    expected = model(requests)
    event(f"a message counted again after the window: {expected.recounted > 0}")
    # When ingest takes the requests in time order
    store = run(requests)
    # Then each user's counts, traits and account are the model's
    for user in USERS:
        stored = store.users[user].value if user in store.users else None
        assert (dict(stored.event_counts) if stored else {}) == dict(expected.counts[user])
        assert (stored.trait_values() if stored else {}) == expected.traits[user]
        assert (stored.account_id if stored else None) == expected.accounts[user]


@settings(max_examples=100, deadline=None)
@given(histories(), st.randoms(use_true_random=False))
def test_the_order_within_a_request_and_how_it_is_split_change_nothing(
    requests: list[Request], rnd: random.Random
) -> None:
    # Given the same requests, each shuffled and cut in two (sent as two requests at the same time)
    reordered = []
    for request in requests:
        shuffled = list(request.messages)
        rnd.shuffle(shuffled)
        cut = rnd.randint(0, len(shuffled))
        reordered += [Request(request.at, part) for part in (shuffled[:cut], shuffled[cut:]) if part]
    # When ingest takes each version
    once, again = run(requests), run(reordered)
    # Then every user's state is the same, whatever was counted before the window ended
    assert {u: v.value for u, v in again.users.items()} == {u: v.value for u, v in once.users.items()}
