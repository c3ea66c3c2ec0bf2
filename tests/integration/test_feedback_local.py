"""A complaint on the local stack stops marketing email but not transactional: rules with a
transactional trigger (a copy of the shipped rules where create_first_project is transactional), a
user at SES's complaint simulator, the mailbox simulator's events through the real feedback function."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import requests

from nudge.tools.local.http import LocalApiServer
from nudge.tools.local.stack import LocalStack
from tests.e2e.test_actions_local import unheld
from tests.shipped import ONE_SHOT_DIR


@pytest.fixture
def local(tmp_path: Path) -> Iterator[tuple[LocalStack, str]]:
    rules = tmp_path / "rules"
    shutil.copytree(ONE_SHOT_DIR, rules)
    triggers = rules / "triggers.yaml"
    text = triggers.read_text()
    marker = "  - id: create_first_project\n    kind: onboarding\n"
    assert marker in text
    # The first-project email becomes transactional (say, an account notice): no consent, caps or
    # holdout apply, and only an address that bounces may stop it.
    triggers.write_text(text.replace(marker, marker + "    transactional: true\n"))
    stack = LocalStack(rules_dir=rules, log_level="WARNING")
    with LocalApiServer(stack) as server, stack:
        yield stack, server.base_url


def post(stack: LocalStack, url: str, user: str, *messages: dict[str, Any]) -> None:
    when = (stack.clock.now() - timedelta(minutes=1)).isoformat()
    batch = [{"userId": user, "messageId": str(uuid.uuid4()), "timestamp": when, **m} for m in messages]
    answer = requests.post(
        f"{url}/v1/batch", json={"batch": batch}, auth=(stack.write_keys[0], ""), timeout=60
    )
    assert answer.status_code == 200, answer.text


def sent(url: str, user: str) -> list[dict[str, Any]]:
    answer = requests.get(f"{url}/_local/outbox", params={"user": user}, timeout=60)
    assert answer.status_code == 200, answer.text
    messages: list[dict[str, Any]] = answer.json()["messages"]
    return messages


def test_a_complaint_unsubscribes_the_address_from_marketing_but_not_transactional(
    local: tuple[LocalStack, str],
) -> None:
    stack, url = local
    user = unheld(f"complainer-{uuid.uuid4().hex[:8]}")
    # Given a stalled signup at the complaint simulator, sent finish_setup (marketing), who complains
    traits = {"email": f"complaint+{user}@simulator.amazonses.com", "first_name": "Ada", "timezone": "UTC"}
    post(stack, url, user, {"type": "identify", "traits": {**traits, "consent": {"email": True}}})
    post(stack, url, user, {"type": "track", "event": "signed_up"})
    stack.advance_clock(stack.clock.now() + timedelta(hours=36))
    [first] = sent(url, user)
    assert (first["rule"], first["feedback"].keys() >= {"delivered", "complained"}) == ("finish_setup", True)
    # When the marketing reminder comes due
    stack.advance_clock(stack.clock.now() + timedelta(days=4))
    # Then it is suppressed: the complaint put the address on the suppression list for marketing
    ledger = requests.get(f"{url}/_local/users/{user}", timeout=60).json()["ledger"]
    reminders = [(e["outcome"], e["outcome_reason"]) for e in ledger if e["rule"] == "finish_setup"][1:]
    assert reminders[:1] == [("suppressed", "suppression_list")]
    # When they finish setup, and the (transactional) first-project email comes due a day later
    post(stack, url, user, {"type": "track", "event": "setup_completed"})
    stack.advance_clock(stack.clock.now() + timedelta(days=2))
    # Then it goes to the same address: a complaint does not stop transactional mail
    assert [(m["rule"], m["to"]) for m in sent(url, user)] == [
        ("finish_setup", traits["email"]),
        ("create_first_project", traits["email"]),
    ]
