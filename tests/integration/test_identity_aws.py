"""Identity resolution through the real ingest handler and the DynamoDB adapters, on moto with the
tables built from template.yaml: merges are one transaction, pointers are followed, the ledger
follows an alias, erasure takes every merged id."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import pytest
from moto import mock_aws

from bench.rollup_stream import RollupPump
from nudge import bootstrap
from nudge.adapters.dynamo.ledger import DynamoLedger
from nudge.adapters.dynamo.usage import DynamoUsageStore
from nudge.adapters.memory.usage import TRANSACTION_ITEMS, MemoryUsageStore, transaction_items
from nudge.bootstrap import api
from nudge.model.delivery import DeliveryRecord, Sent
from nudge.model.errors import StoreUnavailable
from nudge.model.ledger import Commit
from nudge.model.messages import Identify, Track
from nudge.model.state import RollupDelta, UserState
from nudge.services.erasure import erase_user
from nudge.services.identity import CYCLE, MAX_ABSORBED
from nudge.services.ingest import ingest
from nudge.settings import Settings
from nudge.tools.local.aws import create_usage_resources
from tests.integration.conftest import IngestContext, load_ingest_app

KEY = "wk-identity-it"
USAGE_TABLE = "usage-identity-it"
LEDGER_TABLE = "ledger-identity-it"
NOW = datetime.now(UTC)


@pytest.fixture(scope="module")
def handler() -> Iterator[ModuleType]:
    with pytest.MonkeyPatch.context() as env, mock_aws():
        env.setenv("NUDGE_USAGE_TABLE", USAGE_TABLE)
        env.setenv("NUDGE_LEDGER_TABLE", LEDGER_TABLE)
        bootstrap.reset()
        create_usage_resources(
            boto3.client("dynamodb"), boto3.client("ssm"), Path("template.yaml"), Settings(), [KEY]
        )
        yield load_ingest_app("ingest_app_identity_it")
        bootstrap.reset()


def post(handler: ModuleType, path: str, body: Any) -> tuple[int, dict[str, Any]]:
    evt = {
        "version": "2.0",
        "routeKey": f"POST {path}",
        "rawPath": path,
        "rawQueryString": "",
        "headers": {
            "content-type": "application/json",
            "authorization": "Basic " + base64.b64encode(f"{KEY}:".encode()).decode(),
        },
        "requestContext": {
            "http": {"method": "POST", "path": path, "protocol": "HTTP/1.1", "sourceIp": "10.0.0.1"},
            "requestId": "r",
            "stage": "$default",
        },
        "body": json.dumps(body),
        "isBase64Encoded": False,
    }
    response = handler.handler(evt, IngestContext("req-identity"))
    return response["statusCode"], json.loads(response["body"])


def uid() -> str:
    return f"it-{uuid.uuid4().hex[:8]}"


def ts(hours_ago: float = 1) -> str:
    return (NOW - timedelta(hours=hours_ago)).isoformat()


def step(event: str, device: str, hours_ago: float = 3) -> dict[str, Any]:
    return {"type": "track", "event": event, "anonymousId": device, "timestamp": ts(hours_ago)}


def items(pk: str) -> dict[str, dict[str, Any]]:
    response = boto3.client("dynamodb").query(
        TableName=USAGE_TABLE,
        KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": pk}},
        ConsistentRead=True,
    )
    return {item["sk"]["S"]: item for item in response["Items"]}


def state(user_id: str) -> UserState:
    return api.services().store.load_users([user_id])[user_id].value


def test_identify_merges_the_anonymous_onboarding_in_one_transaction(handler: ModuleType) -> None:
    # Given a visitor's onboarding steps, anonymous, and a group call from the same device
    device, user = uid(), uid()
    onboarding = [step(e, device) for e in ("setup_completed", "project_created", "teammate_invited")]
    group = {"type": "group", "anonymousId": device, "groupId": f"acct-{device}", "timestamp": ts(4)}
    assert post(handler, "/v1/batch", {"batch": [*onboarding, group]})[0] == 200
    # When the app identifies them
    status, body = post(
        handler, "/v1/identify", {"userId": user, "anonymousId": device, "traits": {"plan": "team"}}
    )
    # Then the user holds the steps and the milestone, and the account membership
    assert (status, body["success"]) == (200, True)
    assert "activated" in state(user).milestones
    assert state(user).account_id == f"acct-{device}"
    # the device's item is a pointer (off the account index) and the user's partition says so
    pointer = items(f"USER#anon:{device}")["STATE"]
    assert pointer["merged_into"]["S"] == user
    assert "account_id" not in pointer
    assert f"MERGED#anon:{device}" in items(f"USER#{user}")
    assert api.services().store.users_of_account(f"acct-{device}") == [user]
    # and the account counts the person once, from the merge (the device counted nothing), once
    # the rollup function has applied the stream's deltas
    RollupPump(boto3.client("dynamodb"), boto3.client("dynamodbstreams"), USAGE_TABLE).pump()
    rollup = api.services().store.load_rollup(f"acct-{device}")
    assert sum(w.active_users for w in rollup.weeks.values()) == 1


def test_anonymous_events_after_the_identify_land_on_the_user(handler: ModuleType) -> None:
    device, user = uid(), uid()
    assert post(handler, "/v1/i", {"userId": user, "anonymousId": device})[0] == 200
    assert post(handler, "/v1/t", step("setup_completed", device))[0] == 200
    assert post(handler, "/v1/batch", {"batch": [step("project_created", device)]})[0] == 200
    assert state(user).event_counts == {"setup_completed": 1, "project_created": 1}


def test_the_alias_routes_and_an_alias_in_a_batch_merge_the_previous_id(handler: ModuleType) -> None:
    old, new, other, newer = uid(), uid(), uid(), uid()
    track = {"type": "track", "event": "setup_completed", "timestamp": ts(2)}
    post(handler, "/v1/batch", {"batch": [{**track, "userId": old}, {**track, "userId": other}]})
    assert post(handler, "/v1/alias", {"previousId": old, "userId": new, "timestamp": ts(1)})[0] == 200
    assert post(handler, "/v1/a", {"type": "alias", "previousId": new, "userId": newer})[0] == 200
    status, _ = post(
        handler, "/v1/batch", {"batch": [{"type": "alias", "previousId": other, "userId": newer}]}
    )
    assert status == 200
    assert state(newer).event_counts == {"setup_completed": 2}
    assert state(old).merged_into == new
    assert state(new).merged_into == newer


def test_an_alias_to_itself_is_400_naming_it(handler: ModuleType) -> None:
    user = uid()
    status, body = post(handler, "/v1/alias", {"previousId": user, "userId": user})
    assert status == 400
    assert body["errors"] == [
        {"index": 0, "field": "previousId", "message": "alias: previousId and userId are the same"}
    ]
    status, body = post(
        handler, "/v1/batch", {"batch": [{"type": "alias", "previousId": user, "userId": user}]}
    )
    assert (status, body["errors"][0]["field"]) == (400, "previousId")


def test_an_alias_closing_a_cycle_is_400_naming_the_fields_not_the_ids(handler: ModuleType) -> None:
    a, b = uid(), uid()
    assert post(handler, "/v1/alias", {"previousId": b, "userId": a})[0] == 200
    status, body = post(handler, "/v1/alias", {"previousId": a, "userId": b})
    assert status == 400
    assert body["errors"] == [{"index": 0, "field": "previousId", "message": CYCLE}]
    assert a not in json.dumps(body)
    assert state(b).merged_into == a


class RacingStore(DynamoUsageStore):
    """Another request folds a device event into the anonymous item between our read and write."""

    def __init__(self, *args: Any, race: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.race = race
        self.raced = False

    def save_user(
        self,
        state: UserState,
        version: int,
        rollup: RollupDelta | None,
        now: datetime,
        correlation_id: str = "",
        absorbed: Sequence[tuple[str, int]] = (),
    ) -> None:
        if absorbed and not self.raced:
            self.raced = True
            self.race()
        super().save_user(state, version, rollup, now, correlation_id, absorbed)


def test_a_merge_that_loses_a_race_is_retried_and_keeps_the_other_write(handler: ModuleType) -> None:
    # Given an anonymous profile, and a second request folding into it while a merge is in flight
    svc = api.services()
    device, user = uid(), uid()
    first = Track(
        anonymousId=device, event="setup_completed", timestamp=NOW - timedelta(hours=2), messageId=uid()
    )
    ingest([(0, first)], svc.plan, svc.store, NOW)
    sneaked = Track(
        anonymousId=device, event="project_created", timestamp=NOW - timedelta(hours=2), messageId=uid()
    )
    store = RacingStore(
        boto3.client("dynamodb"),
        USAGE_TABLE,
        race=lambda: ingest([(0, sneaked)], svc.plan, svc.store, NOW),
    )
    link = Identify(userId=user, anonymousId=device, timestamp=NOW - timedelta(hours=1), messageId=uid())
    # When the merge's transaction fails on the anonymous item's version
    result = ingest([(0, link)], svc.plan, store, NOW, sleep=lambda _: None)
    # Then it is read again and retried, and nothing the other request wrote is lost
    assert result.conflicts == 1
    assert state(user).event_counts == {"setup_completed": 1, "project_created": 1}
    assert state(f"anon:{device}").merged_into == user


def test_the_ledger_adopts_the_aliased_ids_record_once(handler: ModuleType) -> None:
    ledger = DynamoLedger(boto3.client("dynamodb"), LEDGER_TABLE)
    old, new = uid(), uid()
    sent = DeliveryRecord(
        sends=[Sent(at=NOW, channel="email", rule="finish_setup", journey="")],
        last_by_rule={"finish_setup": NOW},
    )
    ledger.commit(Commit(old, sent, 0, (), frozenset()), NOW)
    ledger.unsubscribe(old, "sms", NOW)
    ledger.adopt(new, [old], NOW)
    once = ledger.load(new, None, []).record
    ledger.adopt(new, [old], NOW)
    again = ledger.load(new, None, []).record
    assert once.value.last_by_rule == {"finish_setup": NOW}
    assert once.value.unsubscribed == {"sms"}
    assert once.value.adopted == [old]
    assert again.value == once.value


def test_erasure_takes_every_id_merged_into_the_person(handler: ModuleType) -> None:
    svc = api.services()
    device, old, user = uid(), uid(), uid()
    post(handler, "/v1/batch", {"batch": [step("setup_completed", device)]})
    post(handler, "/v1/identify", {"userId": old, "anonymousId": device})
    post(handler, "/v1/alias", {"previousId": old, "userId": user})
    assert sorted(svc.store.merged_ids(user)) == sorted([old, f"anon:{old}", f"anon:{device}"])
    erase_user(user, usage=svc.store, segments=svc.segments, ledger=svc.ledger, accounts=svc.accounts)
    for gone in (user, old, f"anon:{old}", f"anon:{device}"):
        assert items(f"USER#{gone}") == {}


def test_ids_merged_earlier_in_a_batch_count_toward_the_limit_so_the_transaction_fits(
    handler: ModuleType,
) -> None:
    # Given one batch: 25 devices identified as u1, 24 as u2, then u1 aliased to u2
    u1, u2 = uid(), uid()
    batch = [{"type": "identify", "userId": u1, "anonymousId": f"{u1}-d{i}"} for i in range(25)]
    batch += [{"type": "identify", "userId": u2, "anonymousId": f"{u2}-d{i}"} for i in range(24)]
    batch.append({"type": "alias", "previousId": u1, "userId": u2})
    # When it is sent (u2 taking u1 and its 25 would be a transaction of over 100 items: 503)
    status, body = post(handler, "/v1/batch", {"batch": batch})
    # Then it lands, u1 left for a later request, and the answer says so
    assert (status, body["accepted"]) == (200, 50)
    assert [(w["index"], w["field"]) for w in body["warnings"]] == [(49, "previousId")]
    assert len(state(u2).merged) == MAX_ABSORBED
    assert state(u1).merged_into is None
    # And sent again, the alias merges u1 (its devices already point at it)
    assert post(handler, "/v1/alias", {"previousId": u1, "userId": u2}) == (
        200,
        {"success": True, "accepted": 1, "errors": [], "warnings": []},
    )
    assert state(u1).merged_into == u2


@pytest.mark.parametrize(("absorbed", "weeks"), [(49, 0), (49, 1), (48, 2), (47, 5)])
def test_the_memory_store_counts_a_transaction_as_dynamodb_does(
    handler: ModuleType, absorbed: int, weeks: int
) -> None:
    # Given a write of a person, `absorbed` merged ids and a rollup touching `weeks` weeks and features
    user = uid()
    rollup = RollupDelta(
        account_id=f"acct-{user}",
        week_users={f"2025-W{w + 1:02d}": 1 for w in range(weeks)},
        feature_adopters={"export": 1},
    )
    ids = [(f"anon:{user}-{i}", 0) for i in range(absorbed)]
    fits = transaction_items(rollup, ids) <= TRANSACTION_ITEMS

    # When both stores are asked to make it
    def outcome(store: Any) -> bool:
        try:
            store.save_user(UserState(user_id=user), 0, rollup, NOW, absorbed=ids)
        except StoreUnavailable:
            return False
        return True

    client = boto3.client("dynamodb")
    sent: list[int] = []
    client.meta.events.register(
        "provide-client-params.dynamodb.TransactWriteItems",
        lambda params, **_: sent.append(len(params["TransactItems"])),
    )
    outcome(DynamoUsageStore(client, USAGE_TABLE))
    # Then the fake counts the items the DynamoDB store really sends (moto, patched by the local
    # stack's speedups elsewhere in the session, may not enforce the limit), and refuses past it
    assert sent == [transaction_items(rollup, ids)]
    assert outcome(MemoryUsageStore()) == fits


def test_an_id_with_the_anonymous_prefix_is_400_naming_the_field(handler: ModuleType) -> None:
    device = uid()
    status, body = post(handler, "/v1/identify", {"userId": f"anon:{device}", "traits": {"plan": "pro"}})
    assert (status, [e["field"] for e in body["errors"]]) == (400, ["userId"])
    assert "must not start with 'anon:'" in body["errors"][0]["message"]
    status, body = post(
        handler, "/v1/batch", {"batch": [{"type": "alias", "previousId": f"anon:{device}", "userId": uid()}]}
    )
    assert (status, [e["field"] for e in body["errors"]]) == (400, ["previousId"])
    assert api.services().store.load_users([f"anon:{device}"]) == {}
