"""The report, from the local stack, opened in headless Chromium: every section shows, no errors."""

from __future__ import annotations

import os
import uuid
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from tests.e2e.conftest import Api

# This moves the stack's clock: it runs after the e2e tests that need the wall clock.
pytestmark = [pytest.mark.e2e, pytest.mark.moves_clock]

SECTIONS = (
    "summary",
    "segments",
    "transitions",
    "funnel",
    "messages",
    "flows",
    "journeys",
    "feedback",
    "escalations",
    "adoption",
    "lift",
    "quality",
)
CHROMIUM = os.environ.get("NUDGE_CHROMIUM", "/usr/bin/chromium")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    # This machine's network is closed: without these Chromium keeps trying to phone home.
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def some_usage(api: Api) -> None:
    now = api.stack.clock.now()
    batch: list[dict[str, Any]] = []
    for n in range(6):
        user = f"report-{uuid.uuid4().hex[:8]}"
        steps = ["signed_up", "setup_completed", "project_created", "teammate_invited"][: 1 + n % 4]
        batch.append(
            {
                "type": "identify",
                "userId": user,
                "messageId": str(uuid.uuid4()),
                "timestamp": (now - timedelta(hours=3)).isoformat(),
                "traits": {"email": f"{user}@example.com", "timezone": "UTC"},
            }
        )
        for i, event in enumerate(steps):
            when = now - timedelta(hours=2) + timedelta(minutes=i)
            batch.append(
                {
                    "type": "track",
                    "userId": user,
                    "event": event,
                    "messageId": str(uuid.uuid4()),
                    "timestamp": when.isoformat(),
                }
            )
    assert api.post("/v1/batch", {"batch": batch}).status_code == 200
    response = api.session.post(
        f"{api.base_url}/_local/clock", json={"now": (now + timedelta(days=2)).isoformat()}, timeout=600
    )
    assert response.status_code == 200, response.text


def test_the_report_opens_in_headless_chromium_with_every_section(api: Api, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    # Given some usage and two days on the clock, and the report the local stack writes
    some_usage(api)
    response = api.session.get(f"{api.base_url}/_local/report", timeout=600)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/html")
    page_file = tmp_path / "report.html"
    page_file.write_text(response.text, encoding="utf-8")
    assert Path(CHROMIUM).exists(), f"{CHROMIUM} missing: `make browser` installs Chromium"

    # When Chromium opens it
    errors: list[str] = []
    requests: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
            page.on("request", lambda req: requests.append(req.url))
            page.goto(page_file.as_uri())
            page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
            # Then it loads nothing from elsewhere, logs no error, and shows every section
            visible = {section: page.locator(f"section#{section}").is_visible() for section in SECTIONS}
            headings = page.locator("section h2").all_inner_texts()
        finally:
            browser.close()
    assert errors == []
    assert [url for url in requests if not url.startswith("file:")] == []
    assert visible == dict.fromkeys(SECTIONS, True)
    assert len(headings) >= len(SECTIONS)
    assert (tmp_path / "report.png").stat().st_size > 20_000  # a real page, not a blank one
