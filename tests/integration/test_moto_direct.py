"""The local stack's calls to moto without HTTP: in its own process (moto_direct) and from worker
containers over a pipe (moto_relay). The same answers as over HTTP, and no request reaches the
HTTP server."""

from __future__ import annotations

import threading
import uuid
from pathlib import Path

import boto3
import botocore.session
import pytest
from botocore.exceptions import ClientError
from moto.dynamodb.responses import DynamoHandler
from moto.sqs.responses import SQSResponse

from nudge.tools.local import moto_direct
from nudge.tools.local.aws import LockedMotoServer
from nudge.tools.local.moto_relay import MotoRelay, _Relayed
from nudge.tools.local.template import table_create_kwargs


class CountingLock:
    """The server's request lock, counting the requests that took it."""

    def __init__(self, lock: threading.Lock) -> None:
        self._lock = lock
        self.taken = 0

    def __enter__(self) -> None:
        self._lock.acquire()
        self.taken += 1

    def __exit__(self, *_: object) -> None:
        self._lock.release()


@pytest.fixture
def stopped_server() -> str:
    """The URL of a moto server that no longer listens: a call that went over HTTP would fail."""
    server = LockedMotoServer()
    server.start()
    endpoint = server.endpoint_url
    server.stop()
    return endpoint


def _write_and_read(client: object, table: str, template_path: Path) -> None:
    dynamodb = client
    dynamodb.create_table(**table_create_kwargs(template_path, "UsageTable", table))  # type: ignore[attr-defined]
    key = {"pk": {"S": "USER#u"}, "sk": {"S": "STATE"}}
    dynamodb.put_item(TableName=table, Item={**key, "v": {"N": "1"}})  # type: ignore[attr-defined]
    # A condition that fails comes back as the same error it would over HTTP.
    with pytest.raises(ClientError) as caught:
        dynamodb.put_item(  # type: ignore[attr-defined]
            TableName=table,
            Item={**key, "v": {"N": "2"}},
            ConditionExpression="v = :e",
            ExpressionAttributeValues={":e": {"N": "7"}},
        )
    assert caught.value.response["Error"]["Code"] == "ConditionalCheckFailedException"
    item = dynamodb.get_item(TableName=table, Key=key, ConsistentRead=True)["Item"]  # type: ignore[attr-defined]
    assert item["v"] == {"N": "1"}


def test_calls_in_the_stacks_process_are_answered_without_http(
    stopped_server: str, template_path: Path
) -> None:
    # Given calls to a server's URL answered in process, under a lock that counts them
    lock = CountingLock(threading.Lock())
    moto_direct.serve_in_process(stopped_server, lock)  # type: ignore[arg-type]
    try:
        client = boto3.session.Session().client(
            "dynamodb", endpoint_url=stopped_server, region_name="us-east-1"
        )
        # When a table is made, written (one condition failing) and read back
        _write_and_read(client, f"direct-{uuid.uuid4().hex[:8]}", template_path)
    finally:
        moto_direct.stop_serving(stopped_server)

    # Then every call went through the lock (the server no longer listens: none went over HTTP)
    assert lock.taken >= 4


def test_calls_from_a_container_go_down_the_relay(stopped_server: str, template_path: Path) -> None:
    # Given the stack's relay, and a client whose sends go down it as a worker container's do
    lock = CountingLock(threading.Lock())
    relay = MotoRelay(lock)  # type: ignore[arg-type]
    try:
        session = botocore.session.Session()
        session.register("before-send", _Relayed(stopped_server, relay.address, relay.authkey))  # type: ignore[arg-type]
        client = boto3.session.Session(botocore_session=session).client(
            "dynamodb", endpoint_url=stopped_server, region_name="us-east-1"
        )
        # When a table is made, written (one condition failing) and read back
        _write_and_read(client, f"relay-{uuid.uuid4().hex[:8]}", template_path)
    finally:
        relay.close()

    # Then moto answered each call in the relay's process, under the server's lock
    assert lock.taken >= 4


def test_a_request_for_another_url_is_left_to_http() -> None:
    # Given nothing served in process for this URL: the hook lets botocore send it
    hook = moto_direct._HOOK
    request = botocore.awsrequest.AWSPreparedRequest(
        "POST",
        "http://127.0.0.1:1/",
        {"Authorization": "AWS4-HMAC-SHA256 Credential=x/d/us-east-1/dynamodb/aws4_request"},
        b"{}",
        False,
    )
    assert hook(request=request) is None
    # And a service the stack does not map is left to HTTP too
    assert (
        moto_direct.aws_url(
            "http://127.0.0.1:1/",
            {"Authorization": "AWS4-HMAC-SHA256 Credential=x/d/us-east-1/kinesis/aws4_request"},
        )
        is None
    )


def test_a_session_that_already_has_the_hook_sends_each_call_once(stopped_server: str) -> None:
    # Given boto3's default session made after moto_direct was imported (it carries the hook from
    # botocore's built-in handlers), then handed to serve_in_process as a session made before, as
    # a second stack in the process does. botocore runs every before-send handler, answer or not,
    # so a hook registered twice ran each call twice in moto: a message sent once was queued twice.
    before = boto3.DEFAULT_SESSION
    boto3.setup_default_session()
    lock = CountingLock(threading.Lock())
    moto_direct.serve_in_process(stopped_server, lock, (boto3.DEFAULT_SESSION,))  # type: ignore[arg-type]
    moto_direct.serve_in_process(stopped_server, lock, (boto3.DEFAULT_SESSION,))  # type: ignore[arg-type]
    try:
        sqs = boto3.client(
            "sqs",
            endpoint_url=stopped_server,
            region_name="us-east-1",
            aws_access_key_id="local",
            aws_secret_access_key="local",
        )
        url = sqs.create_queue(QueueName=f"once-{uuid.uuid4().hex[:8]}")["QueueUrl"]
        taken = lock.taken
        # When one message is sent
        sqs.send_message(QueueUrl=url, MessageBody="once")
        sent_calls = lock.taken - taken
        attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])
    finally:
        moto_direct.stop_serving(stopped_server)
        boto3.DEFAULT_SESSION = before

    # Then moto ran it once, and the queue holds one message
    assert sent_calls == 1
    assert attributes["Attributes"]["ApproximateNumberOfMessages"] == "1"


def test_a_root_url_is_routed_once_to_the_handler_motos_stubber_finds() -> None:
    # The handler for each service's root URL is looked up once (moto's stubber tries every
    # pattern of every service on each request): the same one, and only for root URLs
    assert moto_direct._route("https://dynamodb.us-east-1.amazonaws.com/") == DynamoHandler.dispatch
    assert moto_direct._route("https://sqs.us-east-1.amazonaws.com/") == SQSResponse.dispatch
    assert "https://sqs.us-east-1.amazonaws.com/" in moto_direct._ROUTES
    # SES v2's paths name resources: left to the stubber, and not kept
    assert moto_direct._route("https://email.us-east-1.amazonaws.com/v2/email/outbound-emails") is None
