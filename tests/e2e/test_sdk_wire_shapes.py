"""What the browser and mobile SDKs put on the wire, exactly, lands (FIELD-NOTES, "Segment SDK wire
shapes"): the short paths, `text/plain` (and any other declared type) read as JSON, gzip, the write
key in the body and no Authorization header. Each message counts once and shows on the user."""

from __future__ import annotations

import gzip
import json
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from tests.e2e.conftest import Api

LIBRARY = {"library": {"name": "analytics.js", "version": "next-1.70.0"}}


def message(kind: str, user: str, **fields: Any) -> dict[str, Any]:
    return {
        "type": kind,
        "userId": user,
        "messageId": f"ajs-next-{uuid.uuid4().hex}",
        "timestamp": datetime.now(UTC).isoformat(),
        "context": LIBRARY,
        **fields,
    }


def browser_post(api: Api, path: str, body: dict[str, Any], key: str | None) -> Any:
    """As analytics-next posts one call: text/plain (no preflight), the key in the body, no auth."""
    payload = {**body, "writeKey": key, "sentAt": datetime.now(UTC).isoformat()} if key else body
    return api.post(path, data=json.dumps(payload).encode(), key=None, headers={"Content-Type": "text/plain"})


def test_the_browser_sdks_short_paths_land_with_the_key_in_the_body(api: Api, uid: str) -> None:
    # Given what analytics-next sends for page, track, identify, group and screen, each to its path
    calls = [
        ("/v1/p", message("page", uid, name="Pricing", properties={"path": "/pricing"})),
        ("/v1/t", message("track", uid, event="report_exported", properties={"format": "csv"})),
        ("/v1/i", message("identify", uid, traits={"plan": "free"})),
        ("/v1/g", message("group", uid, groupId=f"acct-{uid}", traits={"name": "Acme"})),
        ("/v1/s", message("screen", uid, name="Home")),
    ]
    # When each is posted as the browser posts it
    for path, body in calls:
        response = browser_post(api, path, body, api.write_key)
        assert response.status_code == 200, (path, response.text)
    # Then every one landed, once
    user = api.user(uid)
    assert user["event_counts"] == {"page_viewed": 1, "report_exported": 1, "screen_viewed": 1}
    assert user["traits"]["plan"] == "free"
    assert user["account_id"] == f"acct-{uid}"


def test_the_long_page_and_screen_routes_take_a_server_sdk_call(api: Api, uid: str) -> None:
    for path, body in (
        ("/v1/page", message("page", uid, name="Docs")),
        ("/v1/screen", message("screen", uid)),
    ):
        assert api.post(path, body).status_code == 200
    assert api.user(uid)["event_counts"] == {"page_viewed": 1, "screen_viewed": 1}


def test_the_browser_sdks_batching_posts_to_b(api: Api, uid: str) -> None:
    batch = {"batch": [message("track", uid, event="login") for _ in range(3)]}
    response = browser_post(api, "/v1/b", batch, api.write_key)
    assert response.status_code == 200, response.text
    assert api.user(uid)["event_counts"] == {"login": 3}


def test_analytics_kotlin_gzip_text_plain_batch_with_the_key_in_the_body(api: Api, uid: str) -> None:
    # Given a batch as analytics-kotlin writes its files: gzip, text/plain, the key inside
    body = {
        "batch": [
            message("track", uid, event="login", context={"timezone": "Europe/Paris"}) for _ in range(2)
        ],
        "sentAt": datetime.now(UTC).isoformat(),
        "writeKey": api.write_key,
    }
    headers = {"Content-Type": "text/plain", "Content-Encoding": "gzip"}
    # When it is posted twice (a retry after a lost response)
    for _ in range(2):
        response = api.post("/v1/b", data=gzip.compress(json.dumps(body).encode()), key=None, headers=headers)
        assert response.status_code == 200, response.text
    # Then both messages count once, and the device's timezone stands in for the unset trait
    user = api.user(uid)
    assert user["event_counts"] == {"login": 2}
    assert user["context"]["timezone"] == "Europe/Paris"
    assert user["traits"]["timezone"] == "Europe/Paris"


def test_analytics_swift_json_charset_batch_with_the_key_in_the_body(api: Api, uid: str) -> None:
    # Given a batch whose context (device, OS, locale) is the batch's, not each message's
    context = {"locale": "fr-FR", "device": {"model": "iPhone15,2"}, "os": {"name": "iOS", "version": "18.1"}}
    body = {"batch": [message("track", uid, event="login")], "context": context, "writeKey": api.write_key}
    headers = {"Content-Type": "application/json; charset=utf-8"}
    response = api.post("/v1/b", data=json.dumps(body).encode(), key=None, headers=headers)
    assert response.status_code == 200, response.text
    # Then the message landed, with the batch's context kept on the user
    user = api.user(uid)
    assert user["event_counts"] == {"login": 1}
    assert user["context"] == context
    assert user["traits"] == {"locale": "fr-FR"}


def test_rudder_sdk_node_gzip_batch_declared_as_a_form_lands(api: Api, uid: str) -> None:
    # rudder-sdk-node 3 gzips its batches and axios then declares them form-urlencoded; Basic auth
    body = {"batch": [message("track", uid, event="login")], "sentAt": datetime.now(UTC).isoformat()}
    headers = {"Content-Type": "application/x-www-form-urlencoded", "Content-Encoding": "gzip"}
    response = api.post("/v1/batch", data=gzip.compress(json.dumps(body).encode()), headers=headers)
    assert response.status_code == 200, response.text
    assert api.user(uid)["event_counts"] == {"login": 1}


@pytest.mark.parametrize("key", ["not-a-key", ""])
def test_a_wrong_or_empty_key_in_the_body_is_refused(api: Api, uid: str, key: str) -> None:
    body = {**message("track", uid, event="login"), "writeKey": key}
    response = api.post(
        "/v1/t", data=json.dumps(body).encode(), key=None, headers={"Content-Type": "text/plain"}
    )
    assert response.status_code == 401
    [error] = response.json()["errors"]
    assert error["field"] == "authorization"
    assert ("unknown or revoked key" if key else "missing write key") in error["message"]
    assert api.session.get(f"{api.base_url}/_local/users/{uid}", timeout=30).status_code == 404


def test_the_body_key_is_not_kept_with_the_message(api: Api, uid: str) -> None:
    browser_post(api, "/v1/t", message("track", uid, event="login"), api.write_key)
    assert api.write_key not in json.dumps(api.user(uid))


def test_the_sdks_start_up_settings_point_them_at_this_api(api: Api) -> None:
    # When an SDK fetches its settings with the write key in the path (no auth header, as they do)
    response = api.session.get(f"{api.base_url}/v1/projects/{api.write_key}/settings", timeout=30)
    # Then Segment's settings document sends its events here, with that key
    assert response.status_code == 200, response.text
    segment = response.json()["integrations"]["Segment.io"]
    assert segment["apiKey"] == api.write_key
    assert segment["apiHost"] == api.base_url.removeprefix("http://") + "/v1"
    assert segment["protocol"] == "http"


def test_settings_for_an_unknown_key_are_refused_whatever_the_header_says(api: Api) -> None:
    url = f"{api.base_url}/v1/projects/not-a-key/settings"
    response = api.session.get(url, auth=(api.write_key, ""), timeout=30)
    assert response.status_code == 401
    assert response.json()["errors"][0]["field"] == "authorization"
