"""The feedback function on moto: events/ses-feedback-bounce.json (an SES configuration-set event as
EventBridge delivers it to the feedback queue) through the real handler, with tables built from
template.yaml: the address is suppressed, the decision's ledger entry notes the bounce, and what
cannot be matched or read is dropped without a retry."""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import ModuleType
from typing import Any

import boto3
import pytest
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError

from nudge import bootstrap, clock
from nudge.adapters.dynamo.ledger import DynamoLedger, entry_item
from nudge.adapters.dynamo.suppression import DynamoSuppressionStore
from nudge.domain.suppression import address_key, blocking
from nudge.model.decisions import Decision
from nudge.model.ledger import LedgerEntry
from nudge.settings import Settings
from nudge.tools.local.aws import create_usage_resources
from tests.integration.conftest import REPO
from tests.shipped import load_handler

NOW = datetime(2026, 3, 2, 9, 0, 5, tzinfo=UTC)
SECRET = "s" * 32
SAMPLE = json.loads((REPO / "events/ses-feedback-bounce.json").read_text())
SAMPLE_USER = "user-ada"
SAMPLE_DECISION = "d-sample-finish-setup"
SAMPLE_ADDRESS = "bounce@simulator.amazonses.com"


class Context:
    function_name = "feedback"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:feedback"
    aws_request_id = "req-feedback"

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


@dataclass
class Feedback:
    settings: Settings
    app: ModuleType
    ledger: DynamoLedger
    suppressions: DynamoSuppressionStore

    def handle(self, event: dict[str, Any]) -> Any:
        return self.app.handler(event, Context())


@pytest.fixture
def feedback(
    aws: None, template_path: Any, monkeypatch: pytest.MonkeyPatch, use_clock: Callable[[clock.Source], None]
) -> Iterator[Feedback]:
    suffix = uuid.uuid4().hex[:8]
    settings = Settings(
        usage_table=f"usage-{suffix}",
        ledger_table=f"ledger-{suffix}",
        keys_path=f"/nudge/it-{suffix}/keys",
        suppression_table=f"suppression-{suffix}",
        suppression_secret_param=f"/nudge/it-{suffix}/suppression-secret",
    )
    create_usage_resources(boto3.client("dynamodb"), boto3.client("ssm"), template_path, settings, ["wk"])
    boto3.client("ssm").put_parameter(
        Name=settings.suppression_secret_param, Value=SECRET, Type="SecureString", Overwrite=True
    )
    for name, value in {
        "NUDGE_LEDGER_TABLE": settings.ledger_table,
        "NUDGE_SUPPRESSION_TABLE": settings.suppression_table,
        "NUDGE_SUPPRESSION_SECRET_PARAM": settings.suppression_secret_param,
    }.items():
        monkeypatch.setenv(name, value)
    bootstrap.reset()
    use_clock(lambda: NOW)
    try:
        yield Feedback(
            settings=settings,
            app=load_handler(REPO / "functions/feedback/app.py", f"feedback_app_{suffix}"),
            ledger=DynamoLedger(boto3.client("dynamodb"), settings.ledger_table),
            suppressions=DynamoSuppressionStore(boto3.client("dynamodb"), settings.suppression_table),
        )
    finally:
        bootstrap.reset()


def sent_entry(ledger: DynamoLedger, user: str, decision_id: str) -> None:
    decision = Decision(
        decision_id=decision_id,
        user=user,
        account=None,
        rule="finish_setup",
        kind="onboarding",
        action="email",
        channel="email",
        template="finish_setup",
        priority=60,
        reason="test",
        facts={},
        decided_at=NOW - timedelta(minutes=1),
    )
    entry = LedgerEntry(
        decision=decision,
        outcome="send",
        status="sent",
        recorded_at=NOW - timedelta(minutes=1),
        updated_at=NOW - timedelta(seconds=30),
        provider_id="0100018e0a1b2c3d-9c8b7a6f-5e4d-4c3b-a291-8f7e6d5c4b3a-000000",
    )
    ledger.client.put_item(TableName=ledger.table, Item=entry_item(entry, timedelta(days=400)))


def key_of(address: str) -> str:
    key = address_key([SECRET.encode()], "email", address)
    assert key is not None
    return key


def emf_lines(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines() if line.startswith("{") and '"_aws"' in line]


def metric(lines: list[dict[str, Any]], name: str) -> float:
    total = 0.0
    for line in lines:
        value = line.get(name, 0)
        total += sum(value) if isinstance(value, list) else float(value)
    return total


def test_the_sample_bounce_suppresses_the_address_for_all_email_and_notes_the_ledger_entry(
    feedback: Feedback, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given the decision the sample's tags name, sent
    sent_entry(feedback.ledger, SAMPLE_USER, SAMPLE_DECISION)
    capsys.readouterr()
    # When the sample event arrives, twice (SQS delivers at least once)
    assert feedback.handle(SAMPLE) == {"batchItemFailures": []}
    assert feedback.handle(SAMPLE) == {"batchItemFailures": []}
    # Then the address is on the suppression list as a bounce, which blocks transactional mail too
    records = feedback.suppressions.find([key_of(SAMPLE_ADDRESS)])
    assert [(r.scope, r.reason) for r in records] == [("email", "bounce")]
    assert blocking(records, "email", "onboarding", transactional=True) is not None
    # ...the entry notes the bounce at SES's time, once
    entry = feedback.ledger.get(f"USER#{SAMPLE_USER}", SAMPLE_DECISION)
    assert entry is not None
    assert entry.feedback == {"bounced": datetime(2026, 3, 2, 9, 0, 1, 520000, tzinfo=UTC)}
    # ...and the metrics count it for its rule, and for the bounce-rate alarm
    lines = emf_lines(capsys.readouterr().out)
    assert metric([x for x in lines if x.get("rule") == "finish_setup"], "Bounced") == 2
    assert metric(lines, "EmailBounced") == 2
    assert metric(lines, "FeedbackUnmatched") == 0


def test_an_event_for_an_unknown_message_still_suppresses_is_counted_and_never_retried(
    feedback: Feedback, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given no ledger entry for the sample's decision (erased, or never this stack's)
    capsys.readouterr()
    # When the sample arrives
    answer = feedback.handle(SAMPLE)
    # Then it is not retried, the address is still suppressed, and it is counted as unmatched
    assert answer == {"batchItemFailures": []}
    assert feedback.suppressions.find([key_of(SAMPLE_ADDRESS)]) != []
    assert metric(emf_lines(capsys.readouterr().out), "FeedbackUnmatched") == 1
    assert feedback.ledger.get(f"USER#{SAMPLE_USER}", SAMPLE_DECISION) is None


def test_a_body_that_is_no_ses_event_is_dropped_and_counted_while_the_rest_of_the_batch_lands(
    feedback: Feedback, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a batch with a bad body beside the sample
    sent_entry(feedback.ledger, SAMPLE_USER, SAMPLE_DECISION)
    event = copy.deepcopy(SAMPLE)
    bad = copy.deepcopy(event["Records"][0])
    bad["messageId"], bad["body"] = "bad-1", '{"source": "aws.ses", "detail": {"eventType": "Nope"}}'
    event["Records"].insert(0, bad)
    capsys.readouterr()
    # When it is handled
    # Then nothing is retried, the bad one is counted, and the sample still lands
    assert feedback.handle(event) == {"batchItemFailures": []}
    assert metric(emf_lines(capsys.readouterr().out), "FeedbackUnreadable") == 1
    entry = feedback.ledger.get(f"USER#{SAMPLE_USER}", SAMPLE_DECISION)
    assert entry is not None
    assert "bounced" in entry.feedback


def test_a_store_that_is_down_fails_the_record_so_the_queue_retries_it(feedback: Feedback) -> None:
    # Given the suppression table gone (DynamoDB unavailable to the function)
    boto3.client("dynamodb").delete_table(TableName=feedback.settings.suppression_table)
    # When the sample arrives alone
    # Then the invocation fails (Powertools raises when every record failed): the queue retries
    # it, then its DLQ; nothing is dropped
    with pytest.raises(BatchProcessingError):
        feedback.handle(SAMPLE)
