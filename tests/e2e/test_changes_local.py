"""Segment changes out, end to end on the local stack: a user's first segment, reached through the
ingest API, arrives as a `Segment Entered` event on a queue an EventBridge rule on Nudge's bus
targets (moto's EventBridge delivers put_events to rules' SQS targets)."""

from __future__ import annotations

import json
import time
import uuid
from datetime import timedelta
from typing import Any

import boto3
import pytest

from nudge.tools.local.wiring import QUEUE_PREFIX
from tests.e2e.conftest import Api

pytestmark = [pytest.mark.e2e]
BUS = f"{QUEUE_PREFIX}-ChangesBus"


def client(api: Api, service: str) -> Any:
    return boto3.client(
        service,
        endpoint_url=api.stack.endpoint_url,
        region_name="us-east-1",
        aws_access_key_id="local",
        aws_secret_access_key="local",
    )


def test_a_segment_entry_reaches_the_queue_an_eventbridge_rule_targets(api: Api, uid: str) -> None:
    # Given a rule on Nudge's bus sending segment entries to a queue of ours
    sqs, events = client(api, "sqs"), client(api, "events")
    queue = sqs.create_queue(QueueName=f"crm-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    rule = f"entries-{uuid.uuid4().hex[:8]}"
    events.put_rule(
        Name=rule,
        EventBusName=BUS,
        EventPattern=json.dumps(
            {"source": ["nudge"], "detail-type": ["Segment Entered"], "detail": {"user_id": [uid]}}
        ),
    )
    events.put_targets(Rule=rule, EventBusName=BUS, Targets=[{"Id": "crm", "Arn": arn}])
    try:
        # When a new user signs up (their first segment)
        when = api.stack.clock.now() - timedelta(minutes=1)
        track = {
            "userId": uid,
            "event": "signed_up",
            "messageId": str(uuid.uuid4()),
            "timestamp": when.isoformat(),
        }
        assert api.post("/v1/track", track).status_code == 200
        api.stack.settle()
        # Then one Segment Entered event for them is on our queue, in the documented shape
        segment = api.user(uid)["segments"]
        received: list[dict[str, Any]] = []
        deadline = time.monotonic() + 30
        while not received and time.monotonic() < deadline:
            answer = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=1)
            received += [json.loads(m["Body"]) for m in answer.get("Messages", [])]
        [event] = received
        assert (event["source"], event["detail-type"]) == ("nudge", "Segment Entered")
        detail = event["detail"]
        assert (detail["user_id"], detail["previous_segment"]) == (uid, None)
        assert [detail["segment"]] == (segment if isinstance(segment, list) else [segment])
        assert len(detail["change_id"]) == 32
    finally:
        events.remove_targets(Rule=rule, EventBusName=BUS, Ids=["crm"])
        events.delete_rule(Name=rule, EventBusName=BUS)
        sqs.delete_queue(QueueUrl=queue)
