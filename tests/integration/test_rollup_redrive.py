"""`nudge rollups redrive` on moto: a rollup batch that failed as Lambda lets one fail (the local
stack's event source mapping, nudge.tools.local.streams, with the template's RollupFunction source:
retried whole, then its range sent to RollupFailureQueue) is read back from the table's stream and
applied through the real handler, each delta once, whatever the failed tries had committed."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto.dynamodb.models import DynamoDBBackend

from bench.rollup_stream import rollup_source
from nudge.adapters.dynamo.rollups import DynamoRollupLedger
from nudge.adapters.dynamo.usage import DynamoUsageStore
from nudge.adapters.memory import MemoryUsageStore
from nudge.entrypoints.rollups import RollupStreamHandler
from nudge.model.errors import StoreUnavailable
from nudge.model.messages import Batch
from nudge.model.state import AccountRollup, RollupDelta
from nudge.rulebook.plan import load_plan
from nudge.services.ingest import ingest
from nudge.settings import Settings
from nudge.tools.cli import main
from nudge.tools.local import moto_transactions
from nudge.tools.local.aws import HandlerFailed, create_queues, create_usage_resources
from nudge.tools.local.streams import PumpStats, StreamPump

PLAN = load_plan(Path("rules"))
SETTINGS = Settings(usage_table="usage-redrive", keys_path="/nudge/redrive/keys")
TABLE = SETTINGS.usage_table
RECEIVED = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
ACCOUNTS = 150  # over the 99 accounts of one transaction: the batch is applied in two runs


class LosingLedger:
    """The real ledger, whose answer is lost while `broken`: each write commits, then the function
    fails (a timeout after DynamoDB applied it), so Lambda retries a batch that is partly applied."""

    def __init__(self, ledger: DynamoRollupLedger) -> None:
        self.ledger = ledger
        self.broken = True

    def apply(
        self,
        run: str,
        through: str,
        deltas: Sequence[RollupDelta],
        now: datetime,
        applied_through: str | None = None,
    ) -> str | None:
        held = self.ledger.apply(run, through, deltas, now, applied_through)
        if self.broken:
            raise StoreUnavailable("the answer was lost")
        return held


@pytest.fixture
def world(aws: None, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    # moto's own transactions restore a deep copy of the table on a cancel, stream included (see
    # tests/integration/test_rollup_stream.py): the local stack's are used, as there.
    monkeypatch.setattr(DynamoDBBackend, "transact_write_items", moto_transactions.transact_write_items)
    dynamodb, sqs = boto3.client("dynamodb"), boto3.client("sqs")
    create_usage_resources(dynamodb, boto3.client("ssm"), Path("template.yaml"), SETTINGS, ["k"])
    queue = create_queues(sqs, Path("template.yaml"), "redrive")["RollupFailureQueue"]
    return {"dynamodb": dynamodb, "sqs": sqs, "queue": queue}


def wide_request(tag: str) -> list[tuple[int, Any]]:
    """One request bringing ACCOUNTS users, each of an account of their own, creating a project."""
    messages: list[dict[str, Any]] = []
    for i in range(ACCOUNTS):
        user, at = f"{tag}-{i}", RECEIVED.isoformat()
        messages.append(
            {
                "type": "group",
                "userId": user,
                "groupId": f"{tag}-acct-{i}",
                "messageId": f"{tag}g{i}",
                "timestamp": at,
            }
        )
        messages.append(
            {
                "type": "track",
                "userId": user,
                "event": "project_created",
                "messageId": f"{tag}t{i}",
                "timestamp": at,
            }
        )
    return list(enumerate(Batch.model_validate({"batch": messages}).batch))


@dataclass
class Failed:
    store: DynamoUsageStore
    memory: MemoryUsageStore  # the reference: each delta applied with its write
    ledger: LosingLedger
    stats: PumpStats
    failure: dict[str, Any]  # the message on RollupFailureQueue


def a_failed_request(world: dict[str, Any], tag: str) -> Failed:
    """A request of ACCOUNTS users ingested, its rollup batch failed as Lambda lets one fail: its
    first run of 99 accounts committed on each try but the function never got the answer, so it
    was retried, then sent to RollupFailureQueue."""
    store, memory = DynamoUsageStore(world["dynamodb"], TABLE), MemoryUsageStore()
    ledger = LosingLedger(DynamoRollupLedger(world["dynamodb"], TABLE, SETTINGS.rollup_shards))
    pump = failed_batch_on_the_queue(world, ledger)
    request = wide_request(tag)
    ingest(request, PLAN, store, RECEIVED)
    ingest(request, PLAN, memory, RECEIVED)
    stats = pump.pump()
    pump.close()
    [failure] = queued(world)
    return Failed(store, memory, ledger, stats, failure)


def failed_batch_on_the_queue(world: dict[str, Any], ledger: LosingLedger) -> StreamPump:
    """The template's RollupFunction source, with a real handler whose writes commit but whose
    answers are lost: retried once, then given up on and sent to RollupFailureQueue."""
    handler = RollupStreamHandler(ledger)

    def invoke(function: str, event: dict[str, Any]) -> dict[str, Any]:
        try:
            return handler.handle(event)
        except StoreUnavailable as exc:
            raise HandlerFailed(str(exc)) from exc

    dynamodb = world["dynamodb"]
    pump = StreamPump(
        replace(rollup_source(), max_retries=1),
        stream_arn=dynamodb.describe_table(TableName=TABLE)["Table"]["LatestStreamArn"],
        streams=boto3.client("dynamodbstreams"),
        sqs=world["sqs"],
        failure_queue_url=world["queue"],
        invoke=invoke,
        now=lambda: RECEIVED + timedelta(seconds=5),
    )
    pump.start()
    return pump


def rollups(store: Any, tag: str) -> dict[str, AccountRollup]:
    return {a: store.load_rollup(a) for a in (f"{tag}-acct-{i}" for i in range(ACCOUNTS))}


def queued(world: dict[str, Any]) -> list[dict[str, Any]]:
    attributes = world["sqs"].get_queue_attributes(
        QueueUrl=world["queue"], AttributeNames=["ApproximateNumberOfMessages"]
    )
    count = int(attributes["Attributes"]["ApproximateNumberOfMessages"])
    messages = world["sqs"].receive_message(
        QueueUrl=world["queue"], MaxNumberOfMessages=10, VisibilityTimeout=0
    )
    assert len(messages.get("Messages", [])) == count
    return [json.loads(m["Body"]) for m in messages.get("Messages", [])]


def redrive(world: dict[str, Any], *extra: str) -> int:
    return main(["rollups", "redrive", "--queue", world["queue"], "--table", TABLE, *extra])


def test_a_batch_failed_after_its_first_run_committed_is_redriven_and_each_delta_counted_once(
    world: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a request whose users' rollup batch failed as Lambda lets one fail: its first run of 99
    # accounts committed on each try but the function never got the answer
    failed = a_failed_request(world, "w")
    store, memory, failure = failed.store, failed.memory, failed.failure
    assert (failed.stats.retries, failed.stats.failed_batches) == (1, 1)
    assert failure["DDBStreamBatchInfo"]["batchSize"] == ACCOUNTS
    applied = rollups(store, "w")
    assert sum(1 for r in applied.values() if r.feature_adopters) == 99  # the first run only

    # When the cause is fixed and the queue redriven
    failed.ledger.broken = False
    assert redrive(world) == 0

    # Then every account holds its users' deltas once: the first run was found applied, the rest applied
    assert rollups(store, "w") == rollups(memory, "w")
    out = capsys.readouterr().out
    assert f"{ACCOUNTS - 99} deltas applied, 99 found applied by an earlier try" in out
    assert "1 batches redriven, 0 left on the queue" in out
    assert queued(world) == []

    # ...and the same range redriven again (the message sent twice) adds nothing
    world["sqs"].send_message(QueueUrl=world["queue"], MessageBody=json.dumps(failure))
    assert redrive(world) == 0
    assert rollups(store, "w") == rollups(memory, "w")


def test_a_message_that_cannot_be_redriven_is_left_on_the_queue_with_its_reason(
    world: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a failed batch on the queue, and three messages that are not what it says
    failed = a_failed_request(world, "x")
    store, memory, failure = failed.store, failed.memory, failed.failure
    before = rollups(store, "x")
    wrong_size = json.loads(json.dumps(failure))
    wrong_size["DDBStreamBatchInfo"]["batchSize"] = ACCOUNTS - 1
    world["sqs"].send_message(QueueUrl=world["queue"], MessageBody=json.dumps(wrong_size))
    world["sqs"].send_message(QueueUrl=world["queue"], MessageBody='{"Records": []}')
    elsewhere = json.loads(json.dumps(failure))
    info = elsewhere["DDBStreamBatchInfo"]
    info["streamArn"] = info["streamArn"].replace(f":table/{TABLE}/", ":table/another-table/")
    world["sqs"].send_message(QueueUrl=world["queue"], MessageBody=json.dumps(elsewhere))
    failed.ledger.broken = False

    # When a dry run reads them, then a redrive
    assert redrive(world, "--dry-run") == 1
    dry = capsys.readouterr().out
    exit_code = redrive(world)
    out = capsys.readouterr().out

    # Then the dry run applied and deleted nothing; the redrive applied the good one only, and left
    # the other three on the queue, each with what is wrong, and exits 1
    assert "would be applied" in dry
    assert "0 batches redriven, 3 left on the queue" in dry
    assert exit_code == 1
    assert (
        f"the stream holds {ACCOUNTS} records with a rollup delta in that range, the failed batch had {ACCOUNTS - 1}"
        in out
    )
    assert "not a DynamoDB stream batch's failure record" in out
    assert "not the usage table usage-redrive's" in out
    assert "1 batches redriven, 3 left on the queue" in out
    assert rollups(store, "x") == rollups(memory, "x") != before
    left = queued(world)
    assert len(left) == 3
    assert failure not in left


def test_a_range_the_stream_no_longer_holds_is_left_on_the_queue(
    world: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a failure record naming a range past the end of the stream (as one whose records aged
    # out would read)
    store = DynamoUsageStore(world["dynamodb"], TABLE)
    ingest(wide_request("y"), PLAN, store, RECEIVED)
    arn = world["dynamodb"].describe_table(TableName=TABLE)["Table"]["LatestStreamArn"]
    shard = boto3.client("dynamodbstreams").describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0][
        "ShardId"
    ]
    info = {
        "shardId": shard,
        "startSequenceNumber": "900000000",
        "endSequenceNumber": "900000010",
        "batchSize": 3,
        "streamArn": arn,
    }
    world["sqs"].send_message(QueueUrl=world["queue"], MessageBody=json.dumps({"DDBStreamBatchInfo": info}))

    # When redriven, then nothing is applied and the message stays, with the reason
    assert redrive(world) == 1
    out = capsys.readouterr().out
    assert "left on the queue: the stream" in out
    assert len(queued(world)) == 1
