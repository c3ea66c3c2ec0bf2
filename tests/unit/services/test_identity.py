"""Identity resolution through the ingest use case (in-memory store): a person is one profile
however their anonymous events, identifies and aliases arrive."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nudge.adapters.memory import MemoryUsageStore
from nudge.domain.fold import fold
from nudge.model.errors import StoreUnavailable
from nudge.model.messages import Alias, Group, Identify, Message, Track
from nudge.model.state import RollupDelta, UserState
from nudge.services.client_keys import Sensitive, screen_messages
from nudge.services.identity import CLIENT_ALIAS, CYCLE, MAX_ABSORBED
from nudge.services.ingest import IngestLimits, check, ingest
from tests.unit.domain.test_fold import NOW, PLAN, histories

ONBOARDING = ["setup_completed", "project_created", "teammate_invited"]


def anon(event: str, device: str, mid: str, hours_ago: float = 2) -> Track:
    return Track(anonymousId=device, event=event, timestamp=NOW - timedelta(hours=hours_ago), messageId=mid)


def identify(user: str, device: str, mid: str = "identify", hours_ago: float = 1) -> Identify:
    return Identify.model_validate(
        {
            "userId": user,
            "anonymousId": device,
            "traits": {"email": "ada@example.com"},
            "timestamp": NOW - timedelta(hours=hours_ago),
            "messageId": mid,
        }
    )


def alias(previous: str, user: str, mid: str) -> Alias:
    return Alias(previousId=previous, userId=user, timestamp=NOW - timedelta(minutes=30), messageId=mid)


def send(store: MemoryUsageStore, *messages: Message):
    return ingest(list(enumerate(messages)), PLAN, store, NOW, sleep=lambda _: None)


def person(store: MemoryUsageStore, user_id: str) -> UserState:
    return store.users[user_id].value


def test_anonymous_onboarding_sent_before_signup_counts_toward_activated_after_identify() -> None:
    # Given a visitor's onboarding steps, sent with their device's anonymousId only
    store = MemoryUsageStore()
    send(store, *(anon(e, "dev-1", f"s{i}") for i, e in enumerate(ONBOARDING)))
    assert "activated" in person(store, "anon:dev-1").milestones
    # When they sign up and the app identifies them with both ids
    send(store, identify("u-ada", "dev-1"))
    # Then the user has the steps and the milestone; the device's record points at the user
    ada = person(store, "u-ada")
    assert "activated" in ada.milestones
    assert ada.event_counts == dict.fromkeys(ONBOARDING, 1)
    assert ada.merged == ["anon:dev-1"]
    assert person(store, "anon:dev-1").merged_into == "u-ada"


def test_anonymous_steps_sent_after_the_identify_land_on_the_user() -> None:
    store = MemoryUsageStore()
    send(store, identify("u-ada", "dev-1"))
    send(store, anon("setup_completed", "dev-1", "s1"), anon("project_created", "dev-1", "s2"))
    send(store, anon("teammate_invited", "dev-1", "s3"))
    assert "activated" in person(store, "u-ada").milestones
    assert person(store, "anon:dev-1").merged_into == "u-ada"


def test_a_track_carrying_both_ids_merges_like_an_identify() -> None:
    store = MemoryUsageStore()
    send(store, anon("setup_completed", "dev-1", "s1"))
    both = Track(userId="u-ada", anonymousId="dev-1", event="project_created", timestamp=NOW, messageId="s2")
    send(store, both)
    assert person(store, "u-ada").event_counts == {"setup_completed": 1, "project_created": 1}


def test_a_merge_sent_again_changes_nothing() -> None:
    store = MemoryUsageStore()
    send(store, anon("setup_completed", "dev-1", "s1"), identify("u-ada", "dev-1"))
    before, writes = store.users["u-ada"], store.writes
    send(store, anon("setup_completed", "dev-1", "s1"), identify("u-ada", "dev-1"))
    assert store.users["u-ada"] == before
    assert store.writes == writes


def test_a_device_merged_into_one_user_stays_with_them_and_the_other_is_warned() -> None:
    store = MemoryUsageStore()
    send(store, anon("setup_completed", "shared", "s1"), identify("u-ada", "shared"))
    result = send(store, identify("u-bob", "shared", "identify-bob"))
    assert [(w.index, w.field) for w in result.warnings] == [(0, "anonymousId")]
    assert result.accepted == 1
    assert not result.errors
    assert person(store, "anon:shared").merged_into == "u-ada"
    assert person(store, "u-bob").event_counts == {}
    send(store, anon("project_created", "shared", "s2"))
    assert person(store, "u-ada").event_counts == {"setup_completed": 1, "project_created": 1}


def test_an_alias_merges_a_known_user_and_their_later_events_land_on_the_new_id() -> None:
    store = MemoryUsageStore()
    send(store, Track(userId="old-id", event="setup_completed", timestamp=NOW, messageId="s1"))
    send(store, alias("old-id", "new-id", "al1"))
    send(store, Track(userId="old-id", event="project_created", timestamp=NOW, messageId="s2"))
    assert person(store, "new-id").event_counts == {"setup_completed": 1, "project_created": 1}
    assert person(store, "old-id").merged_into == "new-id"
    assert store.merged_ids("new-id") == ["anon:old-id", "old-id"]


def test_an_alias_of_an_anonymous_id_merges_its_history() -> None:
    store = MemoryUsageStore()
    send(store, anon("setup_completed", "dev-1", "s1"))
    send(store, alias("dev-1", "u-ada", "al1"))
    assert person(store, "u-ada").event_counts == {"setup_completed": 1}


def test_an_alias_back_along_a_merge_is_refused_as_a_cycle() -> None:
    store = MemoryUsageStore()
    send(store, alias("b", "a", "al1"))  # b now points at a
    result = send(store, alias("a", "b", "al2"))
    assert [(e.index, e.field, e.message) for e in result.errors] == [(0, "previousId", CYCLE)]
    assert result.accepted == 0
    assert person(store, "b").merged_into == "a"
    assert person(store, "a").merged_into is None


def test_a_cycle_within_one_batch_refuses_the_alias_that_closes_it() -> None:
    store = MemoryUsageStore()
    result = send(store, alias("b", "a", "al1"), alias("a", "b", "al2"))
    assert [(e.index, e.field) for e in result.errors] == [(1, "previousId")]
    assert result.accepted == 1
    assert person(store, "b").merged_into == "a"


def test_merges_follow_a_chain_of_pointers() -> None:
    store = MemoryUsageStore()
    send(store, anon("setup_completed", "dev-1", "s1"), identify("first", "dev-1"))
    send(store, alias("first", "second", "al1"))
    send(store, anon("project_created", "dev-1", "s2"))  # dev-1 -> first -> second
    assert person(store, "second").event_counts == {"setup_completed": 1, "project_created": 1}
    assert sorted(store.merged_ids("second")) == ["anon:dev-1", "anon:first", "first"]


def test_an_anonymous_group_adds_nothing_to_the_rollup_until_the_person_is_known() -> None:
    store = MemoryUsageStore()
    group = Group(anonymousId="dev-1", groupId="acme", timestamp=NOW - timedelta(hours=3), messageId="g1")
    send(store, group, anon("setup_completed", "dev-1", "s1"))
    assert store.load_rollup("acme").weeks == {}
    send(store, identify("u-ada", "dev-1"))
    weeks = store.load_rollup("acme").weeks
    assert sum(w.active_users for w in weeks.values()) == 1
    assert person(store, "u-ada").account_id == "acme"


def test_an_alias_of_a_user_in_the_same_account_counts_the_person_once() -> None:
    store = MemoryUsageStore()
    for user in ("old-id", "new-id"):
        send(
            store,
            Group(userId=user, groupId="acme", timestamp=NOW - timedelta(hours=3), messageId=f"g-{user}"),
            Track(
                userId=user,
                event="setup_completed",
                timestamp=NOW - timedelta(hours=2),
                messageId=f"s-{user}",
            ),
        )
    assert sum(w.active_users for w in store.load_rollup("acme").weeks.values()) == 2
    send(store, alias("old-id", "new-id", "al1"))
    rollup = store.load_rollup("acme")
    assert sum(w.active_users for w in rollup.weeks.values()) == 1
    assert rollup.feature_adopters == {f: 1 for f in person(store, "new-id").features}


@st.composite
def arrivals(draw: st.DrawFn) -> tuple[list[Message], list[list[Message]]]:
    """One person's history, each message sent as the device (anonymousId only), as the user, or
    with both; an identify linking them; then all of it sent in any order, some twice, in batches."""
    # What ingest accepts of it (a property of the wrong type for the plan is refused with 400)
    history = [m for m in draw(histories()) if not check(0, m, PLAN, IngestLimits(), NOW)]
    sent: list[Message] = []
    for message in history:
        shape = draw(st.sampled_from(["device", "user", "both"]))
        if shape == "device":
            message = message.model_copy(update={"userId": None, "anonymousId": "dev-1"})
        elif shape == "both":
            message = message.model_copy(update={"anonymousId": "dev-1"})
        sent.append(message)
    link = identify("u1", "dev-1", hours_ago=draw(st.integers(min_value=0, max_value=24 * 50)))
    everything = [*sent, link]
    order = draw(st.permutations(everything))
    again = draw(st.lists(st.sampled_from(everything), max_size=5))
    stream = [*order, *again]
    cuts = sorted(draw(st.lists(st.integers(min_value=0, max_value=len(stream)), max_size=4)))
    batches = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
    return [*history, link], [b for b in batches if b]


@settings(max_examples=150, deadline=None)
@given(arrivals())
def test_however_the_anonymous_events_and_the_identify_arrive_the_person_is_one_profile(
    case: tuple[list[Message], list[list[Message]]],
) -> None:
    # Given one person's messages split between their device and their userId, linked by an
    # identify, arriving in any order, some twice, in any batches
    history, batches = case
    store = MemoryUsageStore()
    # When each batch is ingested
    for batch in batches:
        send(store, *batch)
    # Then the user's state equals folding the whole history under the userId at once (but for
    # the ids it lists as merged), and the device's record only points at the user
    expected = fold(None, "u1", [m.model_copy(update={"userId": "u1"}) for m in history], PLAN, NOW)
    assert person(store, "u1").model_copy(update={"merged": []}) == expected
    assert person(store, "u1").merged == ["anon:dev-1"]
    assert person(store, "anon:dev-1") == UserState(user_id="anon:dev-1", merged_into="u1")


class AnonymousEventSneaksIn(MemoryUsageStore):
    """Another request folds a device event between our read and our merge write."""

    def __init__(self) -> None:
        super().__init__()
        self.raced = False

    def save_user(self, state, version, rollup, now, correlation_id="", absorbed=()) -> None:
        if absorbed and not self.raced:
            self.raced = True
            send(self, anon("teammate_invited", "dev-1", "sneaked"))
        super().save_user(state, version, rollup, now, correlation_id, absorbed)


def test_a_device_event_written_during_a_merge_makes_the_merge_retry_and_is_kept() -> None:
    store = AnonymousEventSneaksIn()
    send(store, anon("setup_completed", "dev-1", "s1"), anon("project_created", "dev-1", "s2"))
    result = send(store, identify("u-ada", "dev-1"))
    assert result.conflicts == 1
    assert "activated" in person(store, "u-ada").milestones
    assert person(store, "anon:dev-1").merged_into == "u-ada"


def send_with_client_key(store: MemoryUsageStore, *messages: Message):
    indexed = list(enumerate(messages))
    nothing = Sensitive(frozenset(), frozenset())
    assert screen_messages(indexed, client=True, sensitive=nothing, secrets=lambda: ()) == []
    return ingest(indexed, PLAN, store, NOW, sleep=lambda _: None)


@pytest.mark.parametrize(("previous", "user"), [("victim", "attacker"), ("attacker", "victim")])
def test_a_client_alias_links_an_anonymous_profile_only_never_a_known_user(previous: str, user: str) -> None:
    # Given two known users, and a device of the sender's
    store = MemoryUsageStore()
    send(store, identify("victim", "dev-v", "iv"), identify("attacker", "dev-a", "ia"))
    send(store, anon("setup_completed", previous, "s1"))  # the anonymous profile named previousId
    victim = store.users["victim"]
    # When an alias between them comes with a (public) client key
    result = send_with_client_key(store, alias(previous, user, "al1"))
    # Then no known user merges: only the anonymous profile of previousId links, and the answer says so
    assert [(w.index, w.field, w.message) for w in result.warnings] == [(0, "previousId", CLIENT_ALIAS)]
    assert (result.accepted, result.errors) == (1, [])
    assert person(store, previous).merged_into is None
    assert person(store, "anon:" + previous).merged_into == user
    assert previous not in person(store, user).merged
    if user == "attacker":
        assert store.users["victim"] == victim  # untouched
    # While the same alias from a server merges the known user
    send(store, alias(previous, user, "al2"))
    assert person(store, previous).merged_into == user


def test_ids_merged_earlier_in_the_request_count_toward_the_limit_of_the_user_absorbing_them() -> None:
    # Given a batch linking 25 devices to u1, 24 to u2, then aliasing u1 to u2
    store = MemoryUsageStore()
    batch: list[Message] = [identify("u1", f"dev-1-{i}", f"i1-{i}") for i in range(25)]
    batch += [identify("u2", f"dev-2-{i}", f"i2-{i}") for i in range(24)]
    batch.append(alias("u1", "u2", "al1"))
    # When it is ingested (u2 taking u1 would take u1's 25 too: a transaction of over 100 items)
    result = send(store, *batch)
    # Then no write exceeds the limit: u1 is not linked this time, and the answer says so
    assert [(w.index, w.field) for w in result.warnings] == [(49, "previousId")]
    assert f"more than {MAX_ABSORBED}" in result.warnings[0].message
    assert (result.accepted, result.errors) == (50, [])
    assert len(person(store, "u1").merged) == 25
    assert len(person(store, "u2").merged) == 25  # its 24 devices and anon:u1
    assert person(store, "u1").merged_into is None
    # And the alias sent again later merges u1 (whose devices already point at it)
    assert send(store, alias("u1", "u2", "al1")).warnings == []
    assert person(store, "u1").merged_into == "u2"


def test_the_memory_store_refuses_a_write_dynamodb_could_not_make_in_one_transaction() -> None:
    # A person, a pointer and a back-reference per absorbed id: at most 100 items (the rollup
    # delta rides on the person's item, applied off the write: it adds none)
    store = MemoryUsageStore()
    rollup = RollupDelta(account_id="acme", week_users={"2025-W01": 1}, feature_adopters={"export": 1})
    with pytest.raises(StoreUnavailable, match="101 items"):
        store.save_user(UserState(user_id="u"), 0, None, NOW, absorbed=[(f"anon:{i}", 0) for i in range(50)])
    with pytest.raises(StoreUnavailable, match="101 items"):
        store.save_user(
            UserState(user_id="u"), 0, rollup, NOW, absorbed=[(f"anon:{i}", 0) for i in range(50)]
        )
    assert store.users == {}
    store.save_user(UserState(user_id="u"), 0, rollup, NOW, absorbed=[(f"anon:{i}", 0) for i in range(49)])
    assert len(store.merged_ids("u")) == 49
