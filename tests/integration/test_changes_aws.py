"""The changes function on moto: the sample segment-record stream event (events/) -> its changes
on the bus -> a rule's SQS target; and a record handled twice makes the same change ids. A journey's
conversion written by the segment store reaches the bus once, from the table's own stream."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest

from nudge import bootstrap
from nudge.adapters.dynamo.segments import DynamoSegmentStore
from nudge.adapters.dynamo.stream_range import lambda_record
from nudge.model.journeys import JourneyInstance
from nudge.model.segments import SegmentRecord
from nudge.tools.local.aws import _create_table
from tests.integration.conftest import REPO
from tests.shipped import load_handler


class Context:
    function_name = "changes"
    memory_limit_in_mb = 256
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:changes"
    aws_request_id = "req-changes"


@pytest.fixture
def bus(aws: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, str]]:
    events, sqs = boto3.client("events"), boto3.client("sqs")
    events.create_event_bus(Name="nudge-test-changes")
    queue = sqs.create_queue(QueueName="crm-changes")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(
        Name="all", EventBusName="nudge-test-changes", EventPattern=json.dumps({"source": ["nudge"]})
    )
    events.put_targets(Rule="all", EventBusName="nudge-test-changes", Targets=[{"Id": "q", "Arn": arn}])
    monkeypatch.setenv("NUDGE_EVENT_BUS_NAME", "nudge-test-changes")
    bootstrap.reset()
    yield sqs, queue
    bootstrap.reset()


def drain(sqs: Any, queue: str) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = []
    while answer := sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages"):
        got += [json.loads(m["Body"]) for m in answer]
        for m in answer:
            sqs.delete_message(QueueUrl=queue, ReceiptHandle=m["ReceiptHandle"])
    return got


def test_the_sample_segment_event_reaches_a_rule_target_as_exit_entry_and_band_change(
    bus: tuple[Any, str],
) -> None:
    sqs, queue = bus
    app = load_handler(REPO / "functions/changes/app.py", "changes_app")
    event = json.loads((REPO / "events/stream-segments-modified.json").read_text())
    # When the sample record is handled, and handled again (a stream retry)
    assert app.handler(event, Context()) == {"batchItemFailures": []}
    first = drain(sqs, queue)
    assert app.handler(event, Context()) == {"batchItemFailures": []}
    again = drain(sqs, queue)
    # Then the user left habitual, entered declining and moved from band high to mid, on the bus
    assert sorted(
        (e["detail-type"], e["detail"].get("segment") or e["detail"].get("to_band")) for e in first
    ) == [
        ("Score Band Changed", "mid"),
        ("Segment Entered", "declining"),
        ("Segment Exited", "habitual"),
    ]
    assert {e["source"] for e in first} == {"nudge"}
    assert {e["detail"]["account_id"] for e in first} == {"acct-7"}
    # ... and the retry repeats the same change ids, for consumers to drop
    assert sorted(e["detail"]["change_id"] for e in again) == sorted(e["detail"]["change_id"] for e in first)


def test_a_journey_conversion_reaches_the_bus_once_from_the_write_that_recorded_it(
    bus: tuple[Any, str], template_path: Path
) -> None:
    sqs, queue = bus
    dynamodb = boto3.client("dynamodb")
    _create_table(dynamodb, template_path, "UsageTable", "usage-conversions")
    segments = DynamoSegmentStore(dynamodb, "usage-conversions")
    entered = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
    paid = entered + timedelta(days=3)
    # Given a user's segment record written three times: the instance live, converted, then a later write
    live = JourneyInstance(
        journey="upgrade_sequence", step="pause", step_since=entered, entered_at=entered, decided=()
    )
    converted = live.model_copy(
        update={
            "step": None,
            "exited_at": paid,
            "converted_at": paid,
            "reason": "converted",
            "goal": "event:invoice_paid",
        }
    )
    base = SegmentRecord(account_id="acct-7")
    for version, (instance, at) in enumerate([(live, entered), (converted, paid), (converted, paid)]):
        journeys = {"upgrade_sequence": instance}
        segments.save(
            "ann", base.model_copy(update={"journeys": journeys, "state_version": version}), version, at
        )
    # When the changes function handles the table's stream records, as Lambda delivers them
    stream_arn = dynamodb.describe_table(TableName="usage-conversions")["Table"]["LatestStreamArn"]
    streams = boto3.client("dynamodbstreams")
    [shard] = streams.describe_stream(StreamArn=stream_arn)["StreamDescription"]["Shards"]
    iterator = streams.get_shard_iterator(
        StreamArn=stream_arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    records = streams.get_records(ShardIterator=iterator)["Records"]
    assert len(records) == 3
    event = {"Records": [lambda_record(r, stream_arn, paid) for r in records]}
    app = load_handler(REPO / "functions/changes/app.py", "changes_app")
    assert app.handler(event, Context()) == {"batchItemFailures": []}
    # Then one Journey Converted is on the bus, with its documented detail
    [change] = [e for e in drain(sqs, queue) if e["detail-type"] == "Journey Converted"]
    assert change["source"] == "nudge"
    detail = change["detail"]
    assert {k: detail[k] for k in ("user_id", "account_id", "journey", "goal", "variant")} == {
        "user_id": "ann",
        "account_id": "acct-7",
        "journey": "upgrade_sequence",
        "goal": "event:invoice_paid",
        "variant": "",
    }
    assert (detail["entered_at"], detail["at"]) == (entered.isoformat(), paid.isoformat())


def test_the_sample_webhook_delivery_is_what_the_webhook_handler_reads(
    aws: None, monkeypatch: pytest.MonkeyPatch, template_path: Path
) -> None:
    # Given the ledger table (from the template) without the sample's decision in it
    _create_table(boto3.client("dynamodb"), template_path, "LedgerTable", "ledger-webhook-sample")
    monkeypatch.setenv("NUDGE_LEDGER_TABLE", "ledger-webhook-sample")
    bootstrap.reset()
    try:
        app = load_handler(REPO / "functions/webhook/app.py", "webhook_app")
        event = json.loads((REPO / "events/webhook-delivery.json").read_text())
        # When the sample SQS event is handled: its Delivery is read, its entry found gone, nothing posted
        answer = app.handler(event, Context())
    finally:
        bootstrap.reset()
    assert answer == {"batchItemFailures": []}
