"""The pumps' direct reads of moto in the stack's process (moto_peek): a stream's records as
GetRecords gives them to boto3, and a queue's emptiness as ReceiveMessage would find it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto.core.models import DEFAULT_ACCOUNT_ID
from moto.dynamodb.models import dynamodb_backends
from moto.sqs.models import sqs_backends

from nudge.tools.local import moto_direct
from nudge.tools.local.aws import LockedMotoServer
from nudge.tools.local.moto_peek import DirectStream, queue_is_empty
from nudge.tools.local.template import table_create_kwargs


@pytest.fixture
def served() -> Iterator[tuple[str, LockedMotoServer]]:
    """A moto server whose calls this process answers (as the local stack's are)."""
    server = LockedMotoServer()
    server.start()
    moto_direct.serve_in_process(server.endpoint_url, server.lock)
    try:
        yield server.endpoint_url, server
    finally:
        moto_direct.stop_serving(server.endpoint_url)
        server.stop()


def _get_records(streams: Any, arn: str, position: str) -> list[dict[str, Any]]:
    shard = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]["ShardId"]
    iterator = streams.get_shard_iterator(StreamArn=arn, ShardId=shard, ShardIteratorType=position)
    return list(streams.get_records(ShardIterator=iterator["ShardIterator"])["Records"])


def test_a_direct_read_gives_what_get_records_gives(
    served: tuple[str, LockedMotoServer], template_path: Path
) -> None:
    # Given a table with a stream, written with every kind of attribute value (binary, sets,
    # nested maps and lists), updated (an old image) and deleted
    endpoint, _ = served
    session = boto3.session.Session(region_name="us-east-1")
    dynamodb = session.client("dynamodb", endpoint_url=endpoint)
    streams = session.client("dynamodbstreams", endpoint_url=endpoint)
    table = f"peek-{uuid.uuid4().hex[:8]}"
    created = dynamodb.create_table(**table_create_kwargs(template_path, "UsageTable", table))
    arn = created["TableDescription"]["LatestStreamArn"]
    key = {"pk": {"S": "USER#u"}, "sk": {"S": "STATE"}}
    item: dict[str, Any] = {
        **key,
        "b": {"B": b"\x00\xffraw"},
        "bs": {"BS": [b"x", b"y"]},
        "ss": {"SS": ["a", "b"]},
        "ns": {"NS": ["1", "2.5"]},
        "m": {"M": {"n": {"N": "3"}, "l": {"L": [{"B": b"q"}, {"BOOL": True}, {"NULL": True}]}}},
    }
    direct = DirectStream.find(endpoint, arn)
    assert direct is not None
    (shard,) = direct.shards()
    latest = direct.first(shard, "LATEST")
    dynamodb.put_item(TableName=table, Item=item)
    dynamodb.put_item(TableName=table, Item={**key, "b": {"B": b"\x01"}})
    dynamodb.delete_item(TableName=table, Key=key)

    # When the stream is read both ways from its start
    expected = _get_records(streams, arn, "TRIM_HORIZON")
    got = direct.read(shard, direct.first(shard, "TRIM_HORIZON"))

    # Then the records are the same, the creation time to boto3's millisecond
    assert [r["eventName"] for r in got] == ["INSERT", "MODIFY", "REMOVE"]
    assert len(got) == len(expected) == 3
    for mine, theirs in zip(got, expected, strict=True):
        mine_stream, their_stream = dict(mine["dynamodb"]), dict(theirs["dynamodb"])
        created, their_created = (
            mine_stream.pop("ApproximateCreationDateTime"),
            their_stream.pop("ApproximateCreationDateTime"),
        )
        assert abs(created - their_created) < timedelta(milliseconds=1)
        assert created.utcoffset() == timedelta(0)
        assert mine_stream == their_stream
        assert {k: v for k, v in mine.items() if k != "dynamodb"} == {
            k: v for k, v in theirs.items() if k != "dynamodb"
        }
    # And LATEST taken before the writes reads them all, from the sequence number after it
    assert direct.read(shard, latest) == got
    assert direct.read(shard, int(got[-1]["dynamodb"]["SequenceNumber"]) + 1) == []


def test_a_stream_not_served_here_is_read_through_boto3(served: tuple[str, LockedMotoServer]) -> None:
    endpoint, _ = served
    arn = "arn:aws:dynamodb:us-east-1:123456789012:table/nowhere/stream/2026-01-01T00:00:00.000"
    assert DirectStream.find(endpoint, arn) is None
    assert DirectStream.find("http://127.0.0.1:9", arn) is None


def test_an_empty_queue_is_told_as_receive_message_would_find_it(
    served: tuple[str, LockedMotoServer],
) -> None:
    # Given a queue
    endpoint, _ = served
    sqs = boto3.session.Session(region_name="us-east-1").client("sqs", endpoint_url=endpoint)
    url = sqs.create_queue(QueueName=f"peek-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    # Then it is empty, until a message is sent; a message received (in flight) is not visible
    assert queue_is_empty(endpoint, url) is True
    sqs.send_message(QueueUrl=url, MessageBody="{}")
    assert queue_is_empty(endpoint, url) is False
    received = sqs.receive_message(QueueUrl=url, VisibilityTimeout=30)["Messages"]
    assert queue_is_empty(endpoint, url) is True
    # And visible again once released, as the pump does with a failed message
    sqs.change_message_visibility(
        QueueUrl=url, ReceiptHandle=received[0]["ReceiptHandle"], VisibilityTimeout=0
    )
    assert queue_is_empty(endpoint, url) is False
    # And a queue or an endpoint not served here is not known: the pump asks through boto3
    assert queue_is_empty(endpoint, url + "-gone") is None
    assert queue_is_empty("http://127.0.0.1:9", url) is None


def test_a_moto_whose_internals_moved_is_read_through_boto3(
    served: tuple[str, LockedMotoServer], template_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a served table with a stream and a queue holding a message
    endpoint, _ = served
    session = boto3.session.Session(region_name="us-east-1")
    table = f"peek-{uuid.uuid4().hex[:8]}"
    created = session.client("dynamodb", endpoint_url=endpoint).create_table(
        **table_create_kwargs(template_path, "UsageTable", table)
    )
    arn = created["TableDescription"]["LatestStreamArn"]
    sqs = session.client("sqs", endpoint_url=endpoint)
    url = sqs.create_queue(QueueName=f"peek-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody="{}")
    assert DirectStream.find(endpoint, arn) is not None
    assert queue_is_empty(endpoint, url) is False
    # When a moto release has renamed what the direct reads use
    backend_table = dynamodb_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].tables[table]
    monkeypatch.delattr(backend_table.stream_shard, "items")
    queue = sqs_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].queues[url.rsplit("/", 1)[-1]]
    monkeypatch.delattr(queue, "_messages")
    # Then the pumps are told to ask through boto3, not stopped
    assert DirectStream.find(endpoint, arn) is None
    assert queue_is_empty(endpoint, url) is None
