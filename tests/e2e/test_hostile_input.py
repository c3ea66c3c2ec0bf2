"""Hostile input over HTTP: the edges the fuzzer (tests/e2e/test_fuzz_api.py) leaves out, and what it
found.

Covered elsewhere, not repeated here: oversized, gzip-bomb, non-UTF-8 and deeply nested bodies and
wrong/missing/rotated keys (tests/e2e/test_local_stack.py, tests/unit/entrypoints/test_auth_and_body.py),
header injection through traits (tests/unit/services/test_deliver.py, tests/unit/domain/test_render.py),
tampered unsubscribe tokens and old genuine ones (tests/integration/test_unsubscribe_erasure.py)."""

from __future__ import annotations

import base64
import gzip
import json
import uuid
from typing import TYPE_CHECKING, Any

import pytest

from nudge.entrypoints.http.body import MAX_JSON_DEPTH

if TYPE_CHECKING:
    from tests.e2e.conftest import Api

BATCH_LIMIT = 500 * 1024


def basic(key: str) -> dict[str, str]:
    """Segment's way: the write key is the Basic username, the password empty."""
    return {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}


# Found by schemathesis: Powertools' validation middleware parsed a multipart/form-data body before
# the route ran, and a Content-Type without a boundary raised ValueError: a 500. The Segment routes
# now read every body as the JSON it is, whatever the declared type (as Segment's servers do), so
# no form parser runs: the body is judged as JSON.
@pytest.mark.parametrize("path", ["/v1/track", "/v1/identify", "/v1/group", "/v1/batch"])
def test_multipart_without_a_boundary_is_read_as_json_not_a_500(api: Api, uid: str, path: str) -> None:
    body = {"userId": uid, "event": "login", "groupId": "acme", "traits": {}, "batch": []}
    response = api.post(path, data=json.dumps(body).encode(), headers={"Content-Type": "multipart/form-data"})
    assert response.status_code == 200, response.text
    # ...and a form body that is not JSON is a 400 naming the body, still never a 500
    form = api.post(path, data=b"a=1&b=2", headers={"Content-Type": "multipart/form-data"})
    assert form.status_code == 400, form.text


# Found by schemathesis: the local HTTP server had no handler for TRACE (nor QUERY), so http.server
# answered 501 where API Gateway, and this server for other methods, answer 404 JSON.
@pytest.mark.parametrize("method", ["TRACE", "QUERY"])
def test_undeclared_methods_get_404_json_not_501(api: Api, method: str) -> None:
    response = api.session.request(method, f"{api.base_url}/v1/track", timeout=30)
    assert response.status_code == 404
    assert "message" in response.json()


def test_an_oversized_batch_is_refused_with_the_limit_in_the_message(api: Api) -> None:
    body = json.dumps({"batch": [], "pad": "x" * (BATCH_LIMIT + 1)}).encode()
    response = api.post("/v1/batch", data=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 413
    [error] = response.json()["errors"]
    assert error["field"] == "body"
    assert f"{len(body)} bytes" in error["message"]
    assert "limit" in error["message"]


def test_a_small_gzip_that_inflates_past_the_limit_is_refused(api: Api) -> None:
    bomb = gzip.compress(b'{"batch": [' + b" " * (4 * BATCH_LIMIT) + b"]}")
    assert len(bomb) < 10_000
    response = api.post("/v1/batch", data=bomb, headers={"Content-Encoding": "gzip"})
    assert response.status_code == 413
    assert "inflates past the limit" in response.json()["errors"][0]["message"]


def test_a_gzip_body_that_is_not_utf8_is_refused(api: Api) -> None:
    body = gzip.compress(b'{"batch": [{"type": "track", "userId": "\xc3\x28", "event": "x"}]}')
    response = api.post("/v1/batch", data=body, headers={"Content-Encoding": "gzip"})
    assert response.status_code == 400
    assert "not UTF-8" in response.json()["errors"][0]["message"]


def _nested(depth: int) -> str:
    """`depth` levels of JSON in all: the message object, `properties`, then arrays."""
    inner = depth - 2
    return "[" * inner + "1" + "]" * inner


@pytest.mark.parametrize(("depth", "status"), [(MAX_JSON_DEPTH, 200), (MAX_JSON_DEPTH + 1, 400)])
def test_nesting_is_accepted_up_to_the_limit_and_refused_past_it(
    api: Api, uid: str, depth: int, status: int
) -> None:
    body = f'{{"userId": "{uid}", "event": "login", "properties": {{"deep": {_nested(depth)}}}}}'
    response = api.post("/v1/track", data=body.encode(), headers={"Content-Type": "application/json"})
    assert response.status_code == status, response.text
    if status == 400:
        assert f"the limit is {MAX_JSON_DEPTH}" in response.json()["errors"][0]["message"]


def test_brackets_inside_strings_do_not_count_as_nesting(api: Api, uid: str) -> None:
    brackets = '[{"\\"' * 500
    response = api.post("/v1/track", {"userId": uid, "event": "login", "properties": {"note": brackets}})
    assert response.status_code == 200, response.text
    assert api.user(uid)["event_counts"] == {"login": 1}


ODD_STRINGS = [
    '"a\\u0000b"',  # NUL
    '"\\u202e\\u200b"',  # bidi override, zero width space
    '"\\ud83d\\ude00"',  # an escaped surrogate pair: one emoji
]
LONE_SURROGATE = '"\\ud800"'  # valid JSON, but no Unicode text: can't be encoded as UTF-8


def _bodies(uid: str, text: str) -> list[tuple[str, str]]:
    return [
        ("/v1/track", f'{{"userId": {text}, "event": "login"}}'),
        ("/v1/track", f'{{"userId": "{uid}", "event": {text}}}'),
        ("/v1/track", f'{{"userId": "{uid}", "event": "login", "properties": {{"p": {text}}}}}'),
        ("/v1/identify", f'{{"userId": "{uid}", "traits": {{"first_name": {text}}}}}'),
        ("/v1/group", f'{{"userId": "{uid}", "groupId": {text}}}'),
        ("/v1/group", f'{{"userId": "{uid}", "groupId": "acme", "traits": {{"name": {text}}}}}'),
    ]


def _never_5xx(api: Api, path: str, body: str) -> None:
    response = api.post(path, data=body.encode(), headers={"Content-Type": "application/json"})
    assert response.status_code in (200, 400), (path, body, response.status_code, response.text)
    assert isinstance(response.json()["success"], bool)


@pytest.mark.parametrize("text", ODD_STRINGS)
def test_odd_unicode_in_ids_traits_and_properties_never_5xx(api: Api, uid: str, text: str) -> None:
    for path, body in _bodies(uid, text):
        _never_5xx(api, path, body)


@pytest.mark.parametrize(
    "case",
    [
        pytest.param(0, id="track-userId"),
        pytest.param(1, id="track-event"),
        pytest.param(2, id="track-property"),
        pytest.param(3, id="identify-trait"),
        pytest.param(4, id="group-groupId"),
        pytest.param(5, id="group-trait"),
    ],
)
def test_a_lone_surrogate_never_5xx(api: Api, uid: str, case: int) -> None:
    path, body = _bodies(uid, LONE_SURROGATE)[case]
    _never_5xx(api, path, body)


# ---------------------------------------------------------------------------- write keys


@pytest.mark.parametrize(
    ("name", "headers"),
    [
        (
            "key as the Basic password",
            {"Authorization": "Basic " + base64.b64encode(b":e2e-write-key").decode()},
        ),
        ("a prefix of the key", basic("e2e-write")),
        ("the key with more after it", basic("e2e-write-key-x")),
        ("the key in another case", basic("E2E-WRITE-KEY")),
        ("an empty Bearer", {"Authorization": "Bearer "}),
        ("an unknown scheme", {"Authorization": "Token e2e-write-key"}),
        ("the key as a query-less custom header", {"X-Write-Key": "e2e-write-key"}),
    ],
)
def test_near_miss_keys_are_refused_on_every_route(
    api: Api, uid: str, name: str, headers: dict[str, str]
) -> None:
    for path, body in [
        ("/v1/track", {"userId": uid, "event": "login"}),
        ("/v1/batch", {"batch": [{"type": "track", "userId": uid, "event": "login"}]}),
        ("/v1/identify", {"userId": uid, "traits": {}}),
        ("/v1/group", {"userId": uid, "groupId": "acme"}),
    ]:
        response = api.post(path, body, key=None, headers=headers)
        assert response.status_code == 401, (name, path)
        assert response.headers["WWW-Authenticate"].startswith("Basic")
        assert response.json()["errors"][0]["field"] == "authorization"
    response = api.session.delete(f"{api.base_url}/v1/users/{uid}", headers=headers, timeout=30)
    assert response.status_code == 401, (name, "erasure")
    assert api.session.get(f"{api.base_url}/_local/users/{uid}", timeout=30).status_code == 404


def test_the_rotated_key_works_on_batch_and_with_a_password_set(api: Api, uid: str) -> None:
    # Some SDKs send a password; only the username is the key.
    with_password = {
        "Authorization": "Basic " + base64.b64encode(f"{api.other_key}:ignored".encode()).decode()
    }

    def batch() -> dict[str, Any]:
        return {
            "batch": [
                {"type": "track", "userId": uid, "event": "login", "messageId": uuid.uuid4().hex}
                for _ in range(2)
            ]
        }

    assert api.post("/v1/batch", batch(), key=api.other_key).status_code == 200
    assert api.post("/v1/batch", batch(), key=None, headers=with_password).status_code == 200
    assert api.user(uid)["event_counts"] == {"login": 4}
