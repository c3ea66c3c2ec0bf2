"""The buffered front door on the local stack: the template's function URL function (the ingest
code's `front_door` handler) answers each request, the ingest queue's consumer folds the messages
(nudge.services.buffer). Driven by Segment's analytics-node sending one event a request, and by
requests shaped as the browser SDK sends them."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import requests

from nudge.tools.local.http import LocalApiServer

if TYPE_CHECKING:
    from tests.e2e.conftest import Api

pytestmark = pytest.mark.e2e

SDK_DIR = Path(__file__).resolve().parents[1] / "sdk"


@pytest.fixture(scope="module")
def front(api: Api) -> Iterator[str]:
    """The front door's base URL: a second local server sending every request to the function
    with a FunctionUrlConfig, as its URL would."""
    with LocalApiServer(api.stack, front_door=True) as server:
        yield server.base_url


def test_analytics_node_one_event_a_request_lands_through_the_queue(api: Api, front: str, uid: str) -> None:
    # Given Segment's Node SDK pointed at the front door, flushing after every message
    if not (SDK_DIR / "node_modules" / ".installed").exists():
        pytest.fail("the Node SDKs are not installed: run `make sdks` (make test does)")
    # When it sends identify, group, track, page and screen
    done = subprocess.run(  # noqa: S603 - node on our own script, arguments from this test
        ["node", str(SDK_DIR / "send.mjs"), "analytics-node", front, api.write_key, uid, "1"],  # noqa: S607
        cwd=SDK_DIR,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    # Then each went in a request of its own, answered without error
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1])["sizes"] == [1, 1, 1, 1, 1]
    # And once the queue is folded (the local routes settle first), the user holds all of it, once
    user = api.user(uid)
    assert user["traits"]["email"] == f"{uid}@example.com"
    assert user["account_id"] == f"acct-{uid}"
    assert user["event_counts"] == {"project_created": 1, "page_viewed": 1, "screen_viewed": 1}


def test_a_browser_call_with_the_key_in_the_body_is_granted_for_its_origin(
    api: Api, front: str, uid: str
) -> None:
    # Given a page on the client key's origin posting /v1/t as analytics-next does (text/plain)
    body = {
        "type": "track",
        "userId": uid,
        "event": "login",
        "messageId": f"{uid}-1",
        "writeKey": api.client_key,
    }
    headers = {"Origin": api.client_origin, "Content-Type": "text/plain"}
    # When it posts the same message twice, and a preflight comes first
    preflight = requests.options(
        f"{front}/v1/t", headers={**headers, "Access-Control-Request-Method": "POST"}, timeout=30
    )
    answers = [
        requests.post(f"{front}/v1/t", data=json.dumps(body), headers=headers, timeout=30) for _ in range(2)
    ]
    # Then the preflight and both calls are granted for that origin, and the event counts once
    assert preflight.status_code == 204
    assert preflight.headers["Access-Control-Allow-Origin"] == api.client_origin
    for answer in answers:
        assert answer.status_code == 200, answer.text
        assert answer.headers["Access-Control-Allow-Origin"] == api.client_origin
    assert api.user(uid)["event_counts"] == {"login": 1}


def test_another_origin_and_a_wrong_key_are_refused_at_the_door(api: Api, front: str, uid: str) -> None:
    body = {"type": "track", "userId": uid, "event": "login", "writeKey": api.client_key}
    elsewhere = requests.post(
        f"{front}/v1/t", data=json.dumps(body), headers={"Origin": "https://evil.example"}, timeout=30
    )
    wrong = requests.post(f"{front}/v1/t", data=json.dumps({**body, "writeKey": "nope"}), timeout=30)
    assert elsewhere.status_code == 403
    assert "Access-Control-Allow-Origin" not in elsewhere.headers
    assert wrong.status_code == 401
    # and nothing of either lands
    api.stack.settle()
    assert api.session.get(f"{api.base_url}/_local/users/{uid}", timeout=30).status_code == 404


def test_a_bad_event_is_reported_at_once_and_the_good_ones_kept(api: Api, front: str, uid: str) -> None:
    # Given a batch of two, one without an event name
    body = {"batch": [{"type": "track", "userId": uid}, {"type": "track", "userId": uid, "event": "login"}]}
    # When it reaches the front door
    answer = requests.post(f"{front}/v1/batch", json=body, auth=(api.write_key, ""), timeout=30)
    # Then the answer names the bad one (as the HTTP API's would) and the good one lands
    assert answer.status_code == 400
    assert [(e["index"], e["field"]) for e in answer.json()["errors"]] == [(0, "event")]
    assert answer.json()["accepted"] == 1
    assert api.user(uid)["event_counts"] == {"login": 1}


def test_the_front_door_serves_tracking_calls_only(api: Api, front: str, uid: str) -> None:
    answer = requests.get(f"{front}/v1/users/{uid}/export", auth=(api.admin_key, ""), timeout=30)
    assert answer.status_code == 404
    assert "tracking calls only" in answer.json()["errors"][0]["message"]
