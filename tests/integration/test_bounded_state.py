"""Bounded state on DynamoDB (moto, tables from template.yaml): through the real ingest handler, a
user whose item would grow too large gets per-message errors, never a 503, and the users after it
in the batch are written; DynamoDB's own size error is one of those per-message errors too."""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest

from nudge.adapters.dynamo.codec import encode
from nudge.adapters.dynamo.usage import DynamoUsageStore
from nudge.bootstrap import api as wiring
from nudge.domain.fold import fold, fold_account, rollup_delta
from nudge.model.errors import ItemTooLarge
from nudge.model.messages import Group, Identify, Track
from nudge.model.state import UserState
from nudge.rulebook.plan import load_plan
from nudge.services.ingest import ingest
from nudge.settings import Settings
from nudge.tools.local.aws import create_usage_resources
from tests.integration.ingest_api import Api, deployed_api

NOW = datetime.now(UTC)
PLAN = load_plan(Path("rules"))


def noise(n: int) -> str:
    """Text zlib can hardly shrink (base64 of random bytes: 6 bits of 8)."""
    return base64.b64encode(os.urandom(n))[:n].decode()


@pytest.fixture
def api(aws: None, template_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Api]:
    with deployed_api(template_path, monkeypatch) as deployed:
        yield deployed


def post(api: Api, body: Any) -> tuple[int, dict[str, Any]]:
    status, _headers, text = api.call("POST", "/v1/batch", body)
    return status, json.loads(text)


def at(minutes_ago: float) -> str:
    return (NOW - timedelta(minutes=minutes_ago)).isoformat()


def track(user: str, event: str, mid: str) -> dict[str, Any]:
    return {"type": "track", "userId": user, "event": event, "timestamp": at(5), "messageId": mid}


def seed(user: str, traits: dict[str, Any]) -> UserState:
    """A user holding `traits`, stored as ingest before the bounds could have stored them."""
    message = Identify.model_validate(
        {"userId": user, "traits": traits, "timestamp": at(60), "messageId": "seed"}
    )
    state = fold(None, user, [message], PLAN, NOW)
    wiring.services().store.save_user(state, 0, None, NOW)
    return state


def test_traits_that_would_overflow_the_item_are_refused_per_message_and_later_users_written(
    api: Api,
) -> None:
    # Given a user already holding ~290 KB of traits (stored before traits had bounds)
    seed("big", {f"old{i}": noise(25_000) for i in range(15)})
    # When a batch brings them ten more traits of 20 KB, between other users' events: before
    # the bounds the item passed DynamoDB's 400 KB, the whole request got 503 "retry" (which could
    # never succeed) and the users after it were never written
    batch = [
        track("before", "signed_up", "b1"),
        *(
            {"type": "identify", "userId": "big", "traits": {f"new{k}": noise(20_000)}, "messageId": f"n{k}"}
            for k in range(10)
        ),
        track("big", "login", "big-login"),
        track("after", "login", "a1"),
    ]
    status, body = post(api, {"batch": batch})
    # Then each identify is refused on its own, naming the trait, the bound and the fix
    assert status == 400
    assert [(e["index"], e["field"]) for e in body["errors"]] == [
        (k + 1, f"traits.new{k}") for k in range(10)
    ]
    assert "own store" in body["errors"][0]["message"]
    assert body["accepted"] == 3
    # And the rest of the batch is written: the big user's event and the users around it
    assert api.counts("before") == {"signed_up": 1}
    assert api.counts("big") == {"login": 1}
    assert api.counts("after") == {"login": 1}


def test_messages_that_would_take_the_item_past_its_bound_get_errors_and_the_rest_lands(api: Api) -> None:
    # Given a user less than a KB short of MAX_ITEM_BYTES (traits stored before their bounds)
    store = wiring.services().store
    near: UserState | None = None
    for n in range(420, 520):
        candidate = fold(
            None,
            "near",
            [
                Identify.model_validate(
                    {
                        "userId": "near",
                        "traits": {f"old{i}": noise(1_000) for i in range(n)},
                        "timestamp": at(60),
                        "messageId": "seed",
                    }
                )
            ],
            PLAN,
            NOW,
        )
        if not store.fits(candidate, "x" * 64):
            break
        near = candidate
    assert near is not None
    store.save_user(near, 0, None, NOW)
    # When a batch brings them events within every other bound (40 made-up event names of 160
    # characters: a few KB), then another user's event
    batch = [
        *(track("near", f"made_up_{k}_{noise(150)}", f"e{k}") for k in range(40)),
        track("near", "login", "near-login"),
        track("after2", "login", "a2"),
    ]
    status, body = post(api, {"batch": batch})
    # Then the messages that would pass the bound are refused with an error naming it; the
    # user's item stays within it; the other user is written
    assert status == 400
    refused = [e["index"] for e in body["errors"]]
    assert refused
    assert {e["field"] for e in body["errors"]} == {"message"}
    assert "MAX_ITEM_BYTES" in body["errors"][0]["message"]
    assert 41 not in refused
    assert body["accepted"] == len(batch) - len(refused)
    kept = store.load_users(["near"])["near"].value
    assert len(encode(kept)) < store.max_item_bytes
    assert api.counts("after2") == {"login": 1}


# ------------------------------------------------------------------ DynamoDB's own size error


def dynamo_store() -> DynamoUsageStore:
    """The usage store with Nudge's own bound out of the way, so DynamoDB (moto) judges the size."""
    return DynamoUsageStore(boto3.client("dynamodb"), "usage-own-limit", max_item_bytes=10 * 1024 * 1024)


@pytest.fixture
def own_limit(aws: None) -> DynamoUsageStore:
    create_usage_resources(
        boto3.client("dynamodb"),
        boto3.client("ssm"),
        Path("template.yaml"),
        Settings(usage_table="usage-own-limit", keys_path="/nudge/own/keys"),
        ["k"],
    )
    return dynamo_store()


def seeded_near_dynamodbs_limit(store: DynamoUsageStore, user: str) -> UserState:
    """A user whose item is ~390 KB: within DynamoDB's limit, which any sizeable write passes."""
    state = fold(
        None,
        user,
        [
            Identify.model_validate(
                {
                    "userId": user,
                    "traits": {f"o{i}": noise(26_000) for i in range(20)},
                    "timestamp": NOW,
                    "messageId": "s",
                }
            )
        ],
        PLAN,
        NOW,
    )
    assert 380_000 < len(encode(state)) < 400_000
    store.save_user(state, 0, None, NOW)
    return state


@pytest.mark.parametrize("in_a_transaction", [False, True])
def test_dynamodbs_own_size_error_is_item_too_large_not_store_unavailable(
    own_limit: DynamoUsageStore, in_a_transaction: bool
) -> None:
    user = f"u-own-{in_a_transaction}"
    state = seeded_near_dynamodbs_limit(own_limit, user)
    bigger = fold(
        state,
        user,
        [
            Identify.model_validate(
                {"userId": user, "traits": {"more": noise(30_000)}, "timestamp": NOW, "messageId": "m"}
            )
        ],
        PLAN,
        NOW,
    )
    group = Group(userId=user, groupId="acme", timestamp=NOW, messageId="g")
    if in_a_transaction:  # an account rollup makes the write a TransactWriteItems
        bigger = fold(
            bigger,
            user,
            [group, Track(userId=user, event="project_created", timestamp=NOW, messageId="p")],
            PLAN,
            NOW,
        )
    rollup = rollup_delta(state, bigger) if in_a_transaction else None
    assert (rollup is not None) is in_a_transaction
    with pytest.raises(ItemTooLarge):
        own_limit.save_user(bigger, 1, rollup, NOW)
    assert own_limit.load_users([user])[user].value == state


def test_a_batch_past_dynamodbs_limit_gets_per_message_errors_and_the_others_are_written(
    own_limit: DynamoUsageStore,
) -> None:
    # Given a user at ~390 KB, and Nudge's own bound out of the way (DynamoDB's is the one met)
    seeded_near_dynamodbs_limit(own_limit, "u-full")
    # When a request brings them more, between other users' events
    messages = [
        Track(userId="first", event="login", timestamp=NOW, messageId="f"),
        Identify.model_validate(
            {"userId": "u-full", "traits": {"more": "x"}, "timestamp": NOW, "messageId": "i"}
        ),
        Track(userId="u-full", event="login", timestamp=NOW, messageId="l"),
        Track(userId="last", event="login", timestamp=NOW, messageId="z"),
    ]
    noisy = [
        Track(userId="u-full", event=f"e_{noise(180)}", timestamp=NOW, messageId=f"n{i}") for i in range(100)
    ]
    result = ingest(list(enumerate([*messages, *noisy])), PLAN, own_limit, NOW)
    # Then that user's messages are refused on their own (DynamoDB said no), the others written
    refused = {p.index for p in result.errors}
    assert refused
    assert refused <= {1, 2, *range(4, 104)}
    assert {p.field for p in result.errors} == {"message"}
    loaded = own_limit.load_users(["first", "last"])
    assert loaded["first"].value.event_counts == {"login": 1}
    assert loaded["last"].value.event_counts == {"login": 1}


def test_an_account_stored_past_the_bound_keeps_its_traits_and_its_users_still_join(
    own_limit: DynamoUsageStore,
) -> None:
    # Given an account whose traits were stored before they had bounds, ~345 KB of them
    store = DynamoUsageStore(boto3.client("dynamodb"), "usage-own-limit")
    traits = {f"t{i}": noise(28_000) for i in range(16)}
    account = fold_account(
        None, "heavy", [Group(userId="x", groupId="heavy", traits=traits, messageId="old")]
    )
    while len(encode(account)) < store.max_item_bytes - 600:  # within a few hundred bytes of it
        traits["pad"] = traits.get("pad", "") + noise(200)
        account = fold_account(
            None, "heavy", [Group(userId="x", groupId="heavy", traits=traits, messageId="old")]
        )
    assert len(encode(account)) < store.max_item_bytes - 200
    store.save_account(account, 0, NOW)
    # When a user joins it with a trait that takes it past the bound
    joining = Group.model_validate(
        {
            "userId": "joiner",
            "groupId": "heavy",
            "traits": {"note": noise(1_000)},
            "timestamp": NOW,
            "messageId": "j",
        }
    )
    result = ingest([(0, joining)], PLAN, store, NOW)
    # Then the user joins, the account's traits stay as they were, and the sender is told: no 503
    assert result.errors == []
    assert [(w.index, w.field) for w in result.warnings] == [(0, "traits")]
    assert store.load_users(["joiner"])["joiner"].value.account_id == "heavy"
    stored = store.load_account("heavy")
    assert stored is not None
    assert stored.value == account
