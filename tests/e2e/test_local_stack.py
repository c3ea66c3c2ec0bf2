"""The local stack over HTTP: real SDK, duplicates, concurrency, gzip, and bad input that never 5xxs."""

from __future__ import annotations

import base64
import gzip
import http.client
import json
import multiprocessing
import os
import signal
import threading
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import pytest
import requests
from segment.analytics import Client

if TYPE_CHECKING:
    from tests.e2e.conftest import Api

pytestmark = pytest.mark.e2e


def mid() -> str:
    return str(uuid.uuid4())


def ago(api: Api, **delta: float) -> str:
    return (api.stack.clock.now() - timedelta(**delta)).isoformat()


def track(api: Api, user: str, event: str, **extra: Any) -> dict[str, Any]:
    return {
        "type": "track",
        "userId": user,
        "event": event,
        "messageId": mid(),
        "timestamp": ago(api, minutes=1),
        **extra,
    }


# ---------------------------------------------------------------------------- (a) the Segment SDK


def test_the_official_segment_sdk_delivers_identify_group_and_track(api: Api, uid: str) -> None:
    # Given the official Segment client pointed at the local stack
    failures: list[Any] = []
    client = Client(
        write_key=api.write_key,
        host=api.base_url,
        sync_mode=True,
        on_error=lambda error, batch: failures.append(error),
        max_retries=1,
    )
    account = f"acct-{uid}"

    # When it identifies a user, ties them to an account and tracks what they did
    client.identify(uid, {"email": f"{uid}@example.com", "plan": "team", "timezone": "Europe/Paris"})
    client.group(uid, account, {"name": "Acme", "plan": "business", "mrr": 900, "seats": 12})
    client.track(uid, "setup_completed")
    client.track(uid, "project_created", {"template": "kanban"})
    client.track(uid, "project_created")
    client.flush()

    # Then the user's state holds all of it
    assert failures == []
    user = api.user(uid)
    assert user["traits"]["email"] == f"{uid}@example.com"
    assert user["traits"]["timezone"] == "Europe/Paris"
    assert user["account_id"] == account
    assert user["event_counts"] == {"setup_completed": 1, "project_created": 2}
    assert set(user["milestones"]) == {"setup_done", "first_project"}
    # ...and the evaluator has placed them: set up with a project, but no teammate invited yet
    assert user["segments"] == ["not_activated"]
    assert [(t["from"], t["to"]) for t in user["segment_history"]] == [(None, "not_activated")]
    assert api.account(account)["traits"]["name"] == "Acme"


def test_the_segment_sdk_can_send_gzip(api: Api, uid: str) -> None:
    failures: list[Any] = []
    client = Client(
        write_key=api.other_key,
        host=api.base_url,
        sync_mode=True,
        gzip=True,
        on_error=lambda error, batch: failures.append(error),
        max_retries=1,
    )
    client.track(uid, "report_exported", {"format": "pdf"})
    client.flush()
    assert failures == []
    assert api.user(uid)["event_counts"] == {"report_exported": 1}


# ---------------------------------------------------------------------------- (b) duplicates


def test_a_batch_posted_twice_changes_nothing_the_second_time(api: Api, uid: str) -> None:
    # Given a batch that was accepted once
    batch = {
        "batch": [
            {"type": "identify", "userId": uid, "traits": {"plan": "free"}, "messageId": mid()},
            track(api, uid, "setup_completed"),
            track(api, uid, "project_created"),
            track(api, uid, "login"),
        ]
    }
    first = api.post("/v1/batch", batch)
    assert first.status_code == 200, first.text
    before = api.user(uid)

    # When the very same batch comes again (an SDK retry)
    again = api.post("/v1/batch", batch)

    # Then it is acknowledged, and the user's document is identical, version included
    assert again.status_code == 200, again.text
    assert api.user(uid) == before
    assert before["event_counts"] == {"setup_completed": 1, "project_created": 1, "login": 1}


# ---------------------------------------------------------------------------- (c) concurrency


def test_sixteen_concurrent_clients_on_one_user_lose_no_event(api: Api, uid: str) -> None:
    # Given a user in an account, and 16 clients with 1,000 distinct events each for that user
    account = f"acct-{uid}"
    joined = api.post("/v1/group", {"userId": uid, "groupId": account, "traits": {"name": "Hot"}})
    assert joined.status_code == 200, joined.text
    clients, per_client, batch_size = 16, 1000, 100
    statuses: list[int] = []
    lock = threading.Lock()

    def client(n: int) -> None:
        with requests.Session() as session:
            for start in range(0, per_client, batch_size):
                batch = {
                    "batch": [
                        track(api, uid, "report_exported", messageId=f"{uid}-{n}-{i}")
                        for i in range(start, start + batch_size)
                    ]
                }
                for attempt in range(30):
                    response = session.post(
                        f"{api.base_url}/v1/batch", json=batch, auth=(api.write_key, ""), timeout=120
                    )
                    if response.status_code != 503:  # 503: contention outlasted the server's retries
                        break
                    time.sleep(min(1.0, 0.05 * 2**attempt))
                with lock:
                    statuses.append(response.status_code)

    # When they all post at once
    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # Then every event is counted exactly once, and the account counts the user once a week
    assert statuses == [200] * (clients * per_client // batch_size)
    assert api.user(uid)["event_counts"] == {"report_exported": clients * per_client}
    weeks = api.account(account)["rollup"]["weeks"]
    assert [week["active_users"] for week in weeks.values()] == [1] * len(weeks)


def test_an_accounts_rollup_is_applied_by_the_rollup_function_right_after_the_pump(
    api: Api, uid: str
) -> None:
    # Given three users of one account, each starting a session and creating a project
    account = f"acct-roll-{uid}"
    rollups = next(p for p in api.stack.pumps if p.source.function == "RollupFunction")
    before = rollups.stats.invocations
    batch = []
    for n in range(3):
        user = f"{uid}-r{n}"
        batch += [
            {
                "type": "group",
                "userId": user,
                "groupId": account,
                "messageId": mid(),
                "timestamp": ago(api, minutes=3),
            },
            track(api, user, "project_created", timestamp=ago(api, minutes=2)),
        ]
    assert api.post("/v1/batch", {"batch": batch}).status_code == 200
    # When the account is read (the stack pumps the stream first, the rollup function before the evaluator)
    document = api.account(account)
    # Then its rollup counts each user once, applied by the rollup function off the users' writes
    (week,) = document["rollup"]["weeks"].values()
    assert week["active_users"] == 3
    assert document["rollup"]["feature_adopters"] == {"projects": 3}
    assert rollups.stats.invocations > before
    # and posted again, nothing changes
    assert api.post("/v1/batch", {"batch": batch}).status_code == 200
    assert api.account(account)["rollup"] == document["rollup"]


# ---------------------------------------------------------------------------- (d) gzip


def test_a_gzip_batch_is_inflated_and_ingested(api: Api, uid: str) -> None:
    body = gzip.compress(json.dumps({"batch": [track(api, uid, "login") for _ in range(50)]}).encode())
    response = api.post(
        "/v1/batch",
        data=body,
        headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
    )
    assert response.status_code == 200, response.text
    assert response.json()["accepted"] == 50
    assert api.user(uid)["event_counts"] == {"login": 50}


# ---------------------------------------------------------------------------- (e) bad input


def _cases(api: Api, uid: str) -> list[tuple[str, Callable[[], requests.Response], int, str]]:
    """(name, request, expected status, field the error must name)."""
    json_header = {"Content-Type": "application/json"}
    deep = '{"a":' * 200 + "1" + "}" * 200
    big = "x" * 40_000

    def post(path: str, body: Any = None, **kw: Any) -> Callable[[], requests.Response]:
        return lambda: api.post(path, body, **kw)

    return [
        ("not JSON", post("/v1/track", data=b"{not json", headers=json_header), 400, "body"),
        ("JSON array body", post("/v1/track", [1, 2]), 400, "body"),
        ("JSON array batch body", post("/v1/batch", [{"type": "track"}]), 400, "batch"),
        ("missing event", post("/v1/track", {"userId": uid}), 400, "event"),
        (
            "bad timestamp",
            post("/v1/track", {"userId": uid, "event": "login", "timestamp": "soon"}),
            400,
            "timestamp",
        ),
        (
            "timestamp far in the future",
            post("/v1/track", {"userId": uid, "event": "login", "timestamp": ago(api, days=-2)}),
            400,
            "timestamp",
        ),
        (
            "timestamp too old",
            post("/v1/track", {"userId": uid, "event": "login", "timestamp": ago(api, days=400)}),
            400,
            "timestamp",
        ),
        (
            "bad timezone",
            post("/v1/identify", {"userId": uid, "traits": {"timezone": "Mars/Olympus"}}),
            400,
            "traits.timezone",
        ),
        (
            "bad email",
            post("/v1/identify", {"userId": uid, "traits": {"email": "not-an-email"}}),
            400,
            "traits.email",
        ),
        ("unknown type", post("/v1/batch", {"batch": [{"type": "subscribe", "userId": uid}]}), 400, "type"),
        ("alias without previousId", post("/v1/alias", {"userId": uid}), 400, "previousId"),
        ("no userId nor anonymousId", post("/v1/track", {"event": "login"}), 400, "userId"),
        ("userId not a string", post("/v1/track", {"userId": {"id": 1}, "event": "login"}), 400, "userId"),
        ("batch not a list", post("/v1/batch", {"batch": "nope"}), 400, "batch"),
        (
            "oversize single message",
            post("/v1/track", {"userId": uid, "event": "login", "properties": {"x": big}}),
            413,
            "body",
        ),
        (
            "oversize message in a batch",
            post("/v1/batch", {"batch": [track(api, uid, "login", properties={"x": big})]}),
            400,
            "message",
        ),
        (
            "oversize batch",
            post(
                "/v1/batch",
                {"batch": [track(api, uid, "login", properties={"x": "y" * 20_000}) for _ in range(30)]},
            ),
            413,
            "body",
        ),
        (
            "gzip bomb",
            post("/v1/batch", data=gzip.compress(b" " * 50_000_000), headers={"Content-Encoding": "gzip"}),
            413,
            "body",
        ),
        (
            "truncated gzip",
            post(
                "/v1/batch", data=gzip.compress(b'{"batch": []}')[:-8], headers={"Content-Encoding": "gzip"}
            ),
            400,
            "body",
        ),
        (
            "unsupported encoding",
            post("/v1/batch", data=b"{}", headers={"Content-Encoding": "br"}),
            415,
            "content-encoding",
        ),
        (
            "wrong write key",
            post("/v1/track", {"userId": uid, "event": "login"}, key="nope"),
            401,
            "authorization",
        ),
        (
            "missing write key",
            post("/v1/track", {"userId": uid, "event": "login"}, key=None),
            401,
            "authorization",
        ),
        (
            "malformed Basic credentials",
            post(
                "/v1/track",
                {"userId": uid, "event": "login"},
                key=None,
                headers={"Authorization": "Basic %%%"},
            ),
            401,
            "authorization",
        ),
        (
            "non-UTF-8 body",
            post("/v1/track", data=b'{"userId": "\xff\xfe", "event": "x"}', headers=json_header),
            400,
            "body",
        ),
        (
            "deeply nested properties",
            post("/v1/track", data=f'{{"userId": "{uid}", "event": "login", "properties": {deep}}}'.encode()),
            400,
            "body",
        ),
        (
            "deeply nested traits",
            post("/v1/identify", data=f'{{"userId": "{uid}", "traits": {{"x": {deep}}}}}'.encode()),
            400,
            "body",
        ),
        ("empty body", post("/v1/track", data=b"", headers=json_header), 400, "body"),
        ("null body", post("/v1/track", data=b"null", headers=json_header), 400, "body"),
    ]


def test_malformed_requests_never_5xx_and_name_the_field(api: Api, uid: str) -> None:
    problems = []
    for name, send, status, field in _cases(api, uid):
        response = send()
        fields = [e.get("field") for e in response.json().get("errors", [])]
        if response.status_code != status or field not in fields:
            problems.append(f"{name}: HTTP {response.status_code} {response.text[:300]}")
    assert problems == []


def test_bad_input_leaves_the_user_untouched_and_usable(api: Api, uid: str) -> None:
    for _, send, _, _ in _cases(api, uid):
        send()
    # Nothing above was valid except nothing: the user exists only once a good message arrives.
    assert api.session.get(f"{api.base_url}/_local/users/{uid}", timeout=30).status_code == 404
    assert api.post("/v1/track", track(api, uid, "login")).status_code == 200
    assert api.user(uid)["event_counts"] == {"login": 1}


def test_a_bearer_token_and_every_live_key_are_accepted(api: Api, uid: str) -> None:
    bearer = api.post(
        "/v1/track", track(api, uid, "login"), key=None, headers={"Authorization": f"Bearer {api.write_key}"}
    )
    rotated = api.post("/v1/track", track(api, uid, "login"), key=api.other_key)
    assert (bearer.status_code, rotated.status_code) == (200, 200)
    assert api.user(uid)["event_counts"] == {"login": 2}


def test_in_a_batch_valid_messages_are_kept_and_bad_ones_named_by_index(api: Api, uid: str) -> None:
    batch = {"batch": [track(api, uid, "login"), {"type": "track", "userId": uid}, track(api, uid, "login")]}
    response = api.post("/v1/batch", batch)
    assert response.status_code == 400
    assert response.json()["accepted"] == 2
    assert [(e["index"], e["field"]) for e in response.json()["errors"]] == [(1, "event")]
    assert api.user(uid)["event_counts"] == {"login": 2}


# ---------------------------------------------------------------------------- the HTTP server itself


def test_unknown_paths_and_methods_get_404_json(api: Api) -> None:
    for method, path in [
        ("GET", "/v1/nothing"),
        ("GET", "/v1/track"),
        ("DELETE", "/v1/batch"),
        ("GET", "/_local/nope"),
    ]:
        response = api.session.request(method, api.base_url + path, timeout=30)
        assert response.status_code == 404, (method, path)
        assert "message" in response.json()


def test_the_openapi_document_is_served_without_a_key(api: Api) -> None:
    response = api.session.get(f"{api.base_url}/v1/openapi.json", timeout=30)
    assert response.status_code == 200
    assert "/v1/batch" in response.json()["paths"]


def test_a_body_over_the_server_cap_is_refused_unread_and_the_connection_closed(api: Api) -> None:
    parts = urlsplit(api.base_url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=30)
    try:
        # Only the headers are sent: the server must answer without waiting for 6 MB.
        conn.putrequest("POST", "/v1/batch")
        conn.putheader("Content-Length", str(6 * 1024 * 1024))
        conn.putheader("Content-Type", "application/json")
        conn.endheaders()
        response = conn.getresponse()
        assert response.status == 413
        assert response.getheader("Connection") == "close"
        assert "limit" in json.loads(response.read())["message"]
    finally:
        conn.close()


def test_connections_are_kept_alive_between_requests(api: Api, uid: str) -> None:
    parts = urlsplit(api.base_url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=30)
    try:
        conn.connect()
        sock = conn.sock
        for _ in range(3):
            conn.request("GET", f"/_local/users/{uid}")
            response = conn.getresponse()
            response.read()
            assert response.status == 404
            assert conn.sock is sock  # the same socket served every request
    finally:
        conn.close()


def test_unknown_users_and_accounts_are_404_json(api: Api, uid: str) -> None:
    for path in (f"/_local/users/{uid}", f"/_local/accounts/acct-{uid}"):
        response = api.session.get(api.base_url + path, timeout=30)
        assert response.status_code == 404
        assert response.json()["message"].startswith("no such")


@pytest.mark.moves_clock
def test_the_simulated_clock_moves_forward_only(api: Api) -> None:
    now = api.session.get(f"{api.base_url}/_local/clock", timeout=30).json()["now"]
    later = api.stack.clock.now() + timedelta(minutes=5)
    moved = api.session.post(f"{api.base_url}/_local/clock", json={"now": later.isoformat()}, timeout=30)
    assert moved.status_code == 200
    back = api.session.post(f"{api.base_url}/_local/clock", json={"now": now}, timeout=30)
    assert back.status_code == 409
    assert (
        api.session.post(f"{api.base_url}/_local/clock", json={"now": "tomorrow"}, timeout=30).status_code
        == 400
    )


def test_a_container_that_dies_costs_one_500_and_is_replaced(api: Api, uid: str) -> None:
    # Given the stack's handler containers (worker processes of this one)
    containers = multiprocessing.active_children()
    assert containers

    # When one is killed, as Lambda may lose a container
    os.kill(containers[0].pid or 0, signal.SIGKILL)
    containers[0].join(timeout=10)

    # Then requests answer 200 or, at worst, 500 while the containers are replaced; never hang
    statuses = [api.post("/v1/track", track(api, uid, "login")).status_code for _ in range(3)]
    assert set(statuses) <= {200, 500}
    assert statuses[-1] == 200
    assert api.user(uid)["event_counts"]["login"] == statuses.count(200)


def test_requests_reach_the_handler_as_api_gateway_v2_events(
    api: Api, uid: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a recorder in front of the handler
    seen: list[dict[str, Any]] = []
    invoke = api.stack.invoke

    def recording(route: Any, event: dict[str, Any]) -> dict[str, Any]:
        seen.append(event)
        return invoke(route, event)

    monkeypatch.setattr(api.stack, "invoke", recording)

    # When an SDK-like gzip request and a plain text one arrive
    body = gzip.compress(json.dumps({"batch": [track(api, uid, "login")]}).encode())
    api.post(
        "/v1/batch?via=sdk&via=proxy",
        data=body,
        headers={"Content-Encoding": "gzip", "X-Custom": "yes", "Cookie": "a=1; b=2"},
    )
    api.post("/v1/track", track(api, uid, "login"))

    # Then each became the event API Gateway (HTTP API, payload 2.0) would have sent
    gz, text = seen
    assert gz["version"] == "2.0"
    assert gz["routeKey"] == "POST /v1/batch"
    assert (gz["rawPath"], gz["rawQueryString"]) == ("/v1/batch", "via=sdk&via=proxy")
    assert gz["queryStringParameters"] == {"via": "sdk,proxy"}
    assert gz["cookies"] == ["a=1", "b=2"]
    assert gz["headers"]["x-custom"] == "yes"
    assert all(name == name.lower() for name in gz["headers"])
    assert gz["isBase64Encoded"] is True
    assert gzip.decompress(base64.b64decode(gz["body"])) == gzip.decompress(body)
    context = gz["requestContext"]
    assert context["http"]["method"] == "POST"
    assert context["http"]["path"] == "/v1/batch"
    assert context["http"]["sourceIp"] == "127.0.0.1"
    assert context["http"]["protocol"] == "HTTP/1.1"
    assert context["stage"] == "$default"
    assert {"requestId", "time", "timeEpoch", "accountId", "apiId", "domainName"} <= set(context)
    assert text["isBase64Encoded"] is False
    assert json.loads(text["body"])["userId"] == uid


def test_a_chunked_request_body_is_read_whole(api: Api, uid: str) -> None:
    payload = json.dumps({"batch": [track(api, uid, "login") for _ in range(20)]}).encode()
    chunks = (payload[i : i + 500] for i in range(0, len(payload), 500))  # requests sends it chunked
    response = api.session.post(f"{api.base_url}/v1/batch", data=chunks, auth=(api.write_key, ""), timeout=30)
    assert response.status_code == 200, response.text
    assert api.user(uid)["event_counts"] == {"login": 20}
