"""The in-app channel end to end: a survey decided by the shipped rules reaches the user's inbox
through dispatch and the notify function, and /v1/nudge.js, loaded with one script tag on a page
of another origin in headless Chromium, renders the checklist and the survey; the user's answer
lands in their state as `survey_answered` with its property kept."""

from __future__ import annotations

import json
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from nudge.domain.inbox import inbox_token
from nudge.domain.verdicts import in_group
from tests.e2e.conftest import nudge_keys
from tests.e2e.test_browser_sdk import CHROMIUM, FLAGS, site, site_key  # noqa: F401 - fixtures
from tests.shipped import RULES

if TYPE_CHECKING:
    from tests.e2e.conftest import Api

pytestmark = pytest.mark.e2e
RULE = "ask_setup_blocker"

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><link rel="icon" href="data:,"></head>
<body><h1>Acme</h1><div id="nudge"></div>
<script src=%(script)s data-key=%(key)s data-token=%(token)s data-target="#nudge"></script>
</body></html>
"""


def _unheld(base: str) -> str:
    salt = RULES.guardrails.spec.holdout.salt
    for n in range(100):
        user = f"{base}-{n}"
        if not in_group(salt, user, RULES.guardrails.spec.holdout.control_group) and not in_group(
            salt, f"{RULE}|{user}", RULES.trigger_by_id[RULE].spec.holdout
        ):
            return user
    raise AssertionError("no id outside the holdouts in 100 tries")


def _signed_up_days_ago(api: Api, user: str, days: int) -> None:
    when = api.stack.clock.now() - timedelta(days=days)
    batch = [
        {"type": "track", "userId": user, "event": "signed_up", "messageId": str(uuid.uuid4()),
         "timestamp": when.isoformat()},
        {"type": "track", "userId": user, "event": "project_created", "messageId": str(uuid.uuid4()),
         "timestamp": (when + timedelta(hours=1)).isoformat()},
    ]  # fmt: skip
    response = api.post("/v1/batch", {"batch": batch})
    assert response.status_code == 200, response.text


def _inbox(api: Api, key: str, token: str) -> dict[str, Any]:
    response = api.session.get(
        f"{api.base_url}/v1/inbox",
        headers={"Authorization": f"Bearer {key}", "X-Nudge-User-Token": token},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _wait(check: Any, seconds: float = 60) -> Any:
    deadline = time.monotonic() + seconds
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.25)


def test_the_script_renders_the_checklist_and_a_survey_and_the_answer_reaches_the_users_state(
    api: Api,
    site: tuple[str, Path],  # noqa: F811 - the fixture imported above
    site_key: str,  # noqa: F811
) -> None:
    from playwright.sync_api import sync_playwright

    # Given a user who signed up four days ago, made a project, and never finished setup: the
    # shipped rule asks them in-app what is in the way
    user = _unheld(f"inapp-{uuid.uuid4().hex[:8]}")
    _signed_up_days_ago(api, user, 4)
    secret = api.user_token_secret.encode()
    token = inbox_token(secret, user, api.stack.clock.now() + timedelta(hours=1))
    # (reading the user through /_local settles the stack: stream, dispatch and notify have run)
    messages = _wait(lambda: api.user(user) and _inbox(api, api.client_key, token)["messages"])
    assert [m["rule"] for m in messages] == [RULE]
    [survey] = messages
    # And a page of the product's origin with one script tag
    origin, root = site
    api_url = api.base_url.replace("127.0.0.1", "localhost")
    values = {"script": f"{api_url}/v1/nudge.js", "key": site_key, "token": token}
    (root / f"{user}.html").write_text(PAGE % {k: json.dumps(v) for k, v in values.items()}, encoding="utf-8")

    # When Chromium opens it and the user picks an answer
    errors: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            page = browser.new_page()
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
            page.goto(f"{origin}/{user}.html")
            page.wait_for_selector("[data-nudge][data-ready]", state="attached", timeout=30_000)
            # Then the checklist shows the milestones, one of four done, setup next (Playwright's
            # CSS selectors pierce the open shadow root)
            items = page.locator(".checklist li")
            assert items.count() == len(RULES.plan.milestones)
            assert page.locator(".checklist li.done").all_inner_texts() == ["\u2713 Created a first project."]
            assert page.locator(".checklist li.next").get_attribute("data-milestone") == "setup_done"
            # and the survey its question and choices
            box = page.locator(f'article[data-message="{survey["message_id"]}"]')
            assert box.locator(".question").inner_text() == "What is keeping you from finishing setup?"
            spec = RULES.templates["setup_blocker_survey"].in_app
            assert spec is not None
            assert spec.survey is not None
            choices = box.locator("button.choice").evaluate_all("(bs) => bs.map((b) => b.dataset.choice)")
            assert choices == spec.survey.choices
            # (the buttons show the labels; the value is what lands)
            assert (
                box.locator('button.choice[data-choice="too_complex"]').inner_text() == "It's too complicated"
            )
            box.locator('button.choice[data-choice="too_complex"]').click()
            page.wait_for_selector(".thanks", timeout=30_000)
            # the page outside the shadow root never sees the widget's elements
            assert page.evaluate("document.querySelectorAll('.checklist, .survey').length") == 0
        finally:
            browser.close()

    # Then the answer is in the user's state: survey_answered counted once, blocker kept, and the
    # render reported the survey seen
    def answered() -> dict[str, Any] | None:
        document = api.user(user)
        return document if document["event_counts"].get("survey_answered") else None

    document = _wait(answered)
    assert errors == []
    assert document is not None, "the answer never reached the user's state"
    assert document["event_counts"]["survey_answered"] == 1
    assert document["event_counts"]["in_app_seen"] == 1
    assert document["last_values"]["survey_answered"]["blocker"] == "too_complex"
    # and the inbox shows the survey answered
    [after] = _inbox(api, api.client_key, token)["messages"]
    assert (after["status"], after["answer"]) == ("answered", "too_complex")


def test_a_forged_or_expired_token_or_a_key_alone_opens_no_inbox(
    api: Api, capsys: pytest.CaptureFixture[str]
) -> None:
    user = f"inapp-forged-{uuid.uuid4().hex[:8]}"
    secret = api.user_token_secret.encode()
    now = api.stack.clock.now()
    # The token as `nudge keys user-token --inbox` signs it (what a product's server does)
    good = nudge_keys(api, capsys, "user-token", user, "--inbox", "3600").strip()
    forged = inbox_token(b"not-the-secret-at-all-0123456789", user, now + timedelta(hours=1))
    expired = inbox_token(secret, user, now - timedelta(seconds=1))
    key = {"Authorization": f"Bearer {api.client_key}"}
    for path in ("/v1/inbox", "/v1/checklist"):
        for headers in ({}, {"X-Nudge-User-Token": forged}, {"X-Nudge-User-Token": expired}):
            response = api.session.get(f"{api.base_url}{path}", headers={**key, **headers}, timeout=30)
            assert response.status_code == 401, (path, headers, response.text)
            assert response.json()["errors"][0]["field"] == "x-nudge-user-token"
        # a token without a key
        response = api.session.get(f"{api.base_url}{path}", headers={"X-Nudge-User-Token": good}, timeout=30)
        assert response.status_code == 401
    response = api.session.get(
        f"{api.base_url}/v1/checklist", headers={**key, "X-Nudge-User-Token": good}, timeout=30
    )
    assert response.status_code == 200, response.text
    assert response.json()["checklist"]["done"] == 0


def test_an_answer_to_a_message_that_is_not_the_users_is_400_naming_it(api: Api) -> None:
    user = f"inapp-foreign-{uuid.uuid4().hex[:8]}"
    token = inbox_token(api.user_token_secret.encode(), user, api.stack.clock.now() + timedelta(hours=1))
    response = api.session.post(
        f"{api.base_url}/v1/inbox/someone-elses-message/answer",
        json={"answer": "too_complex"},
        headers={"Authorization": f"Bearer {api.client_key}", "X-Nudge-User-Token": token},
        timeout=30,
    )
    assert response.status_code == 400, response.text
    [error] = response.json()["errors"]
    assert error["field"] == "messageId"
    assert "no such message" in error["message"]
