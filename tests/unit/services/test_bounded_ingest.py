"""Bounded state through the ingest use case (in-memory store): a message that would pass a bound
gets its own error, and never holds up the person's other messages or the other people."""

from __future__ import annotations

import base64
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from nudge.adapters.dynamo.codec import encode
from nudge.adapters.memory import MemoryUsageStore
from nudge.domain.fold import fold
from nudge.model.limits import TRAIT_VALUE_BYTES, TRAITS_PER_ACCOUNT, TRAITS_PER_USER, UNPLANNED_EVENTS_KEPT
from nudge.model.messages import Alias, Group, Identify, Message, Track
from nudge.model.state import RollupDelta, UserState
from nudge.model.versioned import Versioned
from nudge.rulebook.plan import load_plan
from nudge.services import bounded
from nudge.services.ingest import ingest

PLAN = load_plan(Path("rules"))
NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
AT = NOW - timedelta(hours=1)


def t(event: str, user: str, mid: str) -> Track:
    return Track(userId=user, event=event, timestamp=AT, messageId=mid)


def ident(
    user: str, mid: str, traits: dict[str, Any], anonymous: str | None = None, at: datetime = AT
) -> Identify:
    body = {"userId": user, "traits": traits, "timestamp": at, "messageId": mid}
    if anonymous:
        body["anonymousId"] = anonymous
    return Identify.model_validate(body)


def group(user: str, account: str, mid: str, traits: dict[str, Any], at: datetime = AT) -> Group:
    return Group.model_validate(
        {"userId": user, "groupId": account, "traits": traits, "timestamp": at, "messageId": mid}
    )


def noise(n: int) -> str:
    """Text that does not compress: what makes an item large whatever zlib does."""
    return base64.b64encode(os.urandom(n))[:n].decode()


def test_traits_past_the_users_bound_are_refused_per_message_and_the_rest_is_written() -> None:
    # Given a user who already keeps all but 5 of the traits they may keep
    store = MemoryUsageStore()
    ingest([(0, ident("u1", "seed", {f"t{i}": i for i in range(TRAITS_PER_USER - 5)}))], PLAN, store, NOW)
    # When one request sets 3 new traits, then 3 more (too many), then values of known ones, and
    # another user's event comes after
    batch: list[Message] = [
        ident("u1", "a", {"n1": 1, "n2": 2, "n3": 3}),
        ident("u1", "b", {"n4": 4, "n5": 5, "n6": 6}),
        ident("u1", "c", {"t0": "changed", "n1": "again"}, at=NOW),
        t("login", "u1", "d"),
        t("login", "u2", "e"),
    ]
    result = ingest(list(enumerate(batch)), PLAN, store, NOW)
    # Then only the message that would pass the bound is refused, naming it and the fix
    assert [(p.index, p.field) for p in result.errors] == [(1, "traits")]
    assert f"at most {TRAITS_PER_USER}" in result.errors[0].message
    assert result.accepted == 4
    u1 = store.users["u1"].value
    assert len(u1.traits) == TRAITS_PER_USER - 2
    assert u1.trait_values()["t0"] == "changed"
    assert "n4" not in u1.traits
    assert u1.event_counts == {"login": 1}
    assert store.users["u2"].value.event_counts == {"login": 1}


def test_a_refused_identify_is_not_remembered_so_a_corrected_resend_lands() -> None:
    store = MemoryUsageStore()
    too_many = {f"t{i}": i for i in range(TRAITS_PER_USER + 1)}
    first = ingest([(0, ident("u1", "same-id", too_many))], PLAN, store, NOW)
    assert [p.field for p in first.errors] == ["traits"]
    assert "u1" not in store.users
    fixed = {f"t{i}": i for i in range(TRAITS_PER_USER)}
    again = ingest([(0, ident("u1", "same-id", fixed))], PLAN, store, NOW)
    assert (again.accepted, again.errors) == (1, [])
    assert len(store.users["u1"].value.traits) == TRAITS_PER_USER


def test_a_trait_too_large_refuses_its_message_only() -> None:
    store = MemoryUsageStore()
    batch: list[Message] = [
        ident("u1", "a", {"bio": "x" * (2 * TRAIT_VALUE_BYTES)}),
        ident("u1", "b", {"plan": "team"}),
    ]
    result = ingest(list(enumerate(batch)), PLAN, store, NOW)
    assert [(p.index, p.field) for p in result.errors] == [(0, "traits.bio")]
    assert store.users["u1"].value.trait_values() == {"plan": "team"}


def test_a_group_past_its_accounts_trait_bound_is_refused_whole_user_side_included() -> None:
    # Given an account that keeps all the traits it may
    store = MemoryUsageStore()
    full = {f"a{i}": i for i in range(TRAITS_PER_ACCOUNT)}
    ingest([(0, group("u1", "acme", "seed", full))], PLAN, store, NOW)
    # When another user joins it with a new trait, and a third joins with known ones
    batch: list[Message] = [
        group("u2", "acme", "g2", {"new": 1}),
        group("u3", "acme", "g3", {"a0": "x"}, at=NOW),
    ]
    result = ingest(list(enumerate(batch)), PLAN, store, NOW)
    # Then the first is refused (it joins nobody to the account), the second lands
    assert [(p.index, p.field) for p in result.errors] == [(0, "traits")]
    assert "TRAITS_PER_ACCOUNT" in result.errors[0].message
    assert "u2" not in store.users
    assert store.users["u3"].value.account_id == "acme"
    assert store.accounts["acme"].value.trait_values()["a0"] == "x"
    assert len(store.accounts["acme"].value.traits) == TRAITS_PER_ACCOUNT


def test_a_flood_of_unplanned_event_names_is_accepted_and_kept_bounded() -> None:
    store = MemoryUsageStore()
    names = [f"made_up_{i}" for i in range(5 * UNPLANNED_EVENTS_KEPT)]
    result = ingest(list(enumerate(t(n, "u1", n) for n in names)), PLAN, store, NOW)
    assert result.accepted == len(names)
    assert len(store.users["u1"].value.events) == UNPLANNED_EVENTS_KEPT


# ------------------------------------------------------------------------- the item's bound


def test_the_messages_that_push_a_user_past_the_item_bound_are_refused_and_the_rest_written() -> None:
    # Given a store whose bound leaves a user room for about 17 traits of 1 KB that hardly compress
    store = MemoryUsageStore(max_item_bytes=14_000)
    # When one request brings u1 24 such traits, a login, and u2 an event after them
    big = [ident("u1", f"i{k}", {f"big{k}": noise(TRAIT_VALUE_BYTES - 2)}) for k in range(24)]
    batch: list[Message] = [
        t("signed_up", "u0", "before"),
        *big,
        t("login", "u1", "l"),
        t("login", "u2", "after"),
    ]
    result = ingest(list(enumerate(batch)), PLAN, store, NOW)
    # Then the identifies past the bound are refused, each naming it; nothing else is
    refused = [p.index for p in result.errors]
    assert refused
    assert all(p.field == "message" for p in result.errors)
    assert "14,000 bytes" in result.errors[0].message
    assert refused == list(range(refused[0], 25))  # in order: the first that did not fit, and on
    assert result.accepted == len(batch) - len(refused)
    u1 = store.users["u1"].value
    assert len(u1.traits) == refused[0] - 1
    assert u1.event_counts == {"login": 1}
    assert len(encode(u1)) <= 14_000
    assert store.users["u0"].value.event_counts == {"signed_up": 1}
    assert store.users["u2"].value.event_counts == {"login": 1}
    # And the refused ones were not remembered: sent again they are judged again, not deduped
    again = ingest([(0, big[-1])], PLAN, store, NOW)
    assert [p.field for p in again.errors] == ["message"]


def test_small_messages_after_a_refused_large_one_are_still_kept() -> None:
    store = MemoryUsageStore(max_item_bytes=6_000)
    batch: list[Message] = [
        ident("u1", "small", {"plan": "team"}),
        ident("u1", "huge", {f"k{i}": noise(900) for i in range(12)}),
        t("login", "u1", "l1"),
        t("project_created", "u1", "p1"),
    ]
    result = ingest(list(enumerate(batch)), PLAN, store, NOW)
    assert [p.index for p in result.errors] == [1]
    assert store.users["u1"].value.event_counts == {"login": 1, "project_created": 1}


def test_a_user_already_past_the_bound_gets_an_error_per_message_and_others_are_written() -> None:
    # Given a user whose stored state is already over the bound (written before it, say)
    store = MemoryUsageStore(max_item_bytes=8_000)
    fat = fold(None, "u1", [ident("u1", "old", {f"k{i}": noise(900) for i in range(14)})], PLAN, NOW)
    store.users["u1"] = Versioned(fat, 1)
    # When it gets more messages, alongside another user
    batch: list[Message] = [t("login", "u1", "a"), t("login", "u2", "b")]
    result = ingest(list(enumerate(batch)), PLAN, store, NOW)
    assert [(p.index, p.field) for p in result.errors] == [(0, "message")]
    assert "already at its size bound" in result.errors[0].message
    assert store.users["u1"].value == fat
    assert store.users["u2"].value.event_counts == {"login": 1}


def test_a_merge_past_the_bound_is_not_made_and_the_persons_other_messages_land() -> None:
    # Given a user and an anonymous device, each big enough alone, too big together
    store = MemoryUsageStore(max_item_bytes=7_000)
    ingest([(0, ident("u1", "p", {f"k{i}": noise(900) for i in range(6)}))], PLAN, store, NOW)
    device = [
        Track(anonymousId="d1", event=f"made_up_{i}_{noise(150)}", timestamp=AT, messageId=f"d{i}")
        for i in range(30)
    ]
    ingest(list(enumerate(device)), PLAN, store, NOW)
    # When a login links the device to the user, next to the user's own event
    link = Track(userId="u1", anonymousId="d1", event="login", timestamp=AT, messageId="link")
    result = ingest([(0, link), (1, t("project_created", "u1", "own"))], PLAN, store, NOW)
    # Then the linking message is refused, naming its anonymousId; the device stays its own
    assert [(p.index, p.field) for p in result.errors] == [(0, "anonymousId")]
    assert "not linked" in result.errors[0].message
    assert store.users["u1"].value.event_counts == {"project_created": 1}
    assert store.users["anon:d1"].value.merged_into is None
    assert len(store.users["anon:d1"].value.events) == 30


def test_an_id_whose_pointer_expired_merges_its_new_history_again() -> None:
    # Given a device merged into u1 whose pointer has since expired (state TTL), then used again
    store = MemoryUsageStore()
    ingest([(0, Track(anonymousId="d1", event="login", timestamp=AT, messageId="d-old"))], PLAN, store, NOW)
    ingest([(0, ident("u1", "link-1", {"plan": "team"}, anonymous="d1"))], PLAN, store, NOW)
    assert store.users["u1"].value.merged == ["anon:d1"]
    del store.users["anon:d1"]  # what DynamoDB's TTL does to the pointer
    ingest(
        [(0, Track(anonymousId="d1", event="report_exported", timestamp=AT, messageId="d-new"))],
        PLAN,
        store,
        NOW,
    )
    # When the device links to the user again
    ingest([(0, ident("u1", "link-2", {}, anonymous="d1"))], PLAN, store, NOW)
    # Then its new history joins the person's, and it points at them again
    assert store.users["u1"].value.event_counts == {"login": 1, "report_exported": 1}
    assert store.users["anon:d1"].value.merged_into == "u1"


def test_an_alias_merge_past_the_bound_names_previous_id() -> None:
    store = MemoryUsageStore(max_item_bytes=7_000)
    ingest([(0, ident("u1", "p", {f"k{i}": noise(900) for i in range(6)}))], PLAN, store, NOW)
    ingest([(0, ident("u0", "q", {f"j{i}": noise(900) for i in range(6)}))], PLAN, store, NOW)
    alias = Alias(userId="u1", previousId="u0", timestamp=AT, messageId="al")
    result = ingest([(0, alias)], PLAN, store, NOW)
    assert [(p.index, p.field) for p in result.errors] == [(0, "previousId")]
    assert store.users["u0"].value.merged_into is None


class CountingFits(MemoryUsageStore):
    def __init__(self, max_item_bytes: int) -> None:
        super().__init__(max_item_bytes)
        self.measured = 0

    def fits(self, state: UserState, correlation_id: str = "", rollup: RollupDelta | None = None) -> bool:
        self.measured += 1
        return super().fits(state, correlation_id, rollup)


def test_a_user_at_the_bound_costs_a_bounded_number_of_measures_whatever_the_batch() -> None:
    # Given a user a few bytes short of the bound
    store = CountingFits(max_item_bytes=7_000)
    seed = fold(None, "u1", [ident("u1", "old", {f"k{i}": noise(900) for i in range(9)})], PLAN, NOW)
    store.max_item_bytes = len(encode(seed)) + 40
    store.users["u1"] = Versioned(seed, 1)
    # When a batch brings them 2,000 events (each adds a dedupe digest), and another user one
    batch: list[Message] = [t("login", "u1", f"m{i}") for i in range(2000)] + [t("login", "u2", "x")]
    result = ingest(list(enumerate(batch)), PLAN, store, NOW)
    # Then the search stops after PROBES measures (and the one of the state as stored): the rest
    # of u1's messages are refused alike, and u2 is written
    assert store.measured <= bounded.PROBES + 1
    refused = {p.index for p in result.errors}
    assert result.accepted + len(refused) == len(batch)
    assert 2000 not in refused
    assert len(refused) > 1900
    assert {p.message for p in result.errors if p.index > 1000} == {
        bounded.REST.format(limit=store.max_item_bytes)
    }
    assert len(encode(store.users["u1"].value)) <= store.max_item_bytes
    assert store.users["u2"].value.event_counts == {"login": 1}
