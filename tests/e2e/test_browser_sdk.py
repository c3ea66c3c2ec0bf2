"""Segment's browser SDK, analytics-next from npm (its UMD build, unchanged), on a page of another
origin in headless Chromium, against the local stack: the page loads it with a client key and the
local URL as its settings host, as the README's snippet does, with batching off and on."""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import os
import threading
import time
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.e2e.conftest import nudge_keys, wait_for_status

if TYPE_CHECKING:
    from tests.e2e.conftest import Api

pytestmark = pytest.mark.e2e

UMD = (
    Path(__file__).resolve().parents[1]
    / "sdk"
    / "node_modules"
    / "@segment"
    / "analytics-next"
    / "dist"
    / "umd"
)
CHROMIUM = os.environ.get("NUDGE_CHROMIUM", "/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"]
BATCHING = {
    "integrations": {
        "Segment.io": {"deliveryStrategy": {"strategy": "batching", "config": {"size": 10, "timeout": 300}}}
    }
}

# The README's snippet, with the user's journey after it: two onboarding steps and a page view
# before signing up (anonymous), identify at signup, then the third step as the known user.
PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><link rel="icon" href="data:,">
<script src="/analytics-next/index.js"></script>
</head><body><script>
window.journey = (async () => {
  const [analytics] = await AnalyticsNext.AnalyticsBrowser.load(
    { writeKey: %(key)s, cdnURL: %(api)s }, %(options)s);
  await analytics.page("Pricing");
  await analytics.track("setup_completed", { step: "wizard" });
  await analytics.track("project_created", { template: "kanban" });
  // The email counts because the product's server signed the user's token (identity verification).
  await analytics.identify(%(user)s, { plan: "team", email: %(email)s }, { userToken: %(token)s });
  await analytics.track("teammate_invited", { role: "editor" });
  return analytics.user().anonymousId();
})();
</script></body></html>
"""


class _Site(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def site_key(api: Api, site: tuple[str, Path], capsys: pytest.CaptureFixture[str]) -> Iterator[str]:
    """A client key its owner made with `nudge keys create` for the product's origin, revoked after."""
    out = nudge_keys(api, capsys, "create", "--kind", "client", "--origin", site[0], "--label", "web app")
    key_id, key = out.split()[3].rstrip("."), out.strip().splitlines()[-1]
    wait_for_status(api, key, 200)
    yield key
    nudge_keys(api, capsys, "revoke", key_id)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """A web server for the product's pages on its own origin, with the SDK's UMD build."""
    assert (UMD / "index.js").exists(), "analytics-next missing: `make sdks` installs tests/sdk"
    root = tmp_path_factory.mktemp("site")
    (root / "analytics-next").symlink_to(UMD, target_is_directory=True)
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Site, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", root
    finally:
        server.shutdown()
        server.server_close()


def _wait_for(api: Api, user_id: str, wanted: dict[str, int]) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while True:
        # 404 until the batching SDK's first request lands
        response = api.session.get(f"{api.base_url}/_local/users/{user_id}", timeout=30)
        user: dict[str, Any] = response.json() if response.status_code == 200 else {}
        if user.get("event_counts") == wanted or time.monotonic() > deadline:
            return user
        time.sleep(0.25)


@pytest.mark.parametrize("options", [{}, BATCHING], ids=["one-request-per-call", "batching"])
def test_analytics_next_on_another_origin_lands_every_call_once(
    api: Api, uid: str, site: tuple[str, Path], site_key: str, options: dict[str, Any]
) -> None:
    from playwright.sync_api import sync_playwright

    # Given a page on the product's origin; the API on another (localhost, not 127.0.0.1)
    origin, root = site
    api_url = api.base_url.replace("127.0.0.1", "localhost")
    name = f"{uid}.html"
    token = hmac.new(api.user_token_secret.encode(), uid.encode(), hashlib.sha256).hexdigest()
    email = f"{uid}@example.com"
    values = {
        "key": site_key,
        "api": api_url,
        "options": options,
        "user": uid,
        "email": email,
        "token": token,
    }
    (root / name).write_text(PAGE % {k: json.dumps(v) for k, v in values.items()}, encoding="utf-8")
    assert origin.split("//")[1].split(":")[0] != api_url.split("//")[1].split(":")[0]

    # When Chromium opens it and the SDK sends the journey
    errors: list[str] = []
    answers: list[tuple[str, str, int, str | None]] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            page = browser.new_page()
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
            page.on(
                "response",
                lambda r: (
                    answers.append(
                        (r.request.method, r.url, r.status, r.headers.get("access-control-allow-origin"))
                    )
                    if r.url.startswith(api_url)
                    else None
                ),
            )
            page.goto(f"{origin}/{name}")
            anonymous_id = page.evaluate("window.journey")
            user = _wait_for(
                api,
                uid,
                {"page_viewed": 1, "setup_completed": 1, "project_created": 1, "teammate_invited": 1},
            )
        finally:
            browser.close()

    # Then the settings came from Nudge and every call was granted to the page's origin, on the
    # short routes the SDK posts to (/v1/p, /v1/t, /v1/i) or /v1/b when batching
    assert errors == []
    assert answers, "the SDK sent nothing to the API"
    assert {(status, grant) for _method, _url, status, grant in answers} == {(200, origin)}
    posted = {url.removeprefix(api_url) for method, url, _status, _grant in answers if method == "POST"}
    assert posted == ({"/v1/b"} if options else {"/v1/p", "/v1/t", "/v1/i"})
    # and the anonymous steps merged into the user at identify: each counted once, and with the
    # step after signup the user reached the activated milestone
    assert user["event_counts"] == {
        "page_viewed": 1,
        "setup_completed": 1,
        "project_created": 1,
        "teammate_invited": 1,
    }
    assert "activated" in user["milestones"]
    assert user["context"]["page"]["url"].startswith(origin)
    assert user["traits"]["email"] == email
    assert "userToken" not in json.dumps(user)
    assert isinstance(anonymous_id, str)
    assert anonymous_id
