"""The fold: order independence, idempotence, sessions, milestones, traits, rollup deltas.

The properties here fold one user's messages (retries included) at one time; several users, and the
same messages again across the dedupe window, are tests/unit/services/test_ingest_properties.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nudge.adapters.dynamo.codec import encode
from nudge.domain.fold import FoldWindow, add_to_sessions, fold, rollup_delta
from nudge.model.limits import DIMENSION_VALUES_KEPT, VALUE_CHARS_KEPT
from nudge.model.messages import Group, Identify, Message, Track
from nudge.model.state import PropertyStats, ValueStats
from nudge.rulebook.plan import TrackingPlan, load_plan

PLAN: TrackingPlan = load_plan(Path("rules"))
NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
EVENTS = ["signed_up", "setup_completed", "project_created", "teammate_invited", "login", "report_exported"]


def track(event: str, at: datetime, mid: str, user: str = "u1") -> Track:
    return Track(userId=user, event=event, timestamp=at, messageId=mid)


@st.composite
def histories(draw: st.DrawFn, retries: bool = False) -> list[Message]:
    """One user's messages; with `retries`, some come again (the same message, same messageId).

    The identity tests split a history between two profiles, which a retry never is (it resolves
    to the profile its first copy went to, or to the one that has since absorbed it): they take
    histories without retries."""
    count = draw(st.integers(min_value=1, max_value=40))
    messages: list[Message] = []
    for i in range(count):
        at = NOW - timedelta(minutes=draw(st.integers(min_value=0, max_value=60 * 24 * 60)))
        kind = draw(st.sampled_from(["track", "track", "track", "identify", "group"]))
        mid = f"m{i}"
        if kind == "track":
            event = draw(st.sampled_from([*EVENTS, *PROPERTY_EVENTS]))
            message = track(event, at, mid)
            message.properties = draw(PROPERTY_EVENTS.get(event, st.just({})))
            messages.append(message)
        elif kind == "identify":
            keys = draw(st.lists(st.sampled_from(sorted(TRAITS)), min_size=1, max_size=3, unique=True))
            traits = {key: draw(st.sampled_from(TRAITS[key])) for key in keys}
            messages.append(
                Identify.model_validate({"userId": "u1", "traits": traits, "timestamp": at, "messageId": mid})
            )
        else:
            messages.append(
                Group(userId="u1", groupId=draw(st.sampled_from(["a1", "a2"])), timestamp=at, messageId=mid)
            )
        # Any message may carry context the user keeps (latest value wins, as for traits)
        messages[-1].context = draw(CONTEXTS)
        # ...and may come again, as a retry does: the same message, same messageId
        if retries and draw(st.booleans()):
            messages.append(draw(st.sampled_from(messages)).model_copy(deep=True))
    return messages


TRAITS = {
    "plan": ["free", "team", "business"],
    "timezone": ["Europe/Paris", "Asia/Tokyo"],
    "first_name": ["Ada", "Grace"],
}


# Events whose declared properties the state keeps (dimension, sum, last), with values of the right
# type or not (a flagged mismatch is not kept), sums that floats would add differently by order.
PROPERTY_EVENTS = {
    "premium_feature_attempted": st.fixed_dictionaries(
        {},
        optional={
            "feature": st.sampled_from(["sso", "audit_log", "custom_roles", 3]),
            "plan": st.just("free"),
        },
    ),
    "invoice_paid": st.fixed_dictionaries(
        {"revenue": st.sampled_from([0.1, 0.2, 0.3, 19.99, 45, 1e-7, 2.5e9])},
        optional={"plan": st.sampled_from(["team", "business"])},
    ),
    "page_viewed": st.fixed_dictionaries(
        {}, optional={"name": st.sampled_from(["Pricing", "Docs", "x" * 101])}
    ),
}

CONTEXTS = st.fixed_dictionaries(
    {},
    optional={
        "timezone": st.sampled_from(["Europe/Paris", "Asia/Tokyo", "America/New_York"]),
        "locale": st.sampled_from(["fr-FR", "ja-JP"]),
        "page": st.fixed_dictionaries({"path": st.sampled_from(["/", "/pricing", "/docs"])}),
        "library": st.just({"name": "analytics-python"}),
    },
)


@settings(max_examples=150, deadline=None)
@given(histories(retries=True), st.randoms(use_true_random=False))
def test_the_same_events_in_any_order_give_the_same_state(messages: list[Message], rnd) -> None:
    shuffled = list(messages)
    rnd.shuffle(shuffled)
    assert fold(None, "u1", messages, PLAN, NOW) == fold(None, "u1", shuffled, PLAN, NOW)


@settings(max_examples=150, deadline=None)
@given(histories(retries=True), st.integers(min_value=0, max_value=79))
def test_folding_in_two_requests_equals_folding_in_one(messages: list[Message], cut: int) -> None:
    first, second = messages[:cut], messages[cut:]
    stepwise = fold(fold(None, "u1", first, PLAN, NOW), "u1", second, PLAN, NOW)
    assert stepwise == fold(None, "u1", messages, PLAN, NOW)


@settings(max_examples=150, deadline=None)
@given(histories(retries=True))
def test_folding_the_same_events_twice_changes_nothing(messages: list[Message]) -> None:
    once = fold(None, "u1", messages, PLAN, NOW)
    assert fold(once, "u1", messages, PLAN, NOW) == once


@settings(max_examples=100, deadline=None)
@given(histories(retries=True), histories(retries=True))
def test_the_fold_never_changes_the_state_it_was_given(first: list[Message], second: list[Message]) -> None:
    state = fold(None, "u1", first, PLAN, NOW - timedelta(days=3))
    snapshot = state.model_copy(deep=True)
    later = [m.model_copy(update={"messageId": f"later-{m.messageId}"}) for m in second]
    fold(state, "u1", later, PLAN, NOW)
    assert state == snapshot


def test_a_duplicate_message_id_counts_once_within_the_dedupe_window() -> None:
    first = fold(None, "u1", [track("login", NOW - timedelta(hours=1), "dup")], PLAN, NOW)
    six_days_later = NOW + timedelta(days=6)
    again = fold(first, "u1", [track("login", NOW - timedelta(hours=1), "dup")], PLAN, six_days_later)
    assert again.event_counts == {"login": 1}


def test_the_dedupe_window_ends_after_its_days() -> None:
    first = fold(
        None, "u1", [track("login", NOW - timedelta(hours=1), "dup")], PLAN, NOW, FoldWindow(dedupe_days=7)
    )
    later = fold(
        first, "u1", [track("login", NOW - timedelta(hours=1), "dup")], PLAN, NOW + timedelta(days=9)
    )
    assert later.event_counts == {"login": 2}
    assert min(later.seen) >= (NOW + timedelta(days=9)).toordinal() - 8


def test_events_within_the_session_gap_form_one_session_and_a_bridge_merges_two() -> None:
    base = NOW - timedelta(days=1)
    a = track("project_created", base, "a")
    b = track("project_created", base + timedelta(minutes=50), "b")
    two = fold(None, "u1", [a, b], PLAN, NOW)
    assert len(two.sessions) == 2
    bridged = fold(two, "u1", [track("report_exported", base + timedelta(minutes=25), "c")], PLAN, NOW)
    assert len(bridged.sessions) == 1
    assert bridged.sessions[0] == (int(base.timestamp()), int((base + timedelta(minutes=50)).timestamp()))


def test_logins_and_page_views_are_not_meaningful_use() -> None:
    state = fold(
        None, "u1", [track("login", NOW - timedelta(hours=2), "l"), track("page_viewed", NOW, "p")], PLAN, NOW
    )
    assert state.last_meaningful is None
    assert state.sessions == []
    assert state.last_seen == NOW


def test_a_milestone_is_reached_at_the_last_of_its_first_occurrences() -> None:
    t = NOW - timedelta(days=10)
    msgs = [
        track("teammate_invited", t + timedelta(days=3), "3"),
        track("setup_completed", t, "1"),
        track("project_created", t + timedelta(days=1), "2"),
        track("project_created", t + timedelta(days=5), "4"),
    ]
    state = fold(None, "u1", msgs, PLAN, NOW)
    assert state.milestones["activated"] == t + timedelta(days=3)
    assert state.milestones["setup_done"] == t
    assert state.features["projects"].count == 2
    assert state.features["projects"].distinct_days == 2


def test_the_latest_trait_wins_whatever_the_arrival_order() -> None:
    old = Identify.model_validate(
        {"userId": "u1", "traits": {"plan": "free"}, "timestamp": NOW - timedelta(days=2), "messageId": "a"}
    )
    new = Identify.model_validate(
        {"userId": "u1", "traits": {"plan": "team"}, "timestamp": NOW - timedelta(days=1), "messageId": "b"}
    )
    state = fold(fold(None, "u1", [new], PLAN, NOW), "u1", [old], PLAN, NOW)
    assert state.trait_values() == {"plan": "team"}


def test_weekly_history_is_bounded_to_the_kept_weeks() -> None:
    msgs = [track("project_created", NOW - timedelta(weeks=w), f"w{w}") for w in range(30)]
    state = fold(None, "u1", msgs, PLAN, NOW, FoldWindow(weeks_kept=4))
    assert len(state.weeks) == 4
    assert state.events["project_created"].count == 30


def test_rollup_delta_counts_a_user_once_per_week_and_feature() -> None:
    t = NOW - timedelta(hours=5)
    first = fold(
        None,
        "u1",
        [Group(userId="u1", groupId="a1", timestamp=t, messageId="g"), track("project_created", t, "1")],
        PLAN,
        NOW,
    )
    delta = rollup_delta(None, first)
    assert delta is not None
    assert delta.account_id == "a1"
    assert sum(delta.week_users.values()) == 1
    assert delta.feature_adopters == {"projects": 1}
    later = fold(first, "u1", [track("project_created", t + timedelta(minutes=5), "2")], PLAN, NOW)
    assert rollup_delta(first, later) is None  # same session, same week, feature already adopted


def test_a_user_without_an_account_adds_nothing_to_rollups() -> None:
    state = fold(None, "u1", [track("project_created", NOW, "1")], PLAN, NOW)
    assert rollup_delta(None, state) is None


@pytest.mark.parametrize(
    ("existing", "at", "expected"),
    [
        ([], 100, [(100, 100)]),
        ([(0, 10)], 30, [(0, 30)]),
        ([(0, 10)], 41, [(0, 10), (41, 41)]),
        ([(0, 10), (50, 60)], 30, [(0, 60)]),
        ([(0, 10), (100, 110)], 50, [(0, 10), (50, 50), (100, 110)]),
    ],
)
def test_add_to_sessions(existing: list[tuple[int, int]], at: int, expected: list[tuple[int, int]]) -> None:
    assert add_to_sessions(existing, at, 30) == expected


def _scan_every_session(sessions: list[tuple[int, int]], at: int, gap: int) -> list[tuple[int, int]]:
    """The definition, as the fold once computed it: every session within `gap` of `at` joins it."""
    start, end, kept = at, at, []
    for s, e in sessions:
        if s - gap <= at <= e + gap:
            start, end = min(start, s), max(end, e)
        else:
            kept.append((s, e))
    return sorted([*kept, (start, end)])


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.integers(min_value=0, max_value=2_000), max_size=30),
    st.integers(min_value=-100, max_value=2_100),
    st.integers(min_value=0, max_value=120),
)
def test_sessions_found_by_bisection_are_the_ones_a_scan_finds(times: list[int], at: int, gap: int) -> None:
    # Sessions as the fold builds them (disjoint, sorted), from any event times.
    sessions: list[tuple[int, int]] = []
    for t in times:
        sessions = _scan_every_session(sessions, t, gap)
    assert add_to_sessions(sessions, at, gap) == _scan_every_session(sessions, at, gap)


def test_a_runaway_sender_loses_the_oldest_days_of_dedupe_not_the_write() -> None:
    window = FoldWindow(max_seen=5)
    day1 = fold(None, "u1", [track("login", NOW, f"a{i}") for i in range(4)], PLAN, NOW, window)
    day2 = fold(
        day1, "u1", [track("login", NOW, f"b{i}") for i in range(3)], PLAN, NOW + timedelta(days=1), window
    )
    assert day2.event_counts == {"login": 7}
    assert list(day2.seen) == [(NOW + timedelta(days=1)).toordinal()]


def test_daily_counts_answer_how_often_in_the_last_days() -> None:
    msgs = [track("report_exported", NOW - timedelta(days=d), f"r{d}") for d in (0, 1, 1, 3, 10, 120)]
    msgs[2] = track("report_exported", NOW - timedelta(days=1, hours=1), "r1b")
    state = fold(None, "u1", msgs, PLAN, NOW, FoldWindow(weeks_kept=4))
    stats = state.events["report_exported"]
    assert stats.count == 6
    assert stats.count_since((NOW - timedelta(days=6)).toordinal()) == 4
    assert min(stats.daily) >= (NOW - timedelta(weeks=4)).toordinal()


def with_context(message: Message, **context: object) -> Message:
    return message.model_copy(update={"context": context})


def test_the_latest_context_is_kept_whatever_the_arrival_order() -> None:
    # Given two tracks an hour apart from different places, and a later one with no context
    paris = with_context(track("login", NOW - timedelta(hours=2), "m1"), timezone="Europe/Paris")
    tokyo = with_context(
        track("login", NOW - timedelta(hours=1), "m2"), timezone="Asia/Tokyo", page={"path": "/pricing"}
    )
    bare = track("login", NOW, "m3")
    # When they arrive in either order
    one = fold(None, "u1", [paris, tokyo, bare], PLAN, NOW)
    other = fold(None, "u1", [bare, tokyo, paris], PLAN, NOW)
    # Then the user keeps the latest of each, and a message without context changes none of it
    assert one == other
    assert one.context_values() == {"timezone": "Asia/Tokyo", "page": {"path": "/pricing"}}


def test_only_the_known_context_of_the_right_shape_and_size_is_kept() -> None:
    message = with_context(
        track("login", NOW, "m1"),
        locale="fr-FR",
        timezone=3,  # not text
        device="phone",  # not an object
        app={"name": "Acme", "build": "1" * 3000},  # over the size kept
        os={"name": "iOS"},
        ip="203.0.113.9",  # not kept at all
        library={"name": "analytics.js"},
    )
    state = fold(None, "u1", [message], PLAN, NOW)
    assert state.context_values() == {"locale": "fr-FR", "os": {"name": "iOS"}}


def test_the_context_timezone_and_locale_stand_in_for_unset_traits_only() -> None:
    # Given a user whose app sends a timezone and locale in context
    seen = with_context(track("login", NOW - timedelta(hours=1), "m1"), timezone="Asia/Tokyo", locale="ja-JP")
    state = fold(None, "u1", [seen], PLAN, NOW)
    # Then they read as traits while the user has set none
    assert state.trait_values() == {"timezone": "Asia/Tokyo", "locale": "ja-JP"}
    # And a trait the user sets wins over the context, whatever came later
    said = Identify.model_validate(
        {
            "userId": "u1",
            "traits": {"timezone": "Europe/Paris"},
            "timestamp": NOW - timedelta(hours=2),
            "messageId": "m2",
        }
    )
    state = fold(state, "u1", [said], PLAN, NOW)
    assert state.trait_values() == {"timezone": "Europe/Paris", "locale": "ja-JP"}


# --- event properties ---------------------------------------------------------------------------


def with_props(event: str, at: datetime, mid: str, **properties: object) -> Track:
    return Track(userId="u1", event=event, timestamp=at, messageId=mid, properties=properties)


def test_a_dimension_counts_each_value_with_its_first_last_and_days() -> None:
    day = timedelta(days=1)
    state = fold(
        None,
        "u1",
        [
            with_props("premium_feature_attempted", NOW - 3 * day, "a", feature="sso"),
            with_props("premium_feature_attempted", NOW - day, "b", feature="sso"),
            with_props("premium_feature_attempted", NOW - 2 * day, "c", feature="audit_log"),
        ],
        PLAN,
        NOW,
    )
    props = state.events["premium_feature_attempted"].props
    assert props is not None
    sso = props.values["feature"]["sso"]
    assert (sso.count, sso.first, sso.last) == (2, NOW - 3 * day, NOW - day)
    assert sum(sso.daily.values()) == 2
    assert props.values["feature"]["audit_log"].count == 1
    assert props.last["feature"].v == "sso"  # the newest, whatever arrived last
    assert props.newest_value("feature") == "sso"
    assert props.newest_value("feature", frozenset({"audit_log"})) == "audit_log"


def test_sums_add_up_exactly_in_any_order() -> None:
    amounts = [0.1, 0.2, 0.3, 19.99]
    messages = [
        with_props("invoice_paid", NOW - timedelta(hours=i), f"i{i}", revenue=v)
        for i, v in enumerate(amounts)
    ]
    forward = fold(None, "u1", messages, PLAN, NOW).events["invoice_paid"].props
    backward = fold(None, "u1", messages[::-1], PLAN, NOW).events["invoice_paid"].props
    assert forward == backward
    assert forward is not None
    assert forward.sums["revenue"].total == 20.59
    assert forward.sums["revenue"].total_since(NOW.toordinal()) == 20.59


def test_events_without_kept_properties_keep_no_property_state() -> None:
    state = fold(None, "u1", [with_props("login", NOW, "l", method="sso")], PLAN, NOW)
    assert state.events["login"].props is None


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=60 * 24 * 80), min_size=1, max_size=300), st.randoms())
def test_a_dimension_never_keeps_more_than_its_cap_and_keeps_the_most_recent_values(
    minutes: list[int], rnd
) -> None:
    # Each page view has its own name: far more distinct values than the cap.
    messages = [
        with_props("page_viewed", NOW - timedelta(minutes=m), f"p{i}", name=f"page {i}")
        for i, m in enumerate(minutes)
    ]
    shuffled = list(messages)
    rnd.shuffle(shuffled)
    half = len(shuffled) // 2
    stepwise = fold(fold(None, "u1", shuffled[:half], PLAN, NOW), "u1", shuffled[half:], PLAN, NOW)
    kept = stepwise.events["page_viewed"].props.values["name"]  # type: ignore[union-attr]
    assert len(kept) == min(len(messages), DIMENSION_VALUES_KEPT)
    newest = sorted(((NOW - timedelta(minutes=m), f"page {i}") for i, m in enumerate(minutes)), reverse=True)
    assert set(kept) == {name for _, name in newest[:DIMENSION_VALUES_KEPT]}
    assert set(kept) == set(fold(None, "u1", messages, PLAN, NOW).events["page_viewed"].props.values["name"])  # type: ignore[union-attr]


def test_a_full_dimension_keeps_the_user_item_far_below_dynamodbs_limit() -> None:
    # Every dimension the shipped plan declares, each at its cap of long values, each value seen
    # on every one of the kept days, plus the most dedupe a user can hold: still under 400 KB.
    window = FoldWindow()
    messages: list[Message] = []
    for days_ago in range(window.weeks_kept * 7):
        at = NOW - timedelta(days=days_ago)
        for value in range(DIMENSION_VALUES_KEPT):
            for event in ("page_viewed", "screen_viewed"):
                name = f"{value:03d}" + "n" * (VALUE_CHARS_KEPT - 3)
                messages.append(with_props(event, at, f"{event}{days_ago}-{value}", name=name))
    state = fold(None, "u1", messages, PLAN, NOW, FoldWindow(max_seen=window.max_seen))
    for event in ("page_viewed", "screen_viewed"):
        assert len(state.events[event].props.values["name"]) == DIMENSION_VALUES_KEPT  # type: ignore[union-attr]
    assert len(encode(state)) < 400_000


def test_merging_property_stats_sums_counts_keeps_the_newest_and_reapplies_the_cap() -> None:
    early, late = NOW - timedelta(days=2), NOW - timedelta(hours=1)
    a = fold(
        None,
        "u1",
        [
            with_props("premium_feature_attempted", early, "a", feature="sso"),
            with_props("invoice_paid", early, "i1", revenue=0.1),
        ],
        PLAN,
        NOW,
    )
    b = fold(None, "u1", [with_props("premium_feature_attempted", late, "b", feature="sso"),
                          with_props("premium_feature_attempted", early, "c", feature="audit_log"),
                          with_props("invoice_paid", late, "i2", revenue=0.2)], PLAN, NOW)  # fmt: skip
    pa, pb = a.events["premium_feature_attempted"].props, b.events["premium_feature_attempted"].props
    assert pa is not None
    assert pb is not None
    merged = pa.merged(pb)
    assert merged == pb.merged(pa)
    sso = merged.values["feature"]["sso"]
    assert (sso.count, sso.first, sso.last) == (2, early, late)
    assert merged.last["feature"].v == "sso"
    assert merged.last["feature"].at == late
    # Merging equals folding both histories as one (what the identity merge relies on).
    both = fold(None, "u1", [with_props("premium_feature_attempted", early, "a", feature="sso"),
                             with_props("premium_feature_attempted", late, "b", feature="sso"),
                             with_props("premium_feature_attempted", early, "c", feature="audit_log")],
                PLAN, NOW).events["premium_feature_attempted"].props  # fmt: skip
    assert merged == both
    sums = a.events["invoice_paid"].props.merged(b.events["invoice_paid"].props)  # type: ignore[union-attr,arg-type]
    assert sums.sums["revenue"].total == 0.3
    many = {f"v{i}": ValueStats(count=1, first=early + timedelta(minutes=i), last=early + timedelta(minutes=i), daily={})
            for i in range(DIMENSION_VALUES_KEPT + 5)}  # fmt: skip
    capped = PropertyStats(values={"name": dict(list(many.items())[:30])}).merged(
        PropertyStats(values={"name": dict(list(many.items())[30:])})
    )
    assert set(capped.values["name"]) == {f"v{i}" for i in range(5, DIMENSION_VALUES_KEPT + 5)}
