"""Inactive users' items expire (DynamoDB TTL on `expires_at`, tables from template.yaml, on moto):
each write of a user's item moves its expiry the state TTL ahead; a merge's pointer and
back-reference expire with the TTL from the merge; a delivery record holding an unsubscribe never
expires; and the local stack deletes what has expired when its clock moves, as DynamoDB would."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests

from nudge.adapters.dynamo.ledger import DELIVERY, DynamoLedger
from nudge.adapters.dynamo.segments import DynamoSegmentStore
from nudge.adapters.dynamo.usage import BACK_REFERENCE_GRACE, EXPIRES, MERGED, DynamoUsageStore
from nudge.model.delivery import DeliveryRecord, Sent
from nudge.model.errors import StateConflict
from nudge.model.ledger import Commit
from nudge.model.messages import Identify, Message, Track
from nudge.model.segments import SegmentRecord
from nudge.rulebook.plan import load_plan
from nudge.services.ingest import ingest
from nudge.settings import Settings
from nudge.tools.local.aws import create_usage_resources
from nudge.tools.local.expiry import expire
from nudge.tools.local.http import LocalApiServer
from nudge.tools.local.simulated_clock import SimulatedClock
from nudge.tools.local.stack import LocalStack
from nudge.tools.local.write_keys import DEFAULT_WRITE_KEY
from tests.integration.ingest_api import deployed_api

PLAN = load_plan(Path("rules"))
NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
TTL = timedelta(days=45)
SETTINGS = Settings(usage_table="usage-ttl", ledger_table="ledger-ttl", keys_path="/nudge/ttl/keys")


@pytest.fixture
def client(aws: None) -> Any:
    dynamodb = boto3.client("dynamodb")
    create_usage_resources(dynamodb, boto3.client("ssm"), Path("template.yaml"), SETTINGS, ["k"])
    return dynamodb


def item(client: Any, table: str, pk: str, sk: str) -> dict[str, Any]:
    found = client.get_item(TableName=table, Key={"pk": {"S": pk}, "sk": {"S": sk}}, ConsistentRead=True)
    return dict(found.get("Item") or {})


def expiry(found: dict[str, Any]) -> datetime | None:
    return datetime.fromtimestamp(int(found[EXPIRES]["N"]), UTC) if EXPIRES in found else None


def track(user: str, mid: str, at: datetime, anonymous: str | None = None) -> Track:
    return Track(userId=user, anonymousId=anonymous, event="login", timestamp=at, messageId=mid)


def test_each_write_of_a_users_state_moves_its_expiry_the_state_ttl_ahead(client: Any) -> None:
    store = DynamoUsageStore(client, SETTINGS.usage_table, state_ttl=TTL)
    ingest([(0, track("u1", "a", NOW))], PLAN, store, NOW)
    assert expiry(item(client, SETTINGS.usage_table, "USER#u1", "STATE")) == NOW + TTL
    later = NOW + timedelta(days=10)
    ingest([(0, track("u1", "b", later))], PLAN, store, later)
    assert expiry(item(client, SETTINGS.usage_table, "USER#u1", "STATE")) == later + TTL


def test_the_ingest_function_writes_the_expiry_its_setting_says(
    aws: None, template_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The template passes StateTtlDays as NUDGE_STATE_TTL_DAYS: the real function, told 45 days
    with deployed_api(template_path, monkeypatch, NUDGE_STATE_TTL_DAYS="45") as api:
        before = datetime.now(UTC)
        status, _headers, _body = api.call("POST", "/v1/track", {"userId": "u-fn", "event": "login"})
        after = datetime.now(UTC)
        assert status == 200
        written = expiry(item(api.dynamodb, api.settings.usage_table, "USER#u-fn", "STATE"))
    assert written is not None
    assert before + timedelta(days=45) - timedelta(seconds=1) <= written <= after + timedelta(days=45)


def test_a_merges_pointer_expires_with_the_ttl_from_the_merge_and_its_back_reference_after_it(
    client: Any,
) -> None:
    store = DynamoUsageStore(client, SETTINGS.usage_table, state_ttl=TTL)
    ingest([(0, Track(anonymousId="d1", event="login", timestamp=NOW, messageId="d"))], PLAN, store, NOW)
    merge_at = NOW + timedelta(days=1)
    identify: Message = Identify(userId="u2", anonymousId="d1", timestamp=merge_at, messageId="i")
    ingest([(0, identify)], PLAN, store, merge_at)
    pointer = item(client, SETTINGS.usage_table, "USER#anon:d1", "STATE")
    back = item(client, SETTINGS.usage_table, "USER#u2", MERGED + "anon:d1")
    assert pointer["merged_into"] == {"S": "u2"}
    assert expiry(pointer) == merge_at + TTL
    # Erasure finds a pointer through its back-reference: that must outlive it, whatever order
    # DynamoDB's TTL deletes them in (within days of expiry).
    assert expiry(back) == merge_at + TTL + BACK_REFERENCE_GRACE


def test_the_evaluators_record_expires_the_state_ttl_after_its_last_write(client: Any) -> None:
    segments = DynamoSegmentStore(client, SETTINGS.usage_table, state_ttl=TTL)
    segments.save("u3", SegmentRecord(), 0, NOW)
    assert expiry(item(client, SETTINGS.usage_table, "USER#u3", "SEGMENTS")) == NOW + TTL
    segments.save("u3", SegmentRecord(state_version=2), 1, NOW + timedelta(days=3))
    assert expiry(item(client, SETTINGS.usage_table, "USER#u3", "SEGMENTS")) == NOW + timedelta(days=3) + TTL


def sent(user: str, version: int, unsubscribed: set[str], at: datetime) -> Commit:
    record = DeliveryRecord(
        sends=[Sent(at=at, channel="email", rule="r", journey="")], unsubscribed=unsubscribed
    )
    return Commit(user_id=user, record=record, record_version=version, entries=(), replacing=frozenset())


def test_a_delivery_record_expires_only_while_it_holds_no_unsubscribe(client: Any) -> None:
    ledger = DynamoLedger(client, SETTINGS.ledger_table, state_ttl=TTL)
    # A record with sends only expires the state TTL after its last write
    ledger.commit(sent("u4", 0, set(), NOW), NOW)
    assert expiry(item(client, SETTINGS.ledger_table, "USER#u4", DELIVERY)) == NOW + TTL
    # An unsubscribe takes its expiry away...
    ledger.unsubscribe("u4", "email:tips", NOW + timedelta(days=1))
    assert expiry(item(client, SETTINGS.ledger_table, "USER#u4", DELIVERY)) is None
    # ...and a dispatch that read the record before the unsubscribe cannot put it back: it retries
    with pytest.raises(StateConflict):
        ledger.commit(sent("u4", 1, set(), NOW + timedelta(days=2)), NOW + timedelta(days=2))
    # Read again (with the unsubscribe), its write leaves the record without an expiry
    read = ledger.load("u4", None, [])
    assert read.record.value.unsubscribed == {"email:tips"}
    ledger.commit(
        sent("u4", read.record.version, read.record.value.unsubscribed, NOW), NOW + timedelta(days=2)
    )
    stored = item(client, SETTINGS.ledger_table, "USER#u4", DELIVERY)
    assert expiry(stored) is None
    assert stored["unsub"] == {"SS": ["email:tips"]}


def test_a_delivery_record_made_by_an_unsubscribe_alone_never_expires(client: Any) -> None:
    ledger = DynamoLedger(client, SETTINGS.ledger_table, state_ttl=TTL)
    ledger.unsubscribe("u5", "email", NOW)
    ledger.adopt("u5", ["u6"], NOW)
    assert expiry(item(client, SETTINGS.ledger_table, "USER#u5", DELIVERY)) is None
    ledger.adopt("u7", ["u8"], NOW)  # nothing to keep: it may expire
    assert expiry(item(client, SETTINGS.ledger_table, "USER#u7", DELIVERY)) == NOW + TTL


# ---------------------------------------------------------------------------- the local stack


def test_the_local_stack_deletes_what_has_expired_and_keeps_what_was_written_again(client: Any) -> None:
    store = DynamoUsageStore(client, SETTINGS.usage_table, state_ttl=TTL)
    ingest([(0, track("gone", "g", NOW)), (1, track("kept", "k1", NOW))], PLAN, store, NOW)
    later = NOW + timedelta(days=30)
    ingest([(0, track("kept", "k2", later))], PLAN, store, later)
    deleted = expire(client, NOW + TTL)
    assert deleted == 1
    assert set(store.load_users(["gone", "kept"])) == {"kept"}
    assert expire(client, NOW + TTL) == 0


def test_an_inactive_user_is_gone_from_the_local_stack_once_its_ttl_passed(tmp_path: Path) -> None:
    # Given the local stack with the shortest state TTL the template allows
    start = datetime.now(UTC).replace(microsecond=0)
    stack = LocalStack(
        clock=SimulatedClock(start),
        log_level="WARNING",
        parameter_overrides={"StateTtlDays": "30"},
    )
    inactive, active = (f"ttl-{uuid.uuid4().hex[:8]}" for _ in range(2))
    with LocalApiServer(stack) as server, stack, requests.Session() as http:

        def post(user: str) -> None:
            at = stack.clock.now().isoformat()
            body = {"userId": user, "event": "project_created", "timestamp": at}
            response = http.post(
                f"{server.base_url}/v1/track", json=body, auth=(DEFAULT_WRITE_KEY, ""), timeout=60
            )
            assert response.status_code == 200, response.text

        post(inactive)
        post(active)
        # When one of them comes back after 20 days, and the clock then moves past 30
        stack.advance_clock(start + timedelta(days=20))
        post(active)
        stack.advance_clock(start + timedelta(days=31))
        # Then the one inactive for 30 days is gone; the other stays
        assert set(stack.store.load_users([inactive, active])) == {active}
        # And the evaluator's record of it goes too: at its next re-check (the state is gone), or
        # 30 days after its last evaluation (its dormant transition) at the latest
        stack.advance_clock(start + timedelta(days=61))
        assert stack.segments.load([inactive])[inactive].version == 0
