"""Unsubscribe links and erasure through the real ingest handler on API Gateway v2 events, against
moto with both tables built from template.yaml."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import quote, urlencode

import boto3
import pytest
from moto import mock_aws

from bench.rollup_stream import RollupPump
from nudge import bootstrap
from nudge.adapters.dynamo.segments import DynamoSegmentStore
from nudge.bootstrap import api
from nudge.domain.suppression import address_key
from nudge.domain.tokens import make_token
from nudge.model.decisions import Decision
from nudge.model.ledger import Commit, Escalation, LedgerEntry
from nudge.model.segments import SegmentRecord
from nudge.services.erasure import ERASED
from nudge.settings import Settings
from nudge.tools.local.aws import create_usage_resources
from tests.integration.conftest import IngestContext, load_ingest_app

KEY = "wk-privacy-it"
ADMIN_KEY = "ak-privacy-it"  # erasure needs an admin key
SECRET = "privacy-integration-secret-0123456789"
USAGE_TABLE = "usage-privacy-it"
LEDGER_TABLE = "ledger-privacy-it"
SUPPRESSION_TABLE = "suppression-privacy-it"
KEYING = "privacy-integration-keying-secret"
ACCOUNT = "acct-privacy-it"


@pytest.fixture(scope="module")
def handler() -> Iterator[ModuleType]:
    with pytest.MonkeyPatch.context() as env, mock_aws():
        env.setenv("NUDGE_USAGE_TABLE", USAGE_TABLE)
        env.setenv("NUDGE_LEDGER_TABLE", LEDGER_TABLE)
        env.setenv("NUDGE_KEYS_PATH", "/nudge/it-privacy/keys")
        env.setenv("NUDGE_UNSUBSCRIBE_SECRET_PARAM", "/nudge/it-privacy/unsubscribe-secret")
        env.setenv("NUDGE_SUPPRESSION_TABLE", SUPPRESSION_TABLE)
        env.setenv("NUDGE_SUPPRESSION_SECRET_PARAM", "/nudge/it-privacy/suppression-secret")
        bootstrap.reset()
        settings = Settings()
        create_usage_resources(
            boto3.client("dynamodb"),
            boto3.client("ssm"),
            Path("template.yaml"),
            settings,
            [KEY],
            admin_keys=[ADMIN_KEY],
        )
        # As the operator stores it: the signing secret first, a retired one after it.
        boto3.client("ssm").put_parameter(
            Name=settings.unsubscribe_secret_param,
            Value=f"{SECRET},retired-secret-kept-for-old-links",
            Type="SecureString",
        )
        boto3.client("ssm").put_parameter(
            Name=settings.suppression_secret_param, Value=KEYING, Type="SecureString"
        )
        yield load_ingest_app("ingest_app_privacy_it")
        bootstrap.reset()


def event(
    method: str,
    path: str,
    query: dict[str, str] | None = None,
    *,
    key: str | None = None,
    body: Any = None,
    headers: dict[str, str] | None = None,
    path_parameters: dict[str, str] | None = None,
) -> dict[str, Any]:
    all_headers = {"content-type": "application/json", **(headers or {})}
    if key is not None:
        all_headers["authorization"] = "Basic " + base64.b64encode(f"{key}:".encode()).decode()
    evt: dict[str, Any] = {
        "version": "2.0",
        "routeKey": f"{method} {path}",
        "rawPath": path,
        "rawQueryString": urlencode(query or {}),
        "headers": all_headers,
        "requestContext": {
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "10.0.0.1"},
            "requestId": "r",
            "stage": "$default",
        },
        "isBase64Encoded": False,
    }
    if query:
        evt["queryStringParameters"] = query
    if path_parameters:
        evt["pathParameters"] = path_parameters
    if body is not None:
        evt["body"] = body if isinstance(body, str) else json.dumps(body)
    return evt


def call(handler: ModuleType, evt: dict[str, Any]) -> tuple[int, dict[str, str], str]:
    response = handler.handler(evt, IngestContext("req-privacy"))
    return response["statusCode"], response.get("headers") or {}, response.get("body") or ""


def uid() -> str:
    return f"it-{uuid.uuid4().hex[:8]}"


def token(user: str, scope: str = "email:onboarding", at: datetime | None = None) -> str:
    return make_token(SECRET.encode(), user, scope, at or datetime.now(UTC))


def items(table: str, pk: str) -> list[dict[str, Any]]:
    response = boto3.client("dynamodb").query(
        TableName=table,
        KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": pk}},
        ConsistentRead=True,
    )
    found: list[dict[str, Any]] = response["Items"]
    return found


def unsubscribed(user: str) -> set[str]:
    delivery = [i for i in items(LEDGER_TABLE, f"USER#{user}") if i["sk"]["S"] == "DELIVERY"]
    return set(delivery[0]["unsub"]["SS"]) if delivery else set()


def decision(decision_id: str, user: str, *, escalate: bool = False) -> Decision:
    return Decision(
        decision_id=decision_id,
        user=user,
        account=ACCOUNT,
        rule="rescue_account" if escalate else "finish_setup",
        kind="escalation" if escalate else "onboarding",
        action="escalate" if escalate else "email",
        channel="cs" if escalate else "email",
        template="t",
        priority=1,
        reason="test",
        facts={},
        decided_at=datetime.now(UTC),
    )


def seed_user(handler: ModuleType, user: str) -> None:
    """A user as the pipeline leaves them: usage state and segment record, a message decision in
    the ledger, an unsubscribe (the DELIVERY item)."""
    now = datetime.now(UTC)
    for path, body in (
        ("/v1/identify", {"userId": user, "traits": {"email": f"{user.partition('@')[0]}@acme.example"}}),
        ("/v1/group", {"userId": user, "groupId": ACCOUNT, "traits": {"name": "Acme"}}),
        ("/v1/track", {"userId": user, "event": "project_created"}),
    ):
        assert call(handler, event("POST", path, key=KEY, body=body))[0] == 200
    services = api.services()
    segments = DynamoSegmentStore(boto3.client("dynamodb"), USAGE_TABLE)
    segments.save(user, SegmentRecord(next_check_at=now + timedelta(days=1)), 0, now)
    entry = LedgerEntry(
        decision=decision(f"d-{user}", user), outcome="send", status="sent", recorded_at=now, updated_at=now
    )
    services.ledger.commit(Commit(user, None, 0, (entry,), frozenset()), now)
    services.ledger.unsubscribe(user, "sms", now)


def suppressed(key: str) -> dict[str, str]:
    """Scope -> reason of what the suppression table holds for an address key."""
    return {i["sk"]["S"]: i["reason"]["S"] for i in items(SUPPRESSION_TABLE, key)}


def test_a_links_get_asks_and_its_post_unsubscribes_the_user_and_the_address(handler: ModuleType) -> None:
    # Given a link naming the user and the key of the address the message went to
    user = uid()
    key = address_key([KEYING.encode()], "email", f"{user}@acme.example")
    assert key is not None
    link = {"token": make_token(SECRET.encode(), user, "email:onboarding", datetime.now(UTC), key)}

    # When it is opened: a page asks to confirm, and nothing is recorded (mail scanners open links)
    status, headers, page = call(handler, event("GET", "/v1/unsubscribe", link))
    assert status == 200
    assert headers["Content-Type"].startswith("text/html")
    assert "Unsubscribe from onboarding emails?" in page
    assert unsubscribed(user) == set()
    assert suppressed(key) == {}

    # When its button is pressed (the page's form POSTs the link back)
    form = {"content-type": "application/x-www-form-urlencoded", "accept": "text/html"}
    status, _, page = call(
        handler, event("POST", "/v1/unsubscribe", link, body="List-Unsubscribe=One-Click", headers=form)
    )

    # Then the user and the address are unsubscribed from the topic
    assert status == 200
    assert "unsubscribed from onboarding emails" in page
    assert unsubscribed(user) == {"email:onboarding"}
    assert suppressed(key) == {"email:onboarding": "unsubscribe"}


def test_a_tampered_link_is_400_and_unsubscribes_nobody(handler: ModuleType) -> None:
    user = uid()
    forged = make_token(b"someone-elses-secret-0123456789", user, "email:onboarding", datetime.now(UTC))

    status, _, page = call(handler, event("GET", "/v1/unsubscribe", {"token": forged}))

    assert status == 400
    assert "incomplete or has been changed" in page
    assert unsubscribed(user) == set()


def test_a_genuine_link_400_days_old_still_unsubscribes(handler: ModuleType) -> None:
    user = uid()
    old = token(user, at=datetime.now(UTC) - timedelta(days=400))

    status, _, body = call(handler, event("POST", "/v1/unsubscribe", {"token": old}))

    assert (status, json.loads(body)["scope"]) == (200, "email:onboarding")
    assert unsubscribed(user) == {"email:onboarding"}


def test_one_click_post_unsubscribes_and_twice_is_fine(handler: ModuleType) -> None:
    user = uid()
    one_click = event(
        "POST",
        "/v1/unsubscribe",
        {"token": token(user, "email:upgrade")},
        body="List-Unsubscribe=One-Click",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )

    first = call(handler, one_click)
    second = call(handler, one_click)

    assert first[0] == second[0] == 200
    assert (
        json.loads(first[2])
        == json.loads(second[2])
        == {
            "success": True,
            "scope": "email:upgrade",
            "errors": [],
        }
    )
    assert unsubscribed(user) == {"email:upgrade"}


def test_all_leaves_the_tokens_whole_channel(handler: ModuleType) -> None:
    user = uid()

    status, _, body = call(handler, event("POST", "/v1/unsubscribe", {"token": token(user), "all": "1"}))

    assert (status, json.loads(body)["scope"]) == (200, "email")
    assert unsubscribed(user) == {"email"}


def test_delete_needs_the_write_key(handler: ModuleType) -> None:
    user = uid()
    seed_user(handler, user)

    status, _, body = call(handler, event("DELETE", f"/v1/users/{user}", path_parameters={"userId": user}))

    assert status == 401
    assert json.loads(body)["errors"][0]["field"] == "authorization"
    assert len(items(USAGE_TABLE, f"USER#{user}")) == 2


def test_delete_erases_that_user_only_and_a_second_delete_answers_zeros(handler: ModuleType) -> None:
    # Given two users of one account, with state, segment record, ledger entry and unsubscribes,
    # and an open escalation the first raised for the account
    gone, kept = uid(), uid()
    seed_user(handler, gone)
    seed_user(handler, kept)
    now = datetime.now(UTC)
    esc = decision(f"esc-{uuid.uuid4().hex[:8]}", gone, escalate=True)  # ids are hashes, not names
    escalation = Escalation(decision_id=esc.decision_id, rule=esc.rule, user=gone, opened_at=now)
    entry = LedgerEntry(decision=esc, outcome="send", status="queued", recorded_at=now, updated_at=now)
    api.services().ledger.commit(Commit(gone, None, 0, (entry,), frozenset(), (ACCOUNT, escalation, 0)), now)
    assert len(items(USAGE_TABLE, f"USER#{gone}")) == 2  # STATE, SEGMENTS
    assert len(items(LEDGER_TABLE, f"USER#{gone}")) == 2  # DELIVERY, DECISION#
    # and the account's rollup, applied off the users' writes by the rollup function
    RollupPump(boto3.client("dynamodb"), boto3.client("dynamodbstreams"), USAGE_TABLE).pump()

    # When the first is erased
    erase = event("DELETE", f"/v1/users/{gone}", key=ADMIN_KEY, path_parameters={"userId": gone})
    status, _, body = call(handler, erase)

    # Then all their items are gone
    assert status == 200
    assert json.loads(body) == {
        "success": True,
        "deleted": {"usage": 2, "ledger": 2},
        "anonymized": 2,
        "merged_into": None,
    }
    assert items(USAGE_TABLE, f"USER#{gone}") == []
    assert items(LEDGER_TABLE, f"USER#{gone}") == []
    # the open escalation stays for CS, naming nobody
    account = {i["sk"]["S"]: i for i in items(LEDGER_TABLE, f"ACCOUNT#{ACCOUNT}")}
    kept_decision = account[f"DECISION#{esc.decision_id}"]
    assert kept_decision["user_id"]["S"] == ERASED
    assert json.loads(kept_decision["decision"]["S"])["user"] == ERASED
    assert json.loads(account["ESCALATION"]["esc"]["S"])["user"] == ERASED
    assert gone not in json.dumps(account)
    # the other user's items are untouched, and the account's rollups (counts) stay
    assert len(items(USAGE_TABLE, f"USER#{kept}")) == 2
    assert len(items(LEDGER_TABLE, f"USER#{kept}")) == 2
    assert unsubscribed(kept) == {"sms"}
    assert any(i["sk"]["S"].startswith("ROLLUP#") for i in items(USAGE_TABLE, f"ACCOUNT#{ACCOUNT}"))
    members = api.services().store.users_of_account(ACCOUNT)
    assert gone not in members
    assert kept in members

    # And a second erasure finds nothing left
    status, _, body = call(handler, erase)
    assert (status, json.loads(body)["deleted"]) == (200, {"usage": 0, "ledger": 0})


def test_a_link_to_an_id_later_aliased_away_unsubscribes_the_person(handler: ModuleType) -> None:
    # Given old was aliased into person, and person's delivery record already adopted old's
    old, person = uid(), uid()
    seed_user(handler, old)
    seed_user(handler, person)
    alias = {"previousId": old, "userId": person}
    assert call(handler, event("POST", "/v1/alias", key=KEY, body=alias))[0] == 200
    ledger = api.services().ledger
    ledger.adopt(person, [old], datetime.now(UTC))
    assert ledger.load(person, None, []).record.value.adopted == [old]

    # When the link of an email sent to old is used
    status, _, _ = call(handler, event("POST", "/v1/unsubscribe", {"token": token(old), "all": "1"}))

    # Then the person (whose record dispatch reads) is unsubscribed, and old too
    assert status == 200
    assert unsubscribed(person) == {"sms", "email"}
    assert unsubscribed(old) == {"sms", "email"}


def test_export_and_delete_of_an_id_aliased_away_cover_the_whole_person(handler: ModuleType) -> None:
    old, person = uid(), uid()
    seed_user(handler, old)
    seed_user(handler, person)
    alias = {"previousId": old, "userId": person}
    assert call(handler, event("POST", "/v1/alias", key=KEY, body=alias))[0] == 200

    # Export of the old id: the person's data, saying whose, with what each merged id holds
    path = f"/v1/users/{old}/export"
    status, _, body = call(handler, event("GET", path, key=ADMIN_KEY, path_parameters={"userId": old}))
    assert status == 200
    document = json.loads(body)
    assert (document["user_id"], document["merged_into"]) == (old, person)
    assert document["usage"]["user_id"] == person
    merged = {m["user_id"]: m for m in document["merged"]}
    assert old in merged
    assert [d["decision"]["decision_id"] for d in merged[old]["decisions"]] == [f"d-{old}"]
    assert merged[old]["delivery"]["unsubscribed"] == ["sms"]

    # Delete of the old id: the person goes, with every id merged into them
    erase = event("DELETE", f"/v1/users/{old}", key=ADMIN_KEY, path_parameters={"userId": old})
    status, _, body = call(handler, erase)
    assert status == 200
    assert json.loads(body)["merged_into"] == person
    for user in (old, person, f"anon:{old}"):
        assert items(USAGE_TABLE, f"USER#{user}") == []
        assert items(LEDGER_TABLE, f"USER#{user}") == []


def test_an_encoded_user_id_is_erased_by_its_decoded_name(handler: ModuleType) -> None:
    # API Gateway decodes path parameters; the local server passes them decoded too
    user = f"{uid()}@acme.example"
    seed_user(handler, user)
    path = f"/v1/users/{quote(user)}"

    status, _, body = call(handler, event("DELETE", path, key=ADMIN_KEY, path_parameters={"userId": user}))

    assert (status, json.loads(body)["deleted"]["usage"]) == (200, 2)
    assert items(USAGE_TABLE, f"USER#{user}") == []


def test_the_openapi_document_lists_the_new_routes(handler: ModuleType) -> None:
    status, _, body = call(handler, event("GET", "/v1/openapi.json"))

    assert status == 200
    paths = json.loads(body)["paths"]
    assert {"/v1/unsubscribe", "/v1/users/{userId}"} <= set(paths)
