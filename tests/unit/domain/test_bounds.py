"""Traits against their bounds, and what the fold keeps of what grows with input."""

from __future__ import annotations

import base64
import os
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from nudge.adapters.dynamo.codec import encode
from nudge.domain.bounds import TraitNames, trait_problems
from nudge.domain.fold import fold
from nudge.domain.identity import merge_states
from nudge.model.limits import (
    CONTEXT_VALUE_BYTES,
    DIMENSION_VALUES_KEPT,
    MAX_ITEM_BYTES,
    SEEN_KEPT,
    TRAIT_NAME_CHARS,
    TRAIT_VALUE_BYTES,
    TRAITS_PER_ACCOUNT,
    TRAITS_PER_USER,
    UNPLANNED_EVENTS_KEPT,
    VALUE_CHARS_KEPT,
)
from nudge.model.messages import Identify, Message, Track
from nudge.rulebook.plan import TrackingPlan, load_plan

PLAN: TrackingPlan = load_plan(Path("rules"))
NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def test_a_trait_name_or_value_over_its_bound_is_named_with_the_limit_and_the_fix() -> None:
    long_name = "n" * (TRAIT_NAME_CHARS + 1)
    problems = trait_problems(
        {
            "plan": "team",
            "bio": "x" * TRAIT_VALUE_BYTES,  # with its quotes, two bytes over
            long_name: 1,
            "address": {"city": "Paris"},
        }
    )
    assert [field for field, _ in problems] == ["traits.bio", "traits"]
    assert f"at most {TRAIT_VALUE_BYTES:,}" in problems[0][1]
    assert "own store" in problems[0][1]
    assert f"at most {TRAIT_NAME_CHARS}" in problems[1][1]
    # The error quotes enough of a hostile name to find it, never all of it.
    assert long_name not in problems[1][1]


def test_a_value_is_measured_as_the_utf8_json_the_state_stores() -> None:
    # 400 three-byte characters: 1,202 bytes stored, though 400 characters long.
    assert [f for f, _ in trait_problems({"motto": "é" * 300})] == []
    assert [f for f, _ in trait_problems({"motto": "€" * 400})] == ["traits.motto"]


def test_trait_names_are_admitted_until_the_cap_then_a_message_adding_more_is_refused() -> None:
    names = TraitNames([f"t{i}" for i in range(TRAITS_PER_USER - 2)], "user")
    assert names.admit(["t0", "new1"]) is None  # one known, one new: 99
    refusal = names.admit(["new2", "new3"])  # 101: refused, nothing counted
    assert refusal is not None
    assert f"at most {TRAITS_PER_USER}" in refusal
    assert "TRAITS_PER_USER" in refusal
    assert names.admit(["new2"]) is None  # 100: fits
    assert names.admit(["t5", "new1"]) is None  # known names always fit
    assert names.admit(["one_more"]) is not None


def test_an_account_has_its_own_cap() -> None:
    names = TraitNames([], "account")
    assert names.admit([f"a{i}" for i in range(TRAITS_PER_ACCOUNT)]) is None
    refusal = names.admit(["extra"])
    assert refusal is not None
    assert "TRAITS_PER_ACCOUNT" in refusal


def unplanned(name: str, minutes_ago: int, mid: str) -> Track:
    return Track(userId="u1", event=name, timestamp=NOW - timedelta(minutes=minutes_ago), messageId=mid)


def test_unplanned_event_names_are_bounded_and_the_most_recent_kept() -> None:
    # Given 3x the cap of made-up event names, each seen once, and the planned events
    messages: list[Message] = [
        unplanned(f"made_up_{i}", 10 * i + 5, f"m{i}") for i in range(3 * UNPLANNED_EVENTS_KEPT)
    ]
    messages += [unplanned(e, 2_000_000 // 60, f"p-{e}") for e in ("signed_up", "login")]
    state = fold(None, "u1", messages, PLAN, NOW)
    # Then the unplanned ones kept are exactly the most recently seen, and planned ones all stay
    kept = {name for name in state.events if not PLAN.is_planned(name)}
    assert kept == {f"made_up_{i}" for i in range(UNPLANNED_EVENTS_KEPT)}
    assert {"signed_up", "login"} <= set(state.events)


@settings(max_examples=25, deadline=None)
@given(st.randoms(use_true_random=False), st.integers(min_value=1, max_value=5))
def test_which_unplanned_events_are_kept_does_not_depend_on_arrival_order(
    rnd: random.Random, parts: int
) -> None:
    names = [f"e{i}" for i in range(UNPLANNED_EVENTS_KEPT + 40)]
    messages: list[Message] = [unplanned(n, rnd.randint(0, 10_000), f"m{i}") for i, n in enumerate(names)]
    shuffled = list(messages)
    rnd.shuffle(shuffled)
    state = None
    for part in range(parts):
        state = fold(state, "u1", shuffled[part::parts], PLAN, NOW)
    assert state is not None
    whole = fold(None, "u1", messages, PLAN, NOW)
    assert set(state.events) == set(whole.events)
    assert len(state.events) == UNPLANNED_EVENTS_KEPT


def test_a_merge_keeps_the_unplanned_events_the_fold_of_both_histories_keeps() -> None:
    device = [unplanned(f"d{i}", 3 * i + 1, f"d{i}") for i in range(UNPLANNED_EVENTS_KEPT)]
    person = [unplanned(f"p{i}", 3 * i + 2, f"p{i}") for i in range(UNPLANNED_EVENTS_KEPT)]
    merged = merge_states(fold(None, "u1", person, PLAN, NOW), fold(None, "anon:d", device, PLAN, NOW), PLAN)
    assert set(merged.events) == set(fold(None, "u1", [*person, *device], PLAN, NOW).events)


def test_a_features_days_of_use_are_kept_for_the_kept_weeks_only() -> None:
    # A year of daily project creation (a feature), then folded again 13 weeks later
    year = [
        Track(userId="u1", event="project_created", timestamp=NOW - timedelta(days=d), messageId=f"p{d}")
        for d in range(365)
    ]
    state = fold(None, "u1", year, PLAN, NOW)
    days = state.features["projects"].days
    assert len(days) == 11 * 7 + NOW.weekday() + 1  # the kept weeks: 11 whole ones and this one so far
    assert state.features["projects"].count == 365
    later = fold(state, "u1", [], PLAN, NOW + timedelta(weeks=13))
    assert later.features["projects"].days == []
    assert later.features["projects"].count == 365  # the lifetime figures stay


def noise(n: int) -> str:
    return base64.b64encode(os.urandom(n))[:n].decode()


def test_every_bound_at_its_worst_at_once_passes_the_item_bound_so_the_item_is_measured() -> None:
    # Each bound keeps its part of a user small; all of them at their worst at once do not fit in
    # MAX_ITEM_BYTES: that is why ingest measures the item it writes.
    user = "u" * 256
    at = NOW - timedelta(minutes=1)
    traits: list[Message] = [
        Identify.model_validate(
            {
                "userId": user,
                "traits": {noise(TRAIT_NAME_CHARS): noise(TRAIT_VALUE_BYTES - 2)},
                "timestamp": at,
                "messageId": noise(256),
            }
        )
        for _ in range(TRAITS_PER_USER)
    ]
    kept_days = 12 * 7
    unplanned_daily: list[Message] = [
        Track(
            userId=user,
            event=f"{noise(196)}{i:03d}",
            timestamp=NOW - timedelta(days=d, minutes=i),
            messageId=f"e{i}-{d}",
        )
        for i in range(UNPLANNED_EVENTS_KEPT)
        for d in range(kept_days)
    ]
    context = {key: noise(CONTEXT_VALUE_BYTES - 2) for key in ("timezone", "locale")}
    context |= {
        key: {"x": noise(CONTEXT_VALUE_BYTES - 10)} for key in ("app", "device", "os", "page", "campaign")
    }
    sessions: list[Message] = [
        Track(
            userId=user,
            event="project_created",
            timestamp=NOW - timedelta(minutes=31 * i),
            messageId=f"p{i}",
            context=context,
        )
        for i in range(kept_days * 24 * 60 // 31)
    ]
    # The shipped plan's dimensions (page and screen names), each at its cap, every value every day
    dimensions: list[Message] = [
        Track(
            userId=user,
            event=event,
            timestamp=NOW - timedelta(days=d, minutes=v),
            messageId=f"{event}{d}-{v}",
            properties={"name": f"{v:03d}{noise(VALUE_CHARS_KEPT - 3)}"},
        )
        for event in ("page_viewed", "screen_viewed")
        for v in range(DIMENSION_VALUES_KEPT)
        for d in range(kept_days)
    ]
    some = [*traits, *unplanned_daily, *sessions, *dimensions]
    dedupe: list[Message] = [
        Track(userId=user, event="login", timestamp=at, messageId=f"d{i}")
        for i in range(SEEN_KEPT - len(some))
    ]
    state = fold(None, user, [*some, *dedupe], PLAN, NOW)
    assert len(state.traits) == TRAITS_PER_USER
    assert len(state.events) == UNPLANNED_EVENTS_KEPT + 4
    # ~360 KB with the shipped plan; more with ten dimensions, or a day of over SEEN_KEPT messages
    # (today's digests are never dropped: the dedupe of the day is what a retry needs most).
    assert len(encode(state)) > MAX_ITEM_BYTES
