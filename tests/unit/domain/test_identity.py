"""The identity merge: a user's history split between an anonymous and a known profile merges into
what folding it all under one id gives, whatever the split; merging again changes nothing."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from nudge.domain.fold import add_to_sessions, fold
from nudge.domain.identity import merge_sessions, merge_states
from nudge.model.messages import Group, Identify, Message
from nudge.model.state import UserState
from tests.unit.domain.test_fold import NOW, PLAN, histories, track

ANON = "anon:device-1"


def without_merged(state: UserState) -> UserState:
    return state.model_copy(update={"merged": []})


@settings(max_examples=150, deadline=None)
@given(histories(), st.lists(st.booleans(), min_size=40, max_size=40))
def test_a_history_split_between_two_ids_merges_into_the_history_under_one(
    messages: list[Message], anonymous: list[bool]
) -> None:
    # Given any split of one person's messages between their device's anonymous id and their userId
    on_device = [m for m, anon in zip(messages, anonymous, strict=False) if anon]
    as_user = [m for m, anon in zip(messages, anonymous, strict=False) if not anon]
    # When each profile is folded on its own and the device's merges into the user's
    merged = merge_states(fold(None, "u1", as_user, PLAN, NOW), fold(None, ANON, on_device, PLAN, NOW), PLAN)
    # Then it is the state of folding everything under the userId, with the device's id listed
    assert without_merged(merged) == fold(None, "u1", messages, PLAN, NOW)
    assert merged.merged == [ANON]


@settings(max_examples=100, deadline=None)
@given(histories(), histories())
def test_merging_the_same_id_twice_changes_nothing(first: list[Message], second: list[Message]) -> None:
    user = fold(None, "u1", first, PLAN, NOW)
    device = fold(
        None, ANON, [m.model_copy(update={"messageId": f"d{m.messageId}"}) for m in second], PLAN, NOW
    )
    once = merge_states(user, device, PLAN)
    assert merge_states(once, device, PLAN) == once


@settings(max_examples=100, deadline=None)
@given(histories(), histories())
def test_merging_leaves_both_states_untouched(first: list[Message], second: list[Message]) -> None:
    user = fold(None, "u1", first, PLAN, NOW)
    device = fold(None, ANON, second, PLAN, NOW)
    user_before, device_before = user.model_copy(deep=True), device.model_copy(deep=True)
    merge_states(user, device, PLAN)
    assert (user, device) == (user_before, device_before)


@settings(max_examples=200, deadline=None)
@given(
    # On a 5-minute grid, so times exactly one gap apart (the boundary) come up often.
    st.lists(st.integers(min_value=0, max_value=60).map(lambda n: n * 300), max_size=30),
    st.lists(st.integers(min_value=0, max_value=60).map(lambda n: n * 300), max_size=30),
)
def test_session_intervals_merge_as_the_clusters_of_all_event_times(
    first: list[int], second: list[int]
) -> None:
    gap = 1800

    def sessions(times: list[int]) -> list[tuple[int, int]]:
        out: list[tuple[int, int]] = []
        for at in times:
            out = add_to_sessions(out, at, gap)
        return out

    assert merge_sessions(sessions(first), sessions(second), gap) == sessions(first + second)


def test_an_account_and_a_trait_follow_the_newest_stamp_across_profiles() -> None:
    at = NOW.replace(hour=9)
    device = fold(
        None,
        ANON,
        [Group(anonymousId="device-1", groupId="acme", timestamp=at, messageId="g1")],
        PLAN,
        NOW,
    )
    user = fold(
        None,
        "u1",
        [
            Identify.model_validate(
                {"userId": "u1", "traits": {"plan": "team"}, "timestamp": at, "messageId": "i1"}
            ),
            track("signed_up", at, "t1"),
        ],
        PLAN,
        NOW,
    )
    merged = merge_states(user, device, PLAN)
    assert merged.account_id == "acme"
    assert merged.trait_values()["plan"] == "team"
