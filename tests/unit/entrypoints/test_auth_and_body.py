"""Write keys (Basic, Bearer, rotation) and request bodies (limits, gzip, bombs)."""

from __future__ import annotations

import base64
import gzip
import json
from typing import Any

import pytest

from nudge.entrypoints.http.body import BodyError, as_json, normalize, take_body_key
from nudge.services.auth import KeysUnavailable, Unauthorized, WriteKeys, parse_keys, presented_key


def basic(key: str, password: str = "") -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{key}:{password}".encode()).decode()}


def test_the_key_is_read_from_basic_username_or_bearer() -> None:
    assert presented_key(basic("wk_1")) == "wk_1"
    assert presented_key({"authorization": "Bearer wk_2"}) == "wk_2"
    assert presented_key({"authorization": "Basic !!!"}) is None
    assert presented_key({"authorization": "Digest x"}) is None
    assert presented_key({}) is None


def test_every_live_key_is_accepted_during_rotation() -> None:
    keys = WriteKeys(lambda: "old-key, new-key")
    keys.check(basic("old-key"))
    keys.check({"Authorization": "Bearer new-key"})
    with pytest.raises(Unauthorized, match="unknown write key"):
        keys.check(basic("old-ke"))
    with pytest.raises(Unauthorized, match="missing write key"):
        keys.check({})


def test_the_body_key_counts_when_no_header_carries_one_and_a_header_key_wins() -> None:
    keys = WriteKeys(lambda: "live-key")
    keys.check({}, "live-key")
    with pytest.raises(Unauthorized, match="unknown write key"):
        keys.check({}, "dead-key")
    # A live header key is enough; a dead one is not saved by a live body key
    keys.check(basic("live-key"), "dead-key")
    with pytest.raises(Unauthorized, match="unknown write key"):
        keys.check(basic("dead-key"), "live-key")


def test_the_body_key_is_taken_out_of_the_body() -> None:
    body = {"type": "track", "userId": "u", "event": "login", "writeKey": "k\u00e9y"}
    out, key = take_body_key({"headers": {}, "body": json.dumps(body)})
    assert key == "k\u00e9y"
    assert json.loads(out["body"]) == {"type": "track", "userId": "u", "event": "login"}


@pytest.mark.parametrize(
    "body",
    [
        '{"type": "track", "event": "writeKey"}',  # named, but not as a key of the body
        '{"writeKey": 12}',  # not text
        '["writeKey"]',  # not an object
        '{"writeKey": "k"',  # not JSON: routing reports it
        "",
    ],
)
def test_a_body_without_a_usable_key_is_left_as_it_is(body: str) -> None:
    event = {"headers": {}, "body": body}
    assert take_body_key(event) == (event, None)


def test_every_declared_type_becomes_json_whatever_its_case() -> None:
    event = {"headers": {"Content-Type": "text/plain", "x-other": "1"}, "body": "{}"}
    assert as_json(event)["headers"] == {"x-other": "1", "content-type": "application/json"}


def test_keys_may_be_stored_as_a_json_list() -> None:
    assert parse_keys('["a", " b "]') == ["a", "b"]
    assert parse_keys("a,\nb,,") == ["a", "b"]


def test_a_failing_key_store_is_not_mistaken_for_a_bad_key() -> None:
    def broken() -> str:
        raise TimeoutError("ssm")

    with pytest.raises(KeysUnavailable):
        WriteKeys(broken).check(basic("k"))


def event(body: bytes, *, gz: bool = False) -> dict[str, Any]:
    payload = gzip.compress(body) if gz else body
    headers = {"content-encoding": "gzip"} if gz else {}
    return {"headers": headers, "body": base64.b64encode(payload).decode(), "isBase64Encoded": True}


def test_a_gzip_body_is_inflated_and_the_encoding_header_dropped() -> None:
    out = normalize(event(b'{"batch": []}', gz=True), 1000)
    assert out["body"] == '{"batch": []}'
    assert out["isBase64Encoded"] is False
    assert "content-encoding" not in out["headers"]


def test_a_gzip_bomb_stops_at_the_limit() -> None:
    with pytest.raises(BodyError) as caught:
        normalize(event(b"{" + b" " * 50_000_000 + b"}", gz=True), 500 * 1024)
    assert caught.value.status == 413


@pytest.mark.parametrize(
    ("evt", "status", "needle"),
    [
        ({"headers": {}, "body": "x" * 11, "isBase64Encoded": False}, 413, "limit is 10"),
        (
            {
                "headers": {"content-encoding": "gzip"},
                "body": base64.b64encode(b"nope").decode(),
                "isBase64Encoded": True,
            },
            400,
            "not valid gzip",
        ),
        (
            {"headers": {"content-encoding": "br"}, "body": "{}", "isBase64Encoded": False},
            415,
            "not supported",
        ),
        (
            {"headers": {}, "body": base64.b64encode(b"\xff\xfe").decode(), "isBase64Encoded": True},
            400,
            "not UTF-8",
        ),
        ({"headers": {}, "body": "%%%", "isBase64Encoded": True}, 400, "not valid base64"),
    ],
)
def test_bad_bodies_get_a_clear_status_and_reason(evt: dict[str, Any], status: int, needle: str) -> None:
    with pytest.raises(BodyError) as caught:
        normalize(evt, 10)
    assert caught.value.status == status
    assert needle in caught.value.message


def test_a_truncated_gzip_body_is_refused() -> None:
    data = gzip.compress(b'{"batch": [1, 2, 3]}')[:-8]
    with pytest.raises(BodyError, match=r"truncated|not valid gzip"):
        normalize(
            {
                "headers": {"content-encoding": "gzip"},
                "body": base64.b64encode(data).decode(),
                "isBase64Encoded": True,
            },
            1000,
        )
