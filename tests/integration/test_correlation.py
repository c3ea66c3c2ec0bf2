"""One request followed from the ingest API to the email it led to, through the real ingest, evaluate,
dispatch and email handlers against moto (tables and queues from template.yaml): every log line on
the way carries the API request's id as its correlation id."""

from __future__ import annotations

import base64
import io
import json
import logging
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import pytest
from moto.core.models import DEFAULT_ACCOUNT_ID
from moto.ses.models import ses_backends

from nudge import bootstrap, clock
from nudge.domain.verdicts import in_group
from nudge.observability import logger
from nudge.settings import Settings
from nudge.tools.local.aws import create_queues, create_usage_resources
from tests.shipped import ONE_SHOT_DIR, RULES, load_handler

REPO = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 11, 26, 17, 0, tzinfo=UTC)  # noon in New York
REGION = "us-east-1"
WRITE_KEY = "wk-correlation"


class Context:
    function_name = "correlation"
    memory_limit_in_mb = 512
    invoked_function_arn = f"arn:aws:lambda:{REGION}:{DEFAULT_ACCOUNT_ID}:function:correlation"
    aws_request_id = "lambda-req-1"

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


def _load(path: Path, suffix: str) -> ModuleType:
    return load_handler(path, f"{path.parent.name}_app_{suffix}")


def _lambda_value(value: dict[str, Any]) -> dict[str, Any]:
    """An AttributeValue as Lambda puts it in a stream event: binary as base64 text."""
    kind, inner = next(iter(value.items()))
    if kind == "B":
        return {"B": base64.b64encode(inner).decode()}
    if kind == "M":
        return {"M": {k: _lambda_value(v) for k, v in inner.items()}}
    return {kind: inner}


@dataclass
class World:
    queues: dict[str, str]
    table: str
    ingest: ModuleType
    evaluate: ModuleType
    dispatch: ModuleType
    email: ModuleType
    logs: io.StringIO

    def stream_event(self) -> dict[str, Any]:
        """Everything on the usage table's stream so far, as the evaluate function receives it."""
        streams = boto3.client("dynamodbstreams")
        arn = boto3.client("dynamodb").describe_table(TableName=self.table)["Table"]["LatestStreamArn"]
        records: list[dict[str, Any]] = []
        for shard in streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]:
            iterator = streams.get_shard_iterator(
                StreamArn=arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
            )["ShardIterator"]
            for record in streams.get_records(ShardIterator=iterator, Limit=1000)["Records"]:
                change: dict[str, Any] = dict(record["dynamodb"])
                change.pop("ApproximateCreationDateTime", None)
                for image in ("Keys", "NewImage", "OldImage"):
                    if image in change:
                        change[image] = {k: _lambda_value(v) for k, v in change[image].items()}
                records.append(
                    {
                        "eventID": record["eventID"],
                        "eventName": record["eventName"],
                        "eventSource": "aws:dynamodb",
                        "awsRegion": REGION,
                        "dynamodb": change,
                        "eventSourceARN": arn,
                    }
                )
        return {"Records": records}

    def sqs_event(self, queue: str) -> dict[str, Any]:
        """Everything on `queue`, as one Lambda SQS event (the messages leave the queue)."""
        sqs = boto3.client("sqs")
        records: list[dict[str, Any]] = []
        while messages := sqs.receive_message(QueueUrl=self.queues[queue], MaxNumberOfMessages=10).get(
            "Messages", []
        ):
            for m in messages:
                records.append(
                    {
                        "messageId": m["MessageId"],
                        "receiptHandle": m["ReceiptHandle"],
                        "body": m["Body"],
                        "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "0"},
                        "messageAttributes": {},
                        "md5OfBody": m["MD5OfBody"],
                        "eventSource": "aws:sqs",
                        "eventSourceARN": f"arn:aws:sqs:{REGION}:{DEFAULT_ACCOUNT_ID}:{queue}",
                        "awsRegion": REGION,
                    }
                )
                sqs.delete_message(QueueUrl=self.queues[queue], ReceiptHandle=m["ReceiptHandle"])
        return {"Records": records}

    def log_lines(self) -> list[dict[str, Any]]:
        """What the functions logged (Powertools' JSON lines, as CloudWatch Logs would keep them)."""
        return [json.loads(line) for line in self.logs.getvalue().splitlines() if line.startswith("{")]


@pytest.fixture
def world(
    aws: None, template_path: Path, monkeypatch: pytest.MonkeyPatch, use_clock: Callable[[clock.Source], None]
) -> Iterator[World]:
    suffix = uuid.uuid4().hex[:8]
    settings = Settings(
        usage_table=f"usage-{suffix}",
        ledger_table=f"ledger-{suffix}",
        keys_path=f"/nudge/corr-{suffix}/keys",
        unsubscribe_secret_param=f"/nudge/corr-{suffix}/unsubscribe-secret",
        suppression_table=f"suppression-{suffix}",
        suppression_secret_param=f"/nudge/corr-{suffix}/suppression-secret",
    )
    create_usage_resources(
        boto3.client("dynamodb"), boto3.client("ssm"), template_path, settings, [WRITE_KEY]
    )
    queues = create_queues(boto3.client("sqs"), template_path, f"corr-{suffix}")
    for secret in (settings.unsubscribe_secret_param, settings.suppression_secret_param):
        boto3.client("ssm").put_parameter(Name=secret, Value="s" * 32, Type="SecureString", Overwrite=True)
    boto3.client("ses").verify_email_identity(EmailAddress="hello@acme.example")
    env = {
        "NUDGE_USAGE_TABLE": settings.usage_table,
        "NUDGE_LEDGER_TABLE": settings.ledger_table,
        "NUDGE_KEYS_PATH": settings.keys_path,
        "NUDGE_RULES_DIR": str(ONE_SHOT_DIR),
        "NUDGE_DECISION_QUEUE_URL": queues["DecisionQueue"],
        "NUDGE_EMAIL_QUEUE_URL": queues["EmailQueue"],
        "NUDGE_NOTIFY_QUEUE_URL": queues["NotifyQueue"],
        "NUDGE_ESCALATION_QUEUE_URL": queues["EscalationQueue"],
        "NUDGE_UNSUBSCRIBE_SECRET_PARAM": settings.unsubscribe_secret_param,
        "NUDGE_UNSUBSCRIBE_URL": "https://api.example/v1/unsubscribe",
        "NUDGE_SUPPRESSION_TABLE": settings.suppression_table,
        "NUDGE_SUPPRESSION_SECRET_PARAM": settings.suppression_secret_param,
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    bootstrap.reset()
    use_clock(lambda: NOW)
    # The functions' log lines, exactly as Powertools writes them.
    logs = io.StringIO()
    handler = logger.registered_handler
    assert isinstance(handler, logging.StreamHandler)
    real_stream = handler.setStream(logs)
    try:
        yield World(
            queues=queues,
            table=settings.usage_table,
            ingest=_load(REPO / "functions/ingest/app.py", suffix),
            evaluate=_load(REPO / "functions/evaluate/app.py", suffix),
            dispatch=_load(REPO / "functions/dispatch/app.py", suffix),
            email=_load(REPO / "functions/email/app.py", suffix),
            logs=logs,
        )
    finally:
        handler.setStream(real_stream)
        logger.set_correlation_id(None)
        bootstrap.reset()


def a_user_who_gets_finish_setup() -> str:
    """A user id in neither the control group nor finish_setup's holdout (both are by hash)."""
    holdout = RULES.guardrails.spec.holdout
    rule = RULES.trigger_by_id["finish_setup"].spec.holdout
    for i in range(100):
        user = f"corr-{i}"
        if not in_group(holdout.salt, user, holdout.control_group) and not in_group(
            holdout.salt, f"finish_setup|{user}", rule
        ):
            return user
    raise AssertionError("no user id outside the holdouts")


def api_request(request_id: str, body: dict[str, Any]) -> dict[str, Any]:
    """POST /v1/batch as API Gateway (HTTP API, payload 2.0) hands it to the ingest function."""
    token = base64.b64encode(f"{WRITE_KEY}:".encode()).decode()
    return {
        "version": "2.0",
        "routeKey": "POST /v1/batch",
        "rawPath": "/v1/batch",
        "rawQueryString": "",
        "headers": {"content-type": "application/json", "authorization": f"Basic {token}"},
        "requestContext": {
            "http": {"method": "POST", "path": "/v1/batch", "protocol": "HTTP/1.1", "sourceIp": "10.0.0.1"},
            "requestId": request_id,
            "stage": "$default",
        },
        "body": json.dumps(body),
        "isBase64Encoded": False,
    }


def test_one_request_id_follows_an_event_from_the_api_to_the_email_it_led_to(world: World) -> None:
    # Given a user who signed up two days ago and never finished setup, posted in one API request
    user = a_user_who_gets_finish_setup()
    request_id = f"api-req-{uuid.uuid4().hex[:12]}"
    signed_up = (NOW - timedelta(days=2)).isoformat()
    body = {
        "batch": [
            {"type": "track", "userId": user, "event": "signed_up", "timestamp": signed_up, "messageId": "s"},
            {
                "type": "identify",
                "userId": user,
                "traits": {
                    "email": f"{user}@example.com",
                    "phone": "+15555550123",
                    "first_name": "Ada",
                    "timezone": "America/New_York",
                },
                "timestamp": signed_up,
                "messageId": "i",
            },
        ]
    }
    response = world.ingest.handler(api_request(request_id, body), Context())
    assert response["statusCode"] == 200, response["body"]
    # ...kept on the state the request wrote
    item = boto3.client("dynamodb").get_item(
        TableName=world.table, Key={"pk": {"S": f"USER#{user}"}, "sk": {"S": "STATE"}}
    )["Item"]
    assert item["corr"] == {"S": request_id}

    # When the state change flows through evaluate, dispatch and the email function
    assert world.evaluate.handler(world.stream_event(), Context()) == {"batchItemFailures": []}
    decisions = world.sqs_event("DecisionQueue")
    [published] = [d for r in decisions["Records"] for d in json.loads(r["body"])["decisions"]]
    assert world.dispatch.handler(decisions, Context()) == {"batchItemFailures": []}
    assert world.email.handler(world.sqs_event("EmailQueue"), Context()) == {"batchItemFailures": []}

    # Then the decision carries the request id, and one email left SES
    assert (published["rule"], published["correlation_id"]) == ("finish_setup", request_id)
    sent = [m for m in ses_backends[DEFAULT_ACCOUNT_ID][REGION].sent_messages if user in m.destinations[0]]
    assert len(sent) == 1
    # ...and one search for the request id finds ingest's, evaluate's, dispatch's and the send's lines
    traced = [line for line in world.log_lines() if line.get("correlation_id") == request_id]
    messages = {line["message"] for line in traced}
    assert {"ingested", "decisions published", "dispatched", "delivery"} <= messages
    [evaluated] = [line for line in traced if line["message"] == "decisions published"]
    assert evaluated["decision_ids"] == [published["decision_id"]]
    [delivery] = [line for line in traced if line["message"] == "delivery"]
    assert (delivery["decision_id"], delivery["channel"], delivery["result"]) == (
        published["decision_id"],
        "email",
        "sent",
    )
    # ...while no line holds the address, the phone number or the write key (every function's log
    # output at INFO, from request to send), and lines after the flow carry no stale id
    logged = world.logs.getvalue()
    assert traced
    assert f"{user}@example.com" not in logged
    assert "5555550123" not in logged
    assert WRITE_KEY not in logged
    assert logger.get_correlation_id() is None
