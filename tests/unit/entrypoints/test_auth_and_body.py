"""API keys as requests carry them (Basic, Bearer, body, rotation) and request bodies (limits, gzip, bombs)."""

from __future__ import annotations

import base64
import gzip
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nudge.domain.keys import KeyKind, new_record
from nudge.entrypoints.http import body as body_module
from nudge.entrypoints.http.body import BodyError, as_json, json_depth, load_json, normalize, take_body_key
from nudge.model.numbers import MAX_SAFE_INTEGER
from nudge.services.auth import ApiKeys, KeysUnavailable, Unauthorized, presented_key

CREATED = datetime(2025, 1, 1, tzinfo=UTC)


def stored(*keys: str) -> ApiKeys:
    """Live server keys, stored as the SSM path holds them (key id -> record JSON)."""
    records = {
        f"k{i}": new_record(f"k{i}", KeyKind.SERVER, key, created_at=CREATED).to_json()
        for i, key in enumerate(keys)
    }
    return ApiKeys(lambda: records)


def basic(key: str, password: str = "") -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{key}:{password}".encode()).decode()}


def test_the_key_is_read_from_basic_username_or_bearer() -> None:
    assert presented_key(basic("wk_1")) == "wk_1"
    assert presented_key({"authorization": "Bearer wk_2"}) == "wk_2"
    assert presented_key({"authorization": "Basic !!!"}) is None
    assert presented_key({"authorization": "Digest x"}) is None
    assert presented_key({}) is None


def test_every_live_key_is_accepted_during_rotation() -> None:
    keys = stored("old-key", "new-key")
    assert keys.authenticate(basic("old-key")).key_id == "k0"
    assert keys.authenticate({"Authorization": "Bearer new-key"}).key_id == "k1"
    with pytest.raises(Unauthorized, match="unknown or revoked key"):
        keys.authenticate(basic("old-ke"))
    with pytest.raises(Unauthorized, match="missing write key"):
        keys.authenticate({})


def test_the_body_key_counts_when_no_header_carries_one_and_a_header_key_wins() -> None:
    keys = stored("live-key")
    keys.authenticate({}, "live-key")
    with pytest.raises(Unauthorized, match="unknown or revoked key"):
        keys.authenticate({}, "dead-key")
    # A live header key is enough; a dead one is not saved by a live body key
    keys.authenticate(basic("live-key"), "dead-key")
    with pytest.raises(Unauthorized, match="unknown or revoked key"):
        keys.authenticate(basic("dead-key"), "live-key")


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


def test_an_unreadable_record_is_skipped_and_the_others_still_work() -> None:
    good = new_record("good", KeyKind.SERVER, "live-key", created_at=CREATED).to_json()
    keys = ApiKeys(lambda: {"bad": "{not json", "good": good})
    assert keys.authenticate(basic("live-key")).key_id == "good"
    assert keys.load().unreadable == ("key bad: not JSON",)


def test_a_failing_key_store_is_not_mistaken_for_a_bad_key() -> None:
    def broken() -> dict[str, str]:
        raise TimeoutError("ssm")

    with pytest.raises(KeysUnavailable):
        ApiKeys(broken).authenticate(basic("k"))


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


def _depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    return 0


# Strings full of what the scanner must not take for structure: brackets, quotes, backslashes.
_TRICKY = st.text(alphabet='[]{}"\\\\ax', max_size=12)
_JSON = st.recursive(
    st.none() | st.integers() | _TRICKY,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_TRICKY, inner, max_size=3),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(_JSON)
def test_the_depth_scan_agrees_with_parsing_whatever_the_strings_hold(value: Any) -> None:
    assert json_depth(json.dumps(value)) == _depth(value)


def test_an_unclosed_string_of_escaped_quotes_is_scanned_once(monkeypatch: pytest.MonkeyPatch) -> None:
    # Once quadratic (a 16 KB body took seconds): now each structural character is visited once.
    class Counting:
        def __init__(self, pattern: re.Pattern[str]) -> None:
            self.pattern, self.visited = pattern, 0

        def finditer(self, text: str) -> Iterator[re.Match[str]]:
            for found in self.pattern.finditer(text):
                self.visited += 1
                yield found

    counting = Counting(body_module._STRUCTURE)
    monkeypatch.setattr(body_module, "_STRUCTURE", counting)
    text = '{"a": "' + '\\"' * 100_000 + "[[["

    assert json_depth(text) == 1
    assert counting.visited == sum(text.count(c) for c in '"\\[]{}')


def test_a_number_python_cannot_read_is_read_as_one_past_the_safe_range_and_the_rest_as_json_reads_it() -> (
    None
):
    huge = "9" * 5000
    text = f'{{"a": {huge}, "b": [-{huge}, 12, 1.5, "{huge}"], "c": NaN}}'
    with pytest.raises(ValueError, match="4300"):
        json.loads(text)  # what Python's json does: not a JSON error, once a 500

    read = load_json(text)

    assert read["a"] == MAX_SAFE_INTEGER + 1
    assert read["b"] == [-(MAX_SAFE_INTEGER + 1), 12, 1.5, huge]
    assert read["c"] != read["c"]  # NaN, as json reads it: the message validation refuses it
    # Not JSON stays a JSON error (routing says "body is not valid JSON")
    with pytest.raises(json.JSONDecodeError):
        load_json('{"a": ' + huge)
    # The body's write key is still found in such a body
    event = {"headers": {}, "body": f'{{"writeKey": "wk", "batch": [{{"n": {huge}}}]}}'}
    rest, key = take_body_key(event)
    assert key == "wk"
    assert load_json(rest["body"]) == {"batch": [{"n": MAX_SAFE_INTEGER + 1}]}
