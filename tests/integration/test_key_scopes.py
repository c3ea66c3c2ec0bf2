"""Key kinds on the real ingest handler, against moto: records read from the SSM path, CORS per key,
sensitive traits from client keys, the rate limit on DynamoDB, revocation."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import pytest
from aws_lambda_powertools.utilities import parameters
from moto import mock_aws

from nudge import bootstrap
from nudge.bootstrap import api
from nudge.domain.keys import KeyKind, KeyRecord, new_record, user_token
from nudge.settings import Settings
from nudge.tools.keys import create_key, delete_record, put_record
from nudge.tools.local.aws import create_usage_resources
from tests.integration.conftest import IngestContext, load_ingest_app

SERVER = "sk-scopes"
CLIENT = "ck-scopes"
ADMIN = "ak-scopes"
SHOP = "https://shop.example.com"
SECRET = "user-token-secret-for-scopes"
KEYS_PATH = "/nudge/it-scopes/keys"


@pytest.fixture(scope="module")
def handler() -> Iterator[ModuleType]:
    with pytest.MonkeyPatch.context() as env, mock_aws():
        env.setenv("NUDGE_USAGE_TABLE", "usage-scopes")
        env.setenv("NUDGE_RATE_LIMIT_TABLE", "rates-scopes")
        env.setenv("NUDGE_KEYS_PATH", KEYS_PATH)
        env.setenv("NUDGE_USER_TOKEN_SECRET_PARAM", "/nudge/it-scopes/user-token-secret")
        bootstrap.reset()
        parameters.clear_caches()  # type: ignore[no-untyped-call]
        settings = Settings()
        ssm = boto3.client("ssm")
        create_usage_resources(
            boto3.client("dynamodb"),
            ssm,
            Path("template.yaml"),
            settings,
            [SERVER],
            client_keys=[CLIENT],
            admin_keys=[ADMIN],
            client_origins=[SHOP],
        )
        ssm.put_parameter(Name=settings.user_token_secret_param, Value=SECRET, Type="SecureString")
        yield load_ingest_app("ingest_app_scopes")
        bootstrap.reset()
        parameters.clear_caches()  # type: ignore[no-untyped-call]


@pytest.fixture
def new_key(handler: ModuleType) -> Iterator[Callable[..., tuple[str, KeyRecord]]]:
    """Makes keys for one test and deletes them after it: a client key left behind for any origin
    would grant the preflights of the tests after it."""
    ssm = boto3.client("ssm")
    made: list[str] = []

    def make(kind: KeyKind, **fields: Any) -> tuple[str, KeyRecord]:
        key, record = create_key(ssm, KEYS_PATH, kind, now=datetime.now(UTC), **fields)
        made.append(record.key_id)
        parameters.clear_caches()  # type: ignore[no-untyped-call]
        return key, record

    yield make
    for key_id in made:
        delete_record(ssm, KEYS_PATH, key_id)
    parameters.clear_caches()  # type: ignore[no-untyped-call]


def request(
    method: str,
    path: str,
    body: Any = None,
    *,
    key: str | None = None,
    origin: str | None = None,
    body_key: str | None = None,
) -> dict[str, Any]:
    headers = {"content-type": "text/plain"}
    if key is not None:
        headers["authorization"] = "Basic " + base64.b64encode(f"{key}:".encode()).decode()
    if origin is not None:
        headers["origin"] = origin
    if body_key is not None:
        body = {**body, "writeKey": body_key}
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": f"{method} {path}",
        "rawPath": path,
        "rawQueryString": "",
        "headers": headers,
        "requestContext": {
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "10.0.0.1"},
            "requestId": "r",
            "stage": "$default",
        },
        "isBase64Encoded": False,
    }
    if body is not None:
        event["body"] = json.dumps(body)
    return event


def call(handler: ModuleType, event: dict[str, Any]) -> tuple[int, dict[str, str], dict[str, Any]]:
    response = handler.handler(event, IngestContext("req-scopes"))
    text = response.get("body") or ""
    return response["statusCode"], response.get("headers") or {}, json.loads(text) if text else {}


def user(uid: str) -> Any:
    return api.services().store.load_users([uid])[uid].value


def track(uid: str) -> dict[str, Any]:
    return {"userId": uid, "event": "login", "timestamp": datetime.now(UTC).isoformat()}


def test_a_client_key_in_the_body_from_an_allowed_origin_is_granted_that_origin(handler: ModuleType) -> None:
    status, headers, body = call(
        handler, request("POST", "/v1/t", track("sc-1"), body_key=CLIENT, origin=SHOP)
    )

    assert (status, body["accepted"]) == (200, 1)
    assert headers["Access-Control-Allow-Origin"] == SHOP
    assert headers["Vary"] == "Origin"
    assert "x-ratelimit-reset" in headers["Access-Control-Expose-Headers"]


def test_an_origin_the_client_key_does_not_list_is_refused_without_a_grant(handler: ModuleType) -> None:
    status, headers, body = call(
        handler, request("POST", "/v1/t", track("sc-2"), body_key=CLIENT, origin="https://evil.example")
    )

    assert status == 403
    assert "Access-Control-Allow-Origin" not in headers
    assert "https://evil.example" in body["errors"][0]["message"]
    assert "sc-2" not in api.services().store.load_users(["sc-2"])


def test_a_server_key_used_from_a_page_is_refused(handler: ModuleType) -> None:
    status, headers, body = call(
        handler, request("POST", "/v1/track", track("sc-3"), key=SERVER, origin=SHOP)
    )

    assert status == 403
    assert "Access-Control-Allow-Origin" not in headers
    assert "client key" in body["errors"][0]["message"]


@pytest.mark.parametrize(("key", "body_key"), [("not-a-key", None), (None, "not-a-key"), (None, None)])
def test_a_wrong_or_missing_key_in_header_or_body_is_401(
    handler: ModuleType, key: str | None, body_key: str | None
) -> None:
    status, _, _ = call(handler, request("POST", "/v1/track", track("sc-4"), key=key, body_key=body_key))

    assert status == 401


def test_a_preflight_is_granted_for_an_origin_some_client_key_allows(handler: ModuleType) -> None:
    status, headers, _ = call(handler, request("OPTIONS", "/v1/b", origin=SHOP))

    assert status == 204
    assert headers["Access-Control-Allow-Origin"] == SHOP
    assert "POST" in headers["Access-Control-Allow-Methods"]
    assert "Content-Encoding" in headers["Access-Control-Allow-Headers"]
    assert int(headers["Access-Control-Max-Age"]) > 0


@pytest.mark.parametrize(("path", "origin"), [("/v1/b", "https://evil.example"), ("/v1/users/u1", SHOP)])
def test_a_preflight_is_refused_for_other_origins_and_for_admin_routes(
    handler: ModuleType, path: str, origin: str
) -> None:
    status, headers, _ = call(handler, request("OPTIONS", path, origin=origin))

    assert status == 403
    assert "Access-Control-Allow-Origin" not in headers


def test_a_client_identify_without_a_token_drops_and_names_sensitive_traits(handler: ModuleType) -> None:
    identify = {
        "userId": "sc-5",
        "traits": {"email": "ceo@acme.example", "plan": "pro", "consent": {"email": True}},
    }

    status, _, body = call(handler, request("POST", "/v1/identify", identify, key=CLIENT))

    assert (status, body["success"], body["accepted"]) == (200, True, 1)
    assert [(w["index"], w["field"]) for w in body["warnings"]] == [
        (0, "traits.consent"),
        (0, "traits.email"),
    ]
    assert "user token" in body["warnings"][0]["message"]
    assert set(user("sc-5").traits) == {"plan"}


def test_a_client_identify_with_the_users_token_sets_them_and_the_token_is_not_kept(
    handler: ModuleType,
) -> None:
    identify = {
        "userId": "sc-6",
        "traits": {"email": "sc6@acme.example"},
        "context": {"userToken": user_token(SECRET.encode(), "sc-6"), "timezone": "Europe/Paris"},
    }

    status, _, body = call(handler, request("POST", "/v1/i", identify, key=CLIENT))

    assert (status, body["warnings"]) == (200, [])
    state = user("sc-6")
    assert state.traits["email"].v == "sc6@acme.example"
    assert "userToken" not in json.dumps(state.model_dump(mode="json"))


def test_a_server_key_sets_sensitive_traits_without_a_token(handler: ModuleType) -> None:
    identify = {"userId": "sc-7", "traits": {"email": "sc7@acme.example"}}

    status, _, body = call(handler, request("POST", "/v1/identify", identify, key=SERVER))

    assert (status, body["warnings"]) == (200, [])
    assert user("sc-7").traits["email"].v == "sc7@acme.example"


def test_an_ingest_key_calling_erasure_or_export_is_403_and_an_admin_key_may(handler: ModuleType) -> None:
    call(handler, request("POST", "/v1/track", track("sc-8"), key=SERVER))

    assert call(handler, request("GET", "/v1/users/sc-8/export", key=SERVER))[0] == 403
    assert call(handler, request("DELETE", "/v1/users/sc-8", key=CLIENT))[0] == 403
    status, _, body = call(handler, request("GET", "/v1/users/sc-8/export", key=ADMIN))
    assert (status, body["usage"]["events"]["login"]["count"]) == (200, 1)


def test_a_client_key_over_its_rate_limit_gets_429_with_when_to_retry(
    handler: ModuleType, new_key: Callable[..., tuple[str, KeyRecord]]
) -> None:
    # Given a client key allowed 1 message a second (10 per window)
    key, _ = new_key(KeyKind.CLIENT, origins=["*"], rate_limit=1)
    batch = {"batch": [{"type": "track", **track("sc-9")} for _ in range(10)]}

    # When it sends a window's worth of messages, then more (again, if a window ended in between)
    first = call(handler, request("POST", "/v1/batch", batch, key=key, origin=SHOP))
    for _ in range(3):
        second = call(handler, request("POST", "/v1/batch", batch, key=key, origin=SHOP))
        if second[0] != 200:
            break

    # Then the first is kept and the next refused with Retry-After and x-ratelimit-reset, readable by the page
    assert first[0] == 200
    assert second[0] == 429
    assert 1 <= int(second[1]["Retry-After"]) <= 10
    assert second[1]["x-ratelimit-reset"] == second[1]["Retry-After"]
    assert second[1]["Access-Control-Allow-Origin"] == SHOP


def test_a_batch_over_a_whole_window_passes_into_an_empty_window_only(
    handler: ModuleType, new_key: Callable[..., tuple[str, KeyRecord]]
) -> None:
    # Given a client key allowed 10 messages per window, and a mobile SDK's batch of 20
    key, _ = new_key(KeyKind.CLIENT, origins=["*"], rate_limit=1)
    batch = {"batch": [{"type": "track", **track("sc-12")} for _ in range(20)]}

    # When it is sent, then again (and again, if the first landed at a window's end)
    statuses = [call(handler, request("POST", "/v1/batch", batch, key=key))[0] for _ in range(3)]

    # Then it lands (never refused forever, as it would be if only budgets that fit passed), and
    # having filled its window the next is refused until the window turns
    assert statuses[0] == 200
    assert 429 in statuses[1:]


def test_a_failing_rate_limiter_lets_client_traffic_through(
    handler: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NUDGE_RATE_LIMIT_TABLE", "no-such-table")
    counter = api.services().rate_counter
    # The shared count behind the container's leases (services.rate_limit.LeasedRateCounter).
    monkeypatch.setattr(counter.shared, "_table", "no-such-table")

    status, _, _ = call(handler, request("POST", "/v1/track", track("sc-10"), key=CLIENT))

    assert status == 200


def test_a_revoked_key_is_refused_once_the_cache_expires(
    handler: ModuleType, new_key: Callable[..., tuple[str, KeyRecord]]
) -> None:
    # Given a new server key that works
    ssm = boto3.client("ssm")
    key, record = new_key(KeyKind.SERVER, label="rotating")
    assert call(handler, request("POST", "/v1/track", track("sc-11"), key=key))[0] == 200

    # When it is revoked and the key cache's max age has passed (cleared here: no waiting)
    assert delete_record(ssm, KEYS_PATH, record.key_id)
    parameters.clear_caches()  # type: ignore[no-untyped-call]

    # Then it is refused, and the other keys still work
    assert call(handler, request("POST", "/v1/track", track("sc-11"), key=key))[0] == 401
    assert call(handler, request("POST", "/v1/track", track("sc-11"), key=SERVER))[0] == 200


def test_an_unreadable_record_does_not_lock_out_the_other_keys(handler: ModuleType) -> None:
    ssm = boto3.client("ssm")
    ssm.put_parameter(Name=f"{KEYS_PATH}/broken", Value="{oops", Type="SecureString")
    put_record(ssm, KEYS_PATH, new_record("extra", KeyKind.SERVER, "extra-key", created_at=datetime.now(UTC)))
    parameters.clear_caches()  # type: ignore[no-untyped-call]
    try:
        assert call(handler, request("POST", "/v1/track", track("sc-13"), key="extra-key"))[0] == 200
    finally:
        # Neither record stays for the tests after this one.
        ssm.delete_parameter(Name=f"{KEYS_PATH}/broken")
        delete_record(ssm, KEYS_PATH, "extra")
        parameters.clear_caches()  # type: ignore[no-untyped-call]


def test_a_client_alias_cannot_merge_a_known_user_and_a_server_alias_can(handler: ModuleType) -> None:
    # Given a known user with an email their product's server set, and another user
    victim = {"userId": "sc-victim", "traits": {"email": "victim@acme.example", "plan": "pro"}}
    assert call(handler, request("POST", "/v1/identify", victim, key=SERVER))[0] == 200
    assert call(handler, request("POST", "/v1/track", track("sc-attacker"), key=CLIENT))[0] == 200
    before = user("sc-victim")

    # When the (public) client key aliases the victim into the other user, or the other way round
    alias = {"previousId": "sc-victim", "userId": "sc-attacker"}
    status, _, body = call(handler, request("POST", "/v1/alias", alias, key=CLIENT))
    reverse = {"previousId": "sc-attacker", "userId": "sc-victim"}
    reverse_status, _, _ = call(handler, request("POST", "/v1/alias", reverse, key=CLIENT))

    # Then neither known user merges: the victim's profile is theirs, not a pointer, and the answer says why
    assert (status, body["accepted"], reverse_status) == (200, 1, 200)
    assert [(w["index"], w["field"]) for w in body["warnings"]] == [(0, "previousId")]
    assert "a client key may only alias an anonymousId" in body["warnings"][0]["message"]
    after = user("sc-victim")
    assert after.merged_into is None
    assert after.traits == before.traits
    assert after.event_counts == before.event_counts
    assert "sc-attacker" not in after.merged
    assert "sc-victim" not in user("sc-attacker").merged
    assert user("sc-attacker").merged_into is None

    # While the same alias from the server merges the victim into the other user
    status, _, body = call(handler, request("POST", "/v1/alias", alias, key=SERVER))
    assert (status, body["warnings"]) == (200, [])
    assert user("sc-victim").merged_into == "sc-attacker"
    assert user("sc-attacker").traits["email"].v == "victim@acme.example"
