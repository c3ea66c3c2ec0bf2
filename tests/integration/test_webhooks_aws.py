"""Escalations to Slack and a webhook through the real dispatch, escalate and webhook handlers on
moto (DynamoDB ledger, SQS, SSM), every queue message delivered twice: one case for CS, one Slack
message and one signed post, each verified by its receiver."""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from nudge import bootstrap, clock
from nudge.bootstrap import shared
from nudge.model.queue import DecisionBatch
from nudge.settings import Settings
from nudge.tools.local.aws import create_queues, create_usage_resources
from tests.integration.conftest import REPO
from tests.integration.test_dispatch_actions import NOW, Context, Pipeline, a_user, decision, twice
from tests.integration.test_webhooks_http import SECRET, Receiver
from tests.shipped import load_handler


@pytest.fixture
def hooks(
    aws: None,
    template_path: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    use_clock: Callable[[clock.Source], None],
) -> Iterator[tuple[Pipeline, Any, Receiver, Receiver]]:
    suffix = uuid.uuid4().hex[:8]
    with Receiver() as crm, Receiver(verify=False) as slack:
        rules = tmp_path / "rules"
        shutil.copytree(REPO / "rules", rules)
        (rules / "destinations.yaml").write_text(
            f"destinations:\n  - {{id: crm, webhook: '{crm.url}'}}\n  - {{id: cs_slack, slack: true}}\n"
            "escalations: [cs_slack, crm]\n"
        )
        settings = Settings(
            usage_table=f"usage-{suffix}",
            ledger_table=f"ledger-{suffix}",
            keys_path=f"/nudge/it-{suffix}/keys",
            suppression_table=f"suppression-{suffix}",
        )
        ssm = boto3.client("ssm")
        create_usage_resources(boto3.client("dynamodb"), ssm, template_path, settings, ["wk"])
        queues = create_queues(boto3.client("sqs"), template_path, f"it-{suffix}")
        path = f"/nudge/it-{suffix}/destinations"
        ssm.put_parameter(Name=f"{path}/crm", Value=SECRET, Type="SecureString")
        ssm.put_parameter(Name=f"{path}/cs_slack", Value=slack.url, Type="SecureString")
        ssm.put_parameter(Name=f"/nudge/it-{suffix}/suppression", Value="s" * 32, Type="SecureString")
        env = {
            "NUDGE_USAGE_TABLE": settings.usage_table,
            "NUDGE_LEDGER_TABLE": settings.ledger_table,
            "NUDGE_RULES_DIR": str(rules),
            "NUDGE_EMAIL_QUEUE_URL": queues["EmailQueue"],
            "NUDGE_NOTIFY_QUEUE_URL": queues["NotifyQueue"],
            "NUDGE_ESCALATION_QUEUE_URL": queues["EscalationQueue"],
            "NUDGE_WEBHOOK_QUEUE_URL": queues["WebhookQueue"],
            "NUDGE_CS_QUEUE_URL": queues["CsQueue"],
            "NUDGE_SUPPRESSION_TABLE": settings.suppression_table,
            "NUDGE_SUPPRESSION_SECRET_PARAM": f"/nudge/it-{suffix}/suppression",
            "NUDGE_DESTINATIONS_PATH": path,
            "NUDGE_WEBHOOK_ALLOW_LOCAL_HTTP": "true",
        }
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        bootstrap.reset()
        use_clock(lambda: NOW)
        try:
            pipeline = Pipeline(
                settings=settings,
                queues=queues,
                dispatch=load_handler(REPO / "functions/dispatch/app.py", f"dispatch_app_{suffix}"),
                email=None,  # type: ignore[arg-type]  # not used here
                escalate=load_handler(REPO / "functions/escalate/app.py", f"escalate_app_{suffix}"),
                ledger=shared.ledger_from(bootstrap.get_settings()),
            )
            webhook = load_handler(REPO / "functions/webhook/app.py", f"webhook_app_{suffix}")
            yield pipeline, webhook, crm, slack
        finally:
            bootstrap.reset()


def test_an_escalation_reaches_cs_slack_and_a_webhook_once_each_whatever_is_redelivered(
    hooks: tuple[Pipeline, Any, Receiver, Receiver],
) -> None:
    pipeline, webhook, crm, slack = hooks
    # Given an account's user whose evaluation escalates it
    a_user(pipeline.settings, "ann", "acct-1")
    esc = "d-esc-hooks"
    pipeline.publish(
        DecisionBatch(
            user="ann",
            account="acct-1",
            decided_at=NOW,
            decisions=[decision("at_risk_account", "escalate", "cs", "ann", esc, "cs_escalation")],
        )
    )
    # When dispatch, the escalate function and the webhook function each get everything twice
    assert pipeline.dispatch.handler(twice(pipeline.take("DecisionQueue")), Context()) == {
        "batchItemFailures": []
    }
    assert pipeline.escalate.handler(twice(pipeline.take("EscalationQueue")), Context()) == {
        "batchItemFailures": []
    }
    posts = pipeline.take("WebhookQueue")
    assert sorted(json.loads(r["body"])["decision_id"] for r in posts["Records"]) == sorted(
        [f"{esc}.cs_slack", f"{esc}.crm"] * 2  # routed by both copies of the batch: the claims dedupe
    )
    assert webhook.handler(twice(posts), Context()) == {"batchItemFailures": []}
    # Then CS has one case, Slack one readable message, the CRM one signed escalation
    cases = boto3.client("sqs").receive_message(QueueUrl=pipeline.queues["CsQueue"], MaxNumberOfMessages=10)
    assert len(cases.get("Messages", [])) == 1
    assert slack.attempts == 1
    [message] = slack.bodies
    assert message["text"] == "At-risk account: Initech ($9,000/month)"
    assert "nudge rules explain ann" in json.dumps(message["blocks"])
    assert crm.attempts == 1
    [case] = crm.verified
    assert (case["type"], case["data"]["account_name"], case["data"]["case_id"]) == (
        "escalation.opened",
        "Initech",
        esc,
    )
    assert crm.headers[0]["webhook-id"] == f"{esc}.crm"
    for copy in ("cs_slack", "crm"):
        entry = pipeline.ledger.get("ACCOUNT#acct-1", f"{esc}.{copy}")
        assert entry is not None
        assert (entry.decision.channel, entry.status) == ("webhook", "sent")
