"""The buffered front door on moto: the ingest code's `front_door` handler puts each request's
messages on the ingest queue (SQS), and the ingest queue function folds a batch of them into the
usage table, one write per user however many requests their events came in."""

from __future__ import annotations

import importlib.util
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import boto3
import pytest

from nudge.adapters.dynamo.usage import CORRELATION_ATTRIBUTE
from nudge.model.errors import StoreUnavailable
from tests.integration.conftest import REPO, IngestContext
from tests.integration.ingest_api import CLIENT_KEY, CLIENT_ORIGIN, Api, deployed_api

pytestmark = pytest.mark.usefixtures("aws")


@pytest.fixture
def queue_url() -> str:
    return boto3.client("sqs").create_queue(QueueName=f"ingest-{uuid.uuid4().hex[:8]}")["QueueUrl"]


@pytest.fixture
def front(template_path: Path, monkeypatch: pytest.MonkeyPatch, queue_url: str) -> Iterator[Api]:
    """The front door function cold-started (its handler is app.front_door), queue configured."""
    with deployed_api(template_path, monkeypatch, NUDGE_INGEST_QUEUE_URL=queue_url) as api:
        yield Api(SimpleNamespace(handler=api.handler.front_door), api.settings)  # type: ignore[arg-type]


def consumer() -> ModuleType:
    """functions/ingest_queue/app.py, cold-started (same environment as the front door's)."""
    spec = importlib.util.spec_from_file_location(
        f"ingest_queue_{uuid.uuid4().hex[:8]}", REPO / "functions" / "ingest_queue" / "app.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def drain_queue(queue_url: str) -> dict[str, Any]:
    """Every message on the queue, as the SQS event source hands them to the function."""
    sqs = boto3.client("sqs")
    records: list[dict[str, Any]] = []
    while True:
        got = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, AttributeNames=["All"])
        if not got.get("Messages"):
            return {"Records": records}
        for message in got["Messages"]:
            records.append(
                {
                    "messageId": message["MessageId"],
                    "receiptHandle": message["ReceiptHandle"],
                    "body": message["Body"],
                    "attributes": message.get("Attributes", {}),
                    "messageAttributes": {},
                    "md5OfBody": message["MD5OfBody"],
                    "eventSource": "aws:sqs",
                    "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:ingest",
                    "awsRegion": "us-east-1",
                }
            )
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])


def test_one_event_requests_are_answered_queued_then_folded_one_write_per_user(
    front: Api, queue_url: str
) -> None:
    # Given six one-event requests of two users, as a browser SDK sends them (client key in the body)
    user_a, user_b = f"fa-{uuid.uuid4().hex[:6]}", f"fb-{uuid.uuid4().hex[:6]}"
    answers = []
    for n in range(6):
        body = {
            "type": "track",
            "userId": user_a if n % 2 else user_b,
            "event": "login",
            "messageId": f"{user_a}-{n}",
            "writeKey": CLIENT_KEY,
        }
        answers.append(front.call("POST", "/v1/t", body, key=None, headers={"origin": CLIENT_ORIGIN}))
    # Then each is answered 200 with its origin granted, and nothing is written yet
    assert [a[0] for a in answers] == [200] * 6
    assert all(a[1]["Access-Control-Allow-Origin"] == CLIENT_ORIGIN for a in answers)
    assert front.counts(user_a) == {}
    # When the ingest queue function gets the six queue messages in one batch
    event = drain_queue(queue_url)
    assert len(event["Records"]) == 6
    app = consumer()
    store = app.queue.services.store
    writes: list[str] = []
    original = store.save_user

    def counted(state: Any, *args: Any, **kwargs: Any) -> Any:
        writes.append(state.user_id)
        return original(state, *args, **kwargs)

    store.save_user = counted
    response = app.handler(event, IngestContext("consumer-1"))
    # Then nothing failed, each user has its three logins, written once each
    assert response == {"batchItemFailures": []}
    assert front.counts(user_a) == {"login": 3}
    assert front.counts(user_b) == {"login": 3}
    assert sorted(writes) == sorted([user_a, user_b])


def test_the_same_batch_delivered_again_changes_nothing(front: Api, queue_url: str) -> None:
    user = f"fr-{uuid.uuid4().hex[:6]}"
    assert front.call("POST", "/v1/track", {"userId": user, "event": "login"})[0] == 200
    event = drain_queue(queue_url)
    app = consumer()
    assert app.handler(event, IngestContext("c-1")) == {"batchItemFailures": []}
    # When SQS delivers it again (at least once), the fold adds nothing: the dedupe key was pinned
    assert app.handler(event, IngestContext("c-2")) == {"batchItemFailures": []}
    assert front.counts(user) == {"login": 1}


def test_an_unreadable_body_fails_alone_and_the_rest_lands(front: Api, queue_url: str) -> None:
    user = f"fu-{uuid.uuid4().hex[:6]}"
    assert front.call("POST", "/v1/track", {"userId": user, "event": "login"})[0] == 200
    event = drain_queue(queue_url)
    broken = {**event["Records"][0], "messageId": "broken", "body": "{not json"}
    event["Records"].append(broken)
    response = consumer().handler(event, IngestContext("c-3"))
    # Then only the unreadable record goes back to the queue (and, after 5 tries, its DLQ)
    assert response == {"batchItemFailures": [{"itemIdentifier": "broken"}]}
    assert front.counts(user) == {"login": 1}


def test_a_queue_outage_answers_503_so_the_sdk_sends_again(
    template_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a front door whose queue is gone
    missing = "https://sqs.us-east-1.amazonaws.com/123456789012/no-such-queue"
    with deployed_api(template_path, monkeypatch, NUDGE_INGEST_QUEUE_URL=missing) as api:
        front = Api(SimpleNamespace(handler=api.handler.front_door), api.settings)  # type: ignore[arg-type]
        # When a call comes in
        status, headers, _ = front.call("POST", "/v1/track", {"userId": "u-503", "event": "login"})
    # Then it is refused with 503 and a pause (SDKs retry), not answered 200 and lost
    assert status == 503
    assert "Retry-After" in headers


def test_one_users_failing_write_sends_back_only_that_users_records(front: Api, queue_url: str) -> None:
    # Given one-event requests of two users, queued, and the store refusing one user's writes
    ok, failing = f"fo-{uuid.uuid4().hex[:6]}", f"ff-{uuid.uuid4().hex[:6]}"
    for n, user in enumerate([ok, failing, ok, failing]):
        body = {"userId": user, "event": "login", "messageId": f"{user}-{n}"}
        assert front.call("POST", "/v1/track", body)[0] == 200
    event = drain_queue(queue_url)
    of_failing = {r["messageId"] for r in event["Records"] if failing in r["body"]}
    app = consumer()
    store = app.queue.services.store
    original = store.save_user

    def refusing(state: Any, *args: Any, **kwargs: Any) -> Any:
        if state.user_id == failing:
            raise StoreUnavailable("DynamoDB InternalServerError (test)")
        return original(state, *args, **kwargs)

    store.save_user = refusing
    # When the consumer gets the batch
    response = app.handler(event, IngestContext("c-4"))
    # Then only the failing user's records go back to the queue; the other user's are folded
    assert {f["itemIdentifier"] for f in response["batchItemFailures"]} == of_failing
    assert front.counts(ok) == {"login": 2}
    assert front.counts(failing) == {}
    # When the queue delivers them again, the store back
    store.save_user = original
    again = {"Records": [r for r in event["Records"] if r["messageId"] in of_failing]}
    assert app.handler(again, IngestContext("c-5")) == {"batchItemFailures": []}
    # Then they land, and nothing is counted twice
    assert front.counts(failing) == {"login": 2}
    assert front.counts(ok) == {"login": 2}


def test_the_front_doors_request_id_is_kept_on_the_state_it_wrote(front: Api, queue_url: str) -> None:
    # Given a one-event request through the front door
    user = f"fc-{uuid.uuid4().hex[:6]}"
    assert front.call("POST", "/v1/track", {"userId": user, "event": "login"})[0] == 200
    event = drain_queue(queue_url)
    [request] = {json.loads(r["body"])["request"] for r in event["Records"]}
    assert request.startswith("req-")
    # When the consumer folds it
    assert consumer().handler(event, IngestContext("consumer-7")) == {"batchItemFailures": []}
    # Then the user's state carries the front door's request id (what the evaluator logs and puts
    # on its decisions), not the consumer's invocation id
    item = front.dynamodb.get_item(
        TableName=front.settings.usage_table, Key={"pk": {"S": f"USER#{user}"}, "sk": {"S": "STATE"}}
    )["Item"]
    assert item[CORRELATION_ATTRIBUTE]["S"] == request
