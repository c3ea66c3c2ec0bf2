"""The real ingest handler on API Gateway v2 events, against moto with tables from template.yaml."""

from __future__ import annotations

import base64
import gzip
import importlib.util
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import pytest
from moto import mock_aws

from bench.rollup_stream import RollupPump
from nudge import bootstrap
from nudge.bootstrap import api
from nudge.settings import Settings
from nudge.tools.local.aws import create_usage_resources

KEY = "wk-integration"
NOW = datetime.now(UTC)


class Context:
    function_name = "ingest"
    memory_limit_in_mb = 256
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:ingest"
    aws_request_id = "req-1"


@pytest.fixture(scope="module")
def handler(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModuleType]:
    with pytest.MonkeyPatch.context() as env, mock_aws():
        env.setenv("NUDGE_USAGE_TABLE", "usage-it")
        env.setenv("NUDGE_KEYS_PATH", "/nudge/it/keys")
        bootstrap.reset()
        create_usage_resources(
            boto3.client("dynamodb"), boto3.client("ssm"), Path("template.yaml"), Settings(), [KEY, "wk-next"]
        )
        spec = importlib.util.spec_from_file_location("ingest_app_it", "functions/ingest/app.py")
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        yield module
        bootstrap.reset()


def request(
    path: str, body: Any, *, key: str | None = KEY, gz: bool = False, raw: bytes | None = None
) -> dict[str, Any]:
    data = raw if raw is not None else json.dumps(body).encode()
    headers = {"content-type": "application/json"}
    if key is not None:
        headers["authorization"] = "Basic " + base64.b64encode(f"{key}:".encode()).decode()
    if gz:
        data = gzip.compress(data)
        headers["content-encoding"] = "gzip"
    encoded = gz or raw is not None
    return {
        "version": "2.0",
        "routeKey": f"POST {path}",
        "rawPath": path,
        "rawQueryString": "",
        "headers": headers,
        "requestContext": {
            "http": {"method": "POST", "path": path, "protocol": "HTTP/1.1", "sourceIp": "10.0.0.1"},
            "requestId": "r",
            "stage": "$default",
        },
        "body": base64.b64encode(data).decode() if encoded else data.decode(),
        "isBase64Encoded": encoded,
    }


def call(handler: ModuleType, event: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    response = handler.handler(event, Context())
    return response["statusCode"], json.loads(response["body"])


def ts(hours_ago: float = 1) -> str:
    return (NOW - timedelta(hours=hours_ago)).isoformat()


def user(uid: str) -> Any:
    return api.services().store.load_users([uid])[uid].value


def test_a_batch_keeps_valid_messages_and_names_each_bad_field(handler: ModuleType) -> None:
    batch = {
        "batch": [
            {
                "type": "track",
                "userId": "it-1",
                "event": "project_created",
                "timestamp": ts(),
                "messageId": "a",
            },
            {"type": "track", "userId": "it-1", "timestamp": ts()},
            {"type": "identify", "userId": "it-1", "traits": {"email": "not-an-email"}},
            {"type": "group", "userId": "it-1"},
            {"type": "track", "event": "login"},
            {"type": "subscribe", "userId": "it-1"},
            {"type": "alias", "userId": "it-1"},
        ]
    }
    status, body = call(handler, request("/v1/batch", batch))
    assert status == 400
    assert body["accepted"] == 1
    assert [(e["index"], e["field"]) for e in body["errors"]] == [
        (1, "event"),
        (2, "traits.email"),
        (3, "groupId"),
        (4, "userId"),
        (5, "type"),
        (6, "previousId"),
    ]
    assert user("it-1").event_counts == {"project_created": 1}


def test_a_missing_user_is_reported_on_the_message(handler: ModuleType) -> None:
    status, body = call(handler, request("/v1/track", {"event": "login"}))
    assert status == 400
    assert "userId or anonymousId" in body["errors"][0]["message"]


def test_identify_group_and_track_fold_into_user_and_account_state(handler: ModuleType) -> None:
    calls = [
        (
            "/v1/identify",
            {"userId": "it-2", "traits": {"email": "it2@acme.example", "timezone": "Europe/Paris"}},
        ),
        (
            "/v1/group",
            {"userId": "it-2", "groupId": "acme-it", "traits": {"name": "Acme", "mrr": 900, "seats": 12}},
        ),
        ("/v1/track", {"userId": "it-2", "event": "teammate_invited", "timestamp": ts()}),
    ]
    for path, body in calls:
        assert call(handler, request(path, body))[0] == 200
    state = user("it-2")
    assert state.trait_values() == {"email": "it2@acme.example", "timezone": "Europe/Paris"}
    assert state.account_id == "acme-it"
    store = api.services().store
    account = store.load_account("acme-it")
    assert account is not None
    assert account.value.trait_values()["mrr"] == 900
    # The rollup is applied off the user's write, by the rollup function from the table's stream.
    RollupPump(boto3.client("dynamodb"), boto3.client("dynamodbstreams"), Settings().usage_table).pump()
    assert store.load_rollup("acme-it").feature_adopters == {"collaboration": 1}


def test_a_gzip_batch_posted_twice_counts_once(handler: ModuleType) -> None:
    batch = {
        "batch": [
            {
                "type": "track",
                "userId": f"it-3-{i % 4}",
                "event": "login",
                "timestamp": ts(),
                "messageId": f"g{i}",
            }
            for i in range(40)
        ]
    }
    assert call(handler, request("/v1/batch", batch, gz=True)) == (
        200,
        {"success": True, "accepted": 40, "errors": [], "warnings": []},
    )
    before = {u: user(f"it-3-{u}") for u in range(4)}
    assert call(handler, request("/v1/batch", batch, gz=True))[0] == 200
    assert {u: user(f"it-3-{u}") for u in range(4)} == before
    assert before[0].event_counts == {"login": 10}


@pytest.mark.parametrize(
    ("event", "status", "field"),
    [
        (request("/v1/track", {"userId": "x", "event": "login"}, key=None), 401, "authorization"),
        (request("/v1/track", {"userId": "x", "event": "login"}, key="wrong"), 401, "authorization"),
        (request("/v1/track", None, raw=b"{not json"), 400, "body"),
        (request("/v1/track", [1, 2]), 400, "body"),
        (request("/v1/track", {"userId": "x", "event": "login", "timestamp": "yesterday"}), 400, "timestamp"),
        (request("/v1/track", {"userId": "x", "event": "login", "timestamp": ts(-48)}), 400, "timestamp"),
        (
            request("/v1/track", {"userId": "x", "event": "login", "timestamp": ts(24 * 400)}),
            400,
            "timestamp",
        ),
        (
            request("/v1/identify", {"userId": "x", "traits": {"timezone": "Mars/Olympus"}}),
            400,
            "traits.timezone",
        ),
        (request("/v1/group", {"userId": "x", "groupId": "g", "traits": {"mrr": -5}}), 400, "traits.mrr"),
        (
            request("/v1/track", {"userId": "x", "event": "login", "properties": {"p": "x" * 40_000}}),
            413,
            "body",
        ),
        (request("/v1/batch", {"batch": "nope"}), 400, "batch"),
        (request("/v1/batch", {}), 400, "batch"),
        (request("/v1/track", None, raw=b"\xff\xfe\x00"), 400, "body"),
    ],
)
def test_malformed_requests_get_4xx_naming_the_field(
    handler: ModuleType, event: dict[str, Any], status: int, field: str
) -> None:
    got, body = call(handler, event)
    assert got == status
    assert body["errors"][0]["field"] == field


def test_a_rotated_key_is_accepted_alongside_the_old_one(handler: ModuleType) -> None:
    assert call(handler, request("/v1/track", {"userId": "it-4", "event": "login"}, key="wk-next"))[0] == 200


def test_the_openapi_document_describes_the_message_shapes(handler: ModuleType) -> None:
    event = request("/v1/openapi.json", None, key=None)
    event.update(routeKey="GET /v1/openapi.json", body=None, isBase64Encoded=False)
    event["requestContext"]["http"]["method"] = "GET"
    status, doc = call(handler, event)
    assert status == 200
    assert set(doc["paths"]) >= {"/v1/track", "/v1/identify", "/v1/group", "/v1/batch"}
    schemas = doc["components"]["schemas"]
    assert "event" in schemas["Track"]["required"]
    assert "groupId" in schemas["Group"]["required"]


def _batch_text(*messages: str) -> bytes:
    """A /v1/batch body from message texts: raw JSON, so numbers stay the literals written."""
    return ('{"batch": [' + ",".join(messages) + "]}").encode()


def _track_text(uid: str, mid: str, properties: str) -> str:
    return (
        f'{{"type": "track", "userId": "{uid}", "event": "login", "messageId": "{mid}", '
        f'"timestamp": "{ts()}", "properties": {properties}}}'
    )


def test_a_number_too_long_to_read_is_refused_with_its_message_only(handler: ModuleType) -> None:
    # Python's json refuses integers over 4,300 digits with a ValueError: once a 500, then a 400
    # for the whole body. Now the message holding one is refused, naming the field; the rest stay.
    huge = "9" * 5000
    raw = _batch_text(
        _track_text("it-huge", "h1", f'{{"n": {huge}}}'),
        _track_text("it-huge", "h2", '{"n": 7}'),
        _track_text("it-huge", "h3", f'{{"list": [1, -{huge}]}}'),
    )

    status, body = call(handler, request("/v1/batch", None, raw=raw))

    assert status == 400
    assert body["accepted"] == 1
    assert [(e["index"], e["field"]) for e in body["errors"]] == [
        (0, "properties.n"),
        (2, "properties.list.1"),
    ]
    assert "beyond ±9,007,199,254,740,991" in body["errors"][0]["message"]
    assert user("it-huge").event_counts == {"login": 1}
    # Alone on /v1/track: a 400 naming the field, never a 5xx
    single = f'{{"userId": "it-huge", "event": "login", "properties": {{"n": {huge}}}}}'.encode()
    status, body = call(handler, request("/v1/track", None, raw=single))
    assert (status, body["errors"][0]["field"]) == (400, "properties.n")


@pytest.mark.parametrize(
    ("literal", "problem"),
    [
        ("NaN", "not a finite number"),
        ("Infinity", "not a finite number"),
        ("-Infinity", "not a finite number"),
        ("1e400", "not a finite number"),  # json reads it as infinity
        ("9007199254740992", "integer beyond"),  # 2^53
        ("-9007199254740993", "integer beyond"),
        ("123456789012345678901234567890", "integer beyond"),
    ],
)
def test_numbers_no_reader_keeps_are_refused_per_message_naming_the_field(
    handler: ModuleType, literal: str, problem: str
) -> None:
    uid = "it-num-" + literal.replace("-", "m")[:40]
    raw = _batch_text(
        _track_text(uid, f"{uid}-ok", '{"amount": 9007199254740991, "ratio": 1e-300, "big": 1.5e300}'),
        _track_text(uid, f"{uid}-bad", f'{{"nested": {{"value": {literal}}}}}'),
    )

    status, body = call(handler, request("/v1/batch", None, raw=raw))

    assert status == 400
    assert body["accepted"] == 1
    [error] = body["errors"]
    assert (error["index"], error["field"]) == (1, "properties.nested.value")
    assert problem in error["message"]
    assert user(uid).event_counts == {"login": 1}


def test_account_traits_beyond_the_documented_range_are_refused_naming_the_field(handler: ModuleType) -> None:
    # The case: an mrr of 1e19 or seats of 1e20 was accepted, and then every user of the
    # account failed evaluation for good.
    group = '{{"type": "group", "userId": "it-acct", "groupId": "{g}", "messageId": "{m}", "traits": {t}}}'
    raw = _batch_text(
        group.format(g="acme-big", m="g1", t='{"name": "Big", "mrr": 1e19}'),
        group.format(g="acme-big", m="g2", t='{"seats": 100000000000000000000}'),
        group.format(g="acme-big", m="g3", t='{"seats": 1e20}'),
        group.format(g="acme-big", m="g4", t='{"plan": "team", "mrr": 9007199254740991, "seats": 40}'),
    )

    status, body = call(handler, request("/v1/batch", None, raw=raw))

    assert status == 400
    assert body["accepted"] == 1
    assert [(e["index"], e["field"]) for e in body["errors"]] == [
        (0, "traits.mrr"),
        (1, "traits.seats"),
        (2, "traits.seats"),
    ]
    assert all("range of a numeric trait" in e["message"] for e in body["errors"])
    account = api.services().store.load_account("acme-big")
    assert account is not None
    assert account.value.trait_values() == {"plan": "team", "mrr": 9007199254740991, "seats": 40}
