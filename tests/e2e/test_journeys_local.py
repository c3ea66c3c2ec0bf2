"""The shipped declining rescue journey end to end on the local stack, with clock moves: the
quick-win push, the wait, the survey in the user's in-app inbox, the answer posted from the inbox,
the branch for that blocker, customer success for a high-value account only; and the journey
stopping the moment the user comes back, a message already queued included.

Its own stack (marked own_stack: it runs before the shared stack starts) on the shipped rules/
(the shared stack runs the one-shot triggers the machinery's tests name: tests/shipped.py).
"""

from __future__ import annotations

import re
import shutil
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from moto.moto_api._internal.models import moto_api_backend

from nudge.domain.inbox import inbox_token
from nudge.domain.verdicts import in_group
from nudge.rulebook.loader import load_rules
from nudge.tools.cli import main
from nudge.tools.local.http import LocalApiServer
from nudge.tools.local.stack import LocalStack
from tests.e2e.conftest import ADMIN_KEY, CLIENT_KEY, SHARED, USER_TOKEN_SECRET, WRITE_KEY, Api

pytestmark = [pytest.mark.e2e, pytest.mark.moves_clock, pytest.mark.own_stack]
ROOT = Path(__file__).resolve().parents[2]
DAY = timedelta(days=1)
HOUR = timedelta(hours=1)


@pytest.fixture(scope="module")
def journey_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    base = tmp_path_factory.mktemp("journeys-stack")
    rules = base / "rules"
    shutil.copytree(ROOT / "rules", rules)
    load_rules(rules)  # fails here, not in a container, if the copy is broken
    stack = LocalStack(
        rules_dir=rules,
        write_keys=[WRITE_KEY],
        client_keys=[CLIENT_KEY],
        admin_keys=[ADMIN_KEY],
        user_token_secret=USER_TOKEN_SECRET,
        log_level="WARNING",
    )
    assert not SHARED, "the shared stack is up: own_stack modules run before it (tests/conftest.py)"
    try:
        with LocalApiServer(stack) as server, stack, requests.Session() as session:
            yield Api(stack, server.base_url, session)
    finally:
        # moto's backends are process-wide: the shared stack, next, starts from nothing, as it would
        # have without this module.
        moto_api_backend.reset()


def midday_zone(now: datetime) -> str:
    """An IANA zone where it is around noon at `now` (push has quiet hours at night)."""
    shift = (12 - now.astimezone(UTC).hour) % 24
    return f"Etc/GMT-{shift}" if shift <= 12 else f"Etc/GMT+{24 - shift}"


def unheld(prefix: str, rules_dir_salt: str = "acme-2025") -> str:
    """A user id neither the control group (5%) nor the journey's holdout (10%) holds out."""
    for n in range(200):
        user = f"{prefix}-{uuid.uuid4().hex[:8]}-{n}"
        if not in_group(rules_dir_salt, user, 5) and not in_group("journey:declining_rescue", user, 10):
            return user
    raise AssertionError("no id outside the holdouts")


def declining(api: Api, user: str, account: str, mrr: int) -> None:
    """Five weeks of daily use that stopped 23 days ago: declining now (not dormant)."""
    now = api.stack.clock.now()

    def at(days: float) -> str:
        return (now - timedelta(days=days)).isoformat()

    def track(event: str, days: float, **properties: Any) -> dict[str, Any]:
        return {"type": "track", "userId": user, "event": event, "properties": properties,
                "messageId": str(uuid.uuid4()), "timestamp": at(days)}  # fmt: skip

    batch = [
        {"type": "identify", "userId": user, "messageId": str(uuid.uuid4()), "timestamp": at(60),
         "traits": {"email": f"{user}@example.com", "push_token": f"token-{user}", "timezone": midday_zone(now),
                    "consent": {"email": True, "push": True}}},
        {"type": "group", "userId": user, "groupId": account, "messageId": str(uuid.uuid4()), "timestamp": at(60),
         "traits": {"name": f"Acme {account}", "mrr": mrr, "seats": 30 if mrr >= 2000 else 3, "plan": "business"}},
        track("signed_up", 60), track("setup_completed", 60), track("teammate_invited", 59),
        *(track("project_created", 58 - i) for i in range(35)),
    ]  # fmt: skip
    response = api.post("/v1/batch", {"batch": batch})
    assert response.status_code == 200, response.text


def post(api: Api, user: str, event: str, **properties: Any) -> None:
    body = {"type": "track", "userId": user, "event": event, "properties": properties,
            "messageId": str(uuid.uuid4()), "timestamp": api.stack.clock.now().isoformat()}  # fmt: skip
    response = api.post("/v1/track", body)
    assert response.status_code == 200, response.text


def move_clock(api: Api, delta: timedelta) -> None:
    when = api.stack.clock.now() + delta
    response = api.session.post(f"{api.base_url}/_local/clock", json={"now": when.isoformat()}, timeout=600)
    assert response.status_code == 200, response.text


def sent(api: Api, user: str) -> list[tuple[str, str]]:
    response = api.session.get(f"{api.base_url}/_local/outbox", params={"user": user}, timeout=60)
    assert response.status_code == 200, response.text
    return [(m["channel"], m.get("template") or m["subject"]) for m in response.json()["messages"]]


def decided(api: Api, user: str) -> list[tuple[str, str, str]]:
    response = api.session.get(f"{api.base_url}/_local/decisions", params={"user": user}, timeout=60)
    assert response.status_code == 200, response.text
    return [(d["step"], d["outcome"], d["outcome_reason"]) for d in response.json()["decisions"]]


def inbox(api: Api, user: str) -> list[dict[str, Any]]:
    """The user's in-app inbox as the product's front end reads it: a client key and the user token."""
    token = inbox_token(USER_TOKEN_SECRET.encode(), user, api.stack.clock.now() + HOUR)
    headers = {"Authorization": f"Bearer {api.client_key}", "X-Nudge-User-Token": token}
    response = api.session.get(f"{api.base_url}/v1/inbox", headers=headers, timeout=60)
    assert response.status_code == 200, response.text
    messages: list[dict[str, Any]] = response.json()["messages"]
    return messages


def answer(api: Api, user: str, message_id: str, choice: str) -> None:
    """The user picks a survey choice in the inbox (what nudge.js posts)."""
    token = inbox_token(USER_TOKEN_SECRET.encode(), user, api.stack.clock.now() + HOUR)
    headers = {"Authorization": f"Bearer {api.client_key}", "X-Nudge-User-Token": token}
    response = api.session.post(
        f"{api.base_url}/v1/inbox/{message_id}/answer", json={"answer": choice}, headers=headers, timeout=60
    )
    assert response.status_code == 200, response.text


def escalated(api: Api, account: str) -> list[dict[str, Any]]:
    response = api.session.get(f"{api.base_url}/_local/escalations", timeout=60)
    assert response.status_code == 200, response.text
    cases: list[dict[str, Any]] = response.json()["escalations"]
    return [c for c in cases if c.get("account_id") == account]


def test_the_rescue_runs_end_to_end_and_escalates_a_high_value_account_only(journey_api: Api) -> None:
    api = journey_api
    big, small = unheld("big"), unheld("small")
    big_account, small_account = f"acct-{uuid.uuid4().hex[:8]}", f"acct-{uuid.uuid4().hex[:8]}"
    # Given two users declining for two weeks, one of a high-value account
    declining(api, big, big_account, mrr=5000)
    declining(api, small, small_account, mrr=50)
    # Then each gets the quick-win push on entering the segment
    assert [c for c, _ in sent(api, big)] == ["push"]
    assert [c for c, _ in sent(api, small)] == ["push"]
    # When three days pass, the one-question survey is in each user's in-app inbox
    move_clock(api, 3 * DAY + HOUR)
    surveys = {user: inbox(api, user) for user in (big, small)}
    for messages in surveys.values():
        assert [(m["rule"], m["survey"]["property"]) for m in messages] == [("declining_rescue", "blocker")]
    assert [c for c, _ in sent(api, big)] == ["push"]  # the survey took no email
    # When both answer "too complex" from the inbox the next day
    move_clock(api, DAY)
    for user, messages in surveys.items():
        answer(api, user, messages[0]["message_id"], "too_complex")
    move_clock(api, HOUR)
    # Then the low-value user gets the walkthrough the branch chose for that blocker, and no
    # escalation; the high-value account goes to customer success (whose open case holds back
    # marketing to its users: no walkthrough)
    assert [c for c, _ in sent(api, small)] == ["push", "email"]
    assert escalated(api, small_account) == []
    assert len(escalated(api, big_account)) == 1
    assert ("walkthrough", "suppressed", "account_escalated") in decided(api, big)
    assert [step for step, outcome, _ in decided(api, small) if outcome == "send"] == [
        "quick_win",
        "survey",
        "walkthrough",
    ]


def test_the_rescue_stops_when_the_user_comes_back_a_queued_message_included(journey_api: Api) -> None:
    api = journey_api
    user = unheld("back")
    declining(api, user, f"acct-{uuid.uuid4().hex[:8]}", mrr=50)
    assert [c for c, _ in sent(api, user)] == ["push"]
    # Given the in-app survey decided and queued while the notify function (push, SMS, in-app) is
    # not running (a backlog)
    notify_pump = next(p for p in api.stack.queue_pumps if p.source.function == "NotifyFunction")
    original = notify_pump.pump
    notify_pump.pump = lambda: type(notify_pump.stats)()  # type: ignore[method-assign]
    try:
        move_clock(api, 3 * DAY + HOUR)
        assert [step for step, outcome, _ in decided(api, user) if outcome == "send"][-1] == "survey"
        # When the user comes back before it is delivered
        post(api, user, "report_exported")
    finally:
        notify_pump.pump = original  # type: ignore[method-assign]
    move_clock(api, HOUR)
    # Then the queued survey never reaches the inbox, and nothing more is sent, however long the
    # clock runs
    move_clock(api, 10 * DAY)
    assert [c for c, _ in sent(api, user)] == ["push"]
    assert inbox(api, user) == []
    assert ("survey", "suppressed", "converted") in decided(api, user)
    journey = api.user(user)["journeys"]["declining_rescue"]
    assert journey["reason"] == "converted"
    assert journey["converted_at"] is not None


def test_every_record_and_message_delivered_twice_out_of_order_advances_and_sends_once(
    journey_api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    api = journey_api
    user = unheld("twice")

    # Given every event source of the stack delivering each record twice in its batch, out of order
    def doubled(invoke: Any) -> Any:
        def twice(function: str, event: dict[str, Any]) -> dict[str, Any]:
            records = event["Records"]
            result: dict[str, Any] = invoke(function, {**event, "Records": [*reversed(records), *records]})
            return result

        return twice

    for pump in [*api.stack.pumps, *api.stack.queue_pumps]:
        monkeypatch.setattr(pump, "_invoke", doubled(pump._invoke))
    # When the rescue runs its push, its wait, its survey and the answer
    declining(api, user, f"acct-{uuid.uuid4().hex[:8]}", mrr=50)
    move_clock(api, 3 * DAY + HOUR)
    move_clock(api, DAY)
    [survey] = inbox(api, user)
    answer(api, user, survey["message_id"], "too_complex")
    move_clock(api, HOUR)
    # Then each step sent once, in order, and no step was decided twice
    assert [c for c, _ in sent(api, user)] == ["push", "email"]
    assert len(inbox(api, user)) == 1
    steps = [step for step, _, _ in decided(api, user)]
    assert sorted(steps) == sorted(set(steps)) == ["quick_win", "survey", "walkthrough"]


def test_the_report_explain_and_lint_see_the_rescue_in_flight(
    journey_api: Api, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    api = journey_api
    user = unheld("seen")
    declining(api, user, f"acct-{uuid.uuid4().hex[:8]}", mrr=50)
    # Given the survey sent and the journey waiting for the answer
    move_clock(api, 3 * DAY + HOUR)
    assert api.user(user)["journeys"]["declining_rescue"]["step"] == "answer"
    # Then the report draws the journey as a flow, with its arms
    html = api.session.get(f"{api.base_url}/_local/report", timeout=600).text
    assert "journey declining_rescue: rescue" in html
    assert "answer (wait_until)" in html
    # explain, from the running stack, says where the user is and what is next
    rules_dir = str(api.stack.rules_dir)
    assert main(["rules", "explain", user, "--local", api.base_url, "--rules", rules_dir]) == 0
    out = capsys.readouterr().out
    assert "    at step answer since " in out
    assert "on to route as soon as it happens, else to high_value at the timeout" in out
    # and a snapshot of the stack's instances tells the lint what removing the journey would end
    snapshot = tmp_path / "state.jsonl"
    assert main(["journeys", "snapshot", "--local", api.base_url, "--out", str(snapshot)]) == 0
    assert any(f'"user":"{user}"' in line for line in snapshot.read_text().splitlines())
    without = tmp_path / "rules"
    shutil.copytree(api.stack.rules_dir, without)
    (without / "journeys" / "declining_rescue.yaml").unlink()
    shutil.rmtree(without / "tests")  # its cases name the journey: lint would refuse them first
    capsys.readouterr()
    assert main(["rules", "lint", str(without), "--state", str(snapshot)]) == 0
    assert re.search(
        r"  declining_rescue: journey removed: \d+ live instances \(\d+ users\) will exit with reason "
        r"journey_removed",
        capsys.readouterr().out,
    )
