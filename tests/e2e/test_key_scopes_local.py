"""Key kinds in the local stack over HTTP: 401 and 403, CORS per client key (preflight and request),
sensitive traits from a client key, the per-key rate limit, export and erasure for admin keys, and a
key created and revoked with `nudge keys` against the stack's moto server."""

from __future__ import annotations

import hashlib
import hmac
import uuid
from typing import TYPE_CHECKING, Any

import pytest

from tests.e2e.conftest import nudge_keys, wait_for_status

if TYPE_CHECKING:
    from tests.e2e.conftest import Api

pytestmark = pytest.mark.e2e


def track(api: Api, user: str) -> dict[str, Any]:
    return {"userId": user, "event": "login", "timestamp": api.stack.clock.now().isoformat()}


def test_a_browser_preflight_and_post_with_the_client_key_are_granted_its_origin(api: Api, uid: str) -> None:
    origin = {"Origin": api.client_origin}
    preflight = api.session.options(
        f"{api.base_url}/v1/t",
        headers={
            **origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
        timeout=30,
    )
    assert preflight.status_code == 204
    assert preflight.headers["Access-Control-Allow-Origin"] == api.client_origin
    assert "POST" in preflight.headers["Access-Control-Allow-Methods"]

    # analytics-next's shape: text/plain, the key in the body
    body = {**track(api, uid), "writeKey": api.client_key}
    response = api.post("/v1/t", body, key=None, headers={**origin, "Content-Type": "text/plain"})
    assert response.status_code == 200, response.text
    assert response.headers["Access-Control-Allow-Origin"] == api.client_origin
    assert response.headers["Vary"] == "Origin"


def test_an_origin_no_key_allows_gets_no_grant_and_its_request_is_refused(api: Api, uid: str) -> None:
    evil = {"Origin": "https://evil.example"}
    preflight = api.session.options(f"{api.base_url}/v1/t", headers=evil, timeout=30)
    response = api.post("/v1/t", track(api, uid), key=api.client_key, headers=evil)

    assert preflight.status_code == 403
    assert "Access-Control-Allow-Origin" not in preflight.headers
    assert response.status_code == 403
    assert "Access-Control-Allow-Origin" not in response.headers
    assert api.session.get(f"{api.base_url}/_local/users/{uid}", timeout=30).status_code == 404


def test_a_server_key_pasted_into_a_page_is_refused(api: Api, uid: str) -> None:
    response = api.post("/v1/track", track(api, uid), headers={"Origin": api.client_origin})

    assert response.status_code == 403
    assert "Access-Control-Allow-Origin" not in response.headers


@pytest.mark.parametrize("where", ["header", "body"])
def test_a_wrong_key_in_header_or_body_is_401(api: Api, uid: str, where: str) -> None:
    if where == "header":
        response = api.post("/v1/track", track(api, uid), key="e2e-no-such-key")
    else:
        response = api.post("/v1/track", {**track(api, uid), "writeKey": "e2e-no-such-key"}, key=None)

    assert response.status_code == 401


def test_a_client_identify_keeps_ordinary_traits_and_drops_and_names_sensitive_ones(
    api: Api, uid: str
) -> None:
    identify = {"userId": uid, "traits": {"email": "x@acme.example", "phone": "+15550100", "plan": "pro"}}

    response = api.post("/v1/identify", identify, key=api.client_key)

    assert response.status_code == 200, response.text
    assert sorted(w["field"] for w in response.json()["warnings"]) == ["traits.email", "traits.phone"]
    assert set(api.user(uid)["traits"]) == {"plan"}


def test_a_client_identify_with_the_users_token_sets_the_email(api: Api, uid: str) -> None:
    token = hmac.new(api.user_token_secret.encode(), uid.encode(), hashlib.sha256).hexdigest()
    identify = {"userId": uid, "traits": {"email": f"{uid}@acme.example"}, "context": {"userToken": token}}

    response = api.post("/v1/i", identify, key=api.client_key, headers={"Origin": api.client_origin})

    assert response.status_code == 200, response.text
    assert response.json()["warnings"] == []
    assert api.user(uid)["traits"]["email"] == f"{uid}@acme.example"


def test_the_cli_user_token_is_the_one_the_api_accepts(
    api: Api, uid: str, capsys: pytest.CaptureFixture[str]
) -> None:
    token = nudge_keys(api, capsys, "user-token", uid).strip()
    identify = {"userId": uid, "traits": {"consent": {"email": True}}, "context": {"userToken": token}}

    response = api.post("/v1/identify", identify, key=api.client_key)

    assert response.json()["warnings"] == []


def test_ingest_keys_may_not_erase_or_export_and_the_admin_key_may(api: Api, uid: str) -> None:
    assert api.post("/v1/track", track(api, uid)).status_code == 200
    export = f"{api.base_url}/v1/users/{uid}/export"

    refused = api.session.get(export, auth=(api.write_key, ""), timeout=30)
    erase_refused = api.session.delete(
        f"{api.base_url}/v1/users/{uid}", auth=(api.client_key, ""), timeout=30
    )
    exported = api.session.get(export, auth=(api.admin_key, ""), timeout=30)
    erased = api.session.delete(f"{api.base_url}/v1/users/{uid}", auth=(api.admin_key, ""), timeout=30)

    assert refused.status_code == 403
    assert "admin key" in refused.json()["errors"][0]["message"]
    assert erase_refused.status_code == 403
    assert exported.status_code == 200
    assert exported.json()["usage"]["events"]["login"]["count"] == 1
    assert erased.status_code == 200
    assert api.session.get(f"{api.base_url}/_local/users/{uid}", timeout=30).status_code == 404


def test_an_admin_key_may_not_send_events(api: Api, uid: str) -> None:
    assert api.post("/v1/track", track(api, uid), key=api.admin_key).status_code == 403


def test_a_client_key_over_its_rate_limit_gets_429_then_its_messages_wait(
    api: Api, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a client key allowed 1 message a second (10 per 10 s window), made with the CLI
    out = nudge_keys(api, capsys, "create", "--kind", "client", "--rate-limit", "1", "--origin", "*")
    key_id, key = out.split()[3].rstrip("."), out.strip().splitlines()[-1]
    user = f"user-{uuid.uuid4().hex[:12]}"
    batch = {"batch": [{"type": "track", **track(api, user)} for _ in range(10)]}
    wait_for_status(api, key, 200)

    # When it sends a window's worth, then more (again, if a window ended in between)
    try:
        first = api.post("/v1/b", batch, key=key)
        for _ in range(3):
            second = api.post("/v1/b", batch, key=key)
            if second.status_code != 200:
                break
    finally:
        # A key for any origin left live would grant every origin's preflight in the tests after.
        nudge_keys(api, capsys, "revoke", key_id)
        wait_for_status(api, key, 401)

    # Then the rest wait: 429 with when to retry, as analytics-next reads it
    assert first.status_code == 200, first.text
    assert second.status_code == 429
    assert int(second.headers["x-ratelimit-reset"]) >= 1
    assert second.headers["Retry-After"] == second.headers["x-ratelimit-reset"]


def test_a_key_created_and_revoked_with_the_cli_stops_working(
    api: Api, uid: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a server key made with `nudge keys create` (rotation: it lives beside the others)
    out = nudge_keys(api, capsys, "create", "--kind", "server", "--label", "rotation test")
    key_id = out.split()[3].rstrip(".")
    key = out.strip().splitlines()[-1]
    assert key_id in nudge_keys(api, capsys, "list")
    assert key not in nudge_keys(api, capsys, "list", "--json")
    wait_for_status(api, key, 200)
    assert api.post("/v1/track", track(api, uid), key=key).status_code == 200

    # When it is revoked
    nudge_keys(api, capsys, "revoke", key_id)

    # Then, once every container's key cache has expired, it is refused and the others still work
    wait_for_status(api, key, 401)
    assert api.post("/v1/track", track(api, uid), key=key).status_code == 401
    assert key_id not in nudge_keys(api, capsys, "list")
    assert api.post("/v1/track", track(api, uid)).status_code == 200
