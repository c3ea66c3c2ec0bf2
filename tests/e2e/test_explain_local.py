"""`nudge rules explain USER --local URL` on the local stack: the user's live state (through the
stack's moto endpoint and the same DynamoDB adapters as deployed tables), the ledger's decisions
with their verdicts, and what is next, at the stack's clock."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest

from nudge.tools.cli import main
from tests.e2e.conftest import Api
from tests.shipped import ONE_SHOT_DIR

pytestmark = [pytest.mark.e2e]

VERDICTS = ("sent", "queued to send", "sending", "held out (control_group)", "held out (rule_holdout)")


def explain(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["rules", "explain", *argv, "--rules", str(ONE_SHOT_DIR)])  # the shared stack's rules
    printed = capsys.readouterr()
    assert "Traceback" not in printed.out + printed.err
    return code, printed.out, printed.err


def test_explain_reads_a_user_of_the_local_stack(
    api: Api, uid: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a user who signed up a day ago and set nothing up (finish_setup holds), sent over HTTP
    signed_up = api.stack.clock.now() - timedelta(hours=26)
    batch: list[dict[str, Any]] = [
        {
            "type": "identify",
            "userId": uid,
            "traits": {"email": f"{uid}@example.com", "timezone": "America/New_York"},
            "timestamp": signed_up.isoformat(),
            "messageId": f"{uid}-i",
        },
        {
            "type": "track",
            "userId": uid,
            "event": "signed_up",
            "timestamp": signed_up.isoformat(),
            "messageId": f"{uid}-s",
        },
    ]
    assert api.post("/v1/batch", {"batch": batch}).status_code == 200

    # When a marketer asks the running stack why
    code, out, _ = explain(capsys, uid, "--local", api.base_url, "--json")

    # Then the stack's state answers: the segment, the rule's tests, the ledger's verdict, what is next
    assert code == 0
    data = json.loads(out)
    assert data["source"] == f"the local stack at {api.base_url}"
    assert data["segment"] == "not_activated"
    assert data["record"]["segment"] == "not_activated"
    assert "finish_setup" in data["fired"]
    decided = [(d["rule"], d["verdict"]) for d in data["decisions"]]
    assert [rule for rule, _ in decided] == ["finish_setup"]
    assert decided[0][1] in VERDICTS
    assert any(n["what"].startswith("finish_setup holds; its cooldown (3d) ends") for n in data["next"])
    # ... as the stack's own user route sees it
    assert [d["decision_id"] for d in data["decisions"]] == [
        e["decision_id"] for e in api.user(uid)["ledger"]
    ]

    code, text, _ = explain(capsys, uid, "--local", api.base_url)
    assert code == 0
    assert "Decisions in the ledger, newest first (1 in all):" in text
    assert "What is next:" in text


def test_explain_of_a_user_the_stack_never_saw_says_so(
    api: Api, uid: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = explain(capsys, uid, "--local", api.base_url)
    assert code == 1
    assert f"{uid}: no usage state in the local stack at {api.base_url}" in err


def test_explain_of_a_stack_that_is_not_running_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = explain(capsys, "ann", "--local", "http://127.0.0.1:9")
    assert code == 1
    assert "cannot reach the local stack at http://127.0.0.1:9" in err
    assert "is `nudge serve` running?" in err
