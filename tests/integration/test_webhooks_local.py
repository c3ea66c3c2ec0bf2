"""Webhooks through the whole local stack: an event posted to the API -> evaluate -> dispatch ->
WebhookQueue -> the real webhook function -> a real HTTP receiver on localhost, which verifies the
signature with the Standard Webhooks library. A receiver that is down: retried, then kept in
WebhookDLQ with its decision still queued; redriven once it is back, it is posted once.

A stack of its own (rules with destinations), so here and not in tests/e2e, whose shared stack
runs the shipped rules and would be wiped by a second stack in the process.
"""

from __future__ import annotations

import json
import shutil
import socket
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests

from nudge.tools.local.environment import DESTINATIONS_PATH
from nudge.tools.local.http import LocalApiServer
from nudge.tools.local.stack import LocalStack
from tests.integration.test_webhooks_http import SECRET, Receiver
from tests.shipped import ROOT

WRITE_KEY = "webhooks-local-key"
TRIGGERS = """
  - id: signup_to_crm
    kind: onboarding
    description: Every signup goes to the CRM.
    when: {count: {event: signed_up, within: 1d, at_least: 1}}
    action: webhook
    destination: crm
    template: come_back
    cooldown: 30d
  - id: signup_to_warehouse
    kind: onboarding
    description: Every signup goes to the warehouse too (whose receiver is down).
    when: {count: {event: signed_up, within: 1d, at_least: 1}}
    action: webhook
    destination: warehouse
    template: come_back
    cooldown: 30d
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Setup:
    def __init__(self, stack: LocalStack, base_url: str, receiver: Receiver, warehouse_port: int) -> None:
        self.stack = stack
        self.base_url = base_url
        self.receiver = receiver
        self.warehouse_port = warehouse_port

    def client(self, service: str) -> Any:
        return boto3.client(
            service,
            endpoint_url=self.stack.endpoint_url,
            region_name="us-east-1",
            aws_access_key_id="local",
            aws_secret_access_key="local",
        )


@pytest.fixture
def setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Setup]:
    rules = tmp_path / "rules"
    shutil.copytree(ROOT / "rules", rules)
    warehouse_port = free_port()  # nothing listens there (yet)
    with Receiver() as receiver:
        (rules / "destinations.yaml").write_text(
            "destinations:\n"
            f"  - {{id: crm, webhook: '{receiver.url}'}}\n"
            f"  - {{id: warehouse, webhook: 'http://127.0.0.1:{warehouse_port}/in'}}\n"
        )
        with (rules / "triggers.yaml").open("a") as f:
            f.write(TRIGGERS)
        # Each destination's secret, as a `nudge serve` user gives them
        monkeypatch.setenv("NUDGE_LOCAL_DESTINATIONS", f"crm={SECRET}, warehouse={SECRET}")
        stack = LocalStack(rules_dir=rules, write_keys=[WRITE_KEY], log_level="WARNING")
        with LocalApiServer(stack) as server, stack:
            s = Setup(stack, server.base_url, receiver, warehouse_port)
            stored = s.client("ssm").get_parameter(Name=f"{DESTINATIONS_PATH}/crm", WithDecryption=True)
            assert stored["Parameter"]["Value"] == SECRET
            yield s


def sign_up(s: Setup, user: str) -> None:
    when = s.stack.clock.now() - timedelta(minutes=1)
    body = {
        "batch": [
            {
                "type": "identify",
                "userId": user,
                "messageId": str(uuid.uuid4()),
                "timestamp": when.isoformat(),
                "traits": {"first_name": "Ada"},
            },
            {
                "type": "track",
                "userId": user,
                "event": "signed_up",
                "messageId": str(uuid.uuid4()),
                "timestamp": when.isoformat(),
            },
        ]
    }
    response = requests.post(f"{s.base_url}/v1/batch", json=body, auth=(WRITE_KEY, ""), timeout=60)
    assert response.status_code == 200, response.text


def ledger(s: Setup, user: str) -> dict[str, tuple[str, str, str]]:
    document = requests.get(f"{s.base_url}/_local/users/{user}", timeout=30).json()
    return {e["rule"]: (e["outcome"], e["status"], e["outcome_reason"]) for e in document["ledger"]}


def test_a_signup_reaches_a_verified_receiver_once_and_a_receiver_down_keeps_its_post_for_a_redrive(
    setup: Setup,
) -> None:
    s = setup
    user = f"wh-{uuid.uuid4().hex[:10]}"
    # When a user signs up, and the pipeline runs to quiet
    sign_up(s, user)
    s.stack.settle()
    # Then the CRM's receiver got one post, verified with the Standard Webhooks library
    [posted] = s.receiver.verified
    assert posted["type"] == "rule.fired"
    assert (posted["data"]["rule"], posted["data"]["user"]["id"]) == ("signup_to_crm", user)
    [headers] = s.receiver.headers
    entries = ledger(s, user)
    assert entries["signup_to_crm"][:2] == ("send", "sent")
    # ... and the warehouse's post, whose receiver is down, was retried up to the queue's
    # maxReceiveCount and is now in WebhookDLQ, its decision still queued: nothing lost
    sqs = s.client("sqs")
    dead = sqs.receive_message(QueueUrl=s.stack.queue_urls["WebhookDLQ"], MaxNumberOfMessages=10)
    [kept] = dead["Messages"]
    assert json.loads(kept["Body"])["rule"] == "signup_to_warehouse"
    assert entries["signup_to_warehouse"] == ("send", "queued", "receiver_unavailable")

    # When the warehouse comes back and an operator redrives the DLQ to the webhook queue
    with Receiver(port=s.warehouse_port) as warehouse:
        sqs.send_message(QueueUrl=s.stack.queue_urls["WebhookQueue"], MessageBody=kept["Body"])
        sqs.delete_message(QueueUrl=s.stack.queue_urls["WebhookDLQ"], ReceiptHandle=kept["ReceiptHandle"])
        s.stack.settle()
        # Then it is posted once, under the decision's id, and the ledger says sent
        [late] = warehouse.verified
        assert late["data"]["rule"] == "signup_to_warehouse"
    assert ledger(s, user)["signup_to_warehouse"][:2] == ("send", "sent")
    assert len(s.receiver.verified) == 1  # the CRM was not posted again
    assert headers["webhook-id"] != warehouse.headers[0]["webhook-id"]
