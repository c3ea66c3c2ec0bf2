"""The real evaluate and sweep handlers against moto: tables and queues from template.yaml, stream
events built from moto's own stream records in the shape Lambda delivers them."""

from __future__ import annotations

import base64
import json
import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any, cast

import boto3
import pytest
from moto.events.models import EventPattern

from nudge import bootstrap, clock
from nudge.adapters.dynamo.rollups import DynamoRollupLedger
from nudge.adapters.dynamo.usage import DynamoUsageStore
from nudge.entrypoints.rollups import RollupStreamHandler
from nudge.model.messages import Group, Identify, Message, Track
from nudge.rulebook.plan import load_plan
from nudge.services.ingest import ingest
from nudge.settings import Settings
from nudge.tools.local.aws import create_queues, create_usage_resources
from nudge.tools.local.template import load_template
from tests.shipped import ONE_SHOT_DIR, load_handler

REPO = Path(__file__).resolve().parents[2]
PLAN = load_plan(ONE_SHOT_DIR)
NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
REGION = "us-east-1"
ACCOUNT = "123456789012"


class Context:
    function_name = "evaluate"
    memory_limit_in_mb = 512
    invoked_function_arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:evaluate"
    aws_request_id = "req-1"

    def get_remaining_time_in_millis(self) -> int:
        return 300_000


# ---------------------------------------------------------------------------- stream events


def _as_lambda_delivers(value: dict[str, Any]) -> dict[str, Any]:
    """An AttributeValue as in a Lambda stream event: binary as base64 text, like the wire format."""
    kind, inner = next(iter(value.items()))
    if kind == "B":
        return {"B": base64.b64encode(inner).decode()}
    if kind == "BS":
        return {"BS": [base64.b64encode(b).decode() for b in inner]}
    if kind == "M":
        return {"M": {k: _as_lambda_delivers(v) for k, v in inner.items()}}
    if kind == "L":
        return {"L": [_as_lambda_delivers(v) for v in inner]}
    return {kind: inner}


def lambda_record(record: dict[str, Any], stream_arn: str) -> dict[str, Any]:
    """A `dynamodbstreams.get_records` record (boto3 shape) as a Lambda event record."""
    stream = dict(record["dynamodb"])
    created = stream.get("ApproximateCreationDateTime")
    if isinstance(created, datetime):
        stream["ApproximateCreationDateTime"] = int(created.timestamp())
    for image in ("Keys", "NewImage", "OldImage"):
        if image in stream:
            stream[image] = {name: _as_lambda_delivers(v) for name, v in stream[image].items()}
    return {
        "eventID": record["eventID"],
        "eventName": record["eventName"],
        "eventVersion": record.get("eventVersion", "1.1"),
        "eventSource": "aws:dynamodb",
        "awsRegion": record.get("awsRegion", REGION),
        "dynamodb": stream,
        "eventSourceARN": stream_arn,
    }


class StreamReader:
    """Reads the table's stream from the start, then only what is new at each read."""

    def __init__(self, table: str) -> None:
        self.client = boto3.client("dynamodbstreams")
        self.arn = boto3.client("dynamodb").describe_table(TableName=table)["Table"]["LatestStreamArn"]
        shards = self.client.describe_stream(StreamArn=self.arn)["StreamDescription"]["Shards"]
        self.iterators = [
            self.client.get_shard_iterator(
                StreamArn=self.arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
            )["ShardIterator"]
            for shard in shards
        ]

    def read(self) -> list[dict[str, Any]]:
        records: list[dict[str, Any]] = []
        for index, iterator in enumerate(self.iterators):
            while True:
                response = self.client.get_records(ShardIterator=iterator, Limit=1000)
                records += [lambda_record(dict(r), self.arn) for r in response["Records"]]
                iterator = response["NextShardIterator"]
                if not response["Records"]:
                    break
            self.iterators[index] = iterator
        return records


def batches(records: list[dict[str, Any]], size: int = 100) -> Iterator[dict[str, Any]]:
    for start in range(0, len(records), size):
        yield {"Records": records[start : start + size]}


def key_of(record: dict[str, Any]) -> tuple[str, str]:
    keys = record["dynamodb"]["Keys"]
    return keys["pk"]["S"], keys["sk"]["S"]


# ---------------------------------------------------------------------------- the stack


@dataclass
class ReadCounter:
    """Counts DynamoDB read requests and items read, through a botocore event hook."""

    requests: dict[str, int] = field(default_factory=dict)
    items: int = 0

    def __call__(self, model: Any, parsed: dict[str, Any], **_: Any) -> None:
        name = model.name
        if name not in ("GetItem", "BatchGetItem", "Query", "Scan"):
            return
        self.requests[name] = self.requests.get(name, 0) + 1
        if name == "GetItem":
            self.items += 1 if "Item" in parsed else 0
        elif name == "BatchGetItem":
            self.items += sum(len(items) for items in parsed.get("Responses", {}).values())
        else:
            self.items += int(parsed.get("Count", 0))

    @property
    def total(self) -> int:
        return sum(self.requests.values())


@dataclass
class Stack:
    settings: Settings
    queues: dict[str, str]
    evaluate: ModuleType
    sweep: ModuleType
    usage: DynamoUsageStore
    stream: StreamReader
    now: list[datetime]

    def at(self, when: datetime) -> None:
        self.now[0] = when

    def ingest(self, messages: list[Message], at: datetime) -> None:
        result = ingest(list(enumerate(messages)), PLAN, self.usage, at)
        assert not result.errors, result.errors

    def evaluate_stream(self) -> list[dict[str, Any]]:
        """Deliver everything new on the stream to the evaluate handler; return the responses."""
        return [self.evaluate.handler(batch, Context()) for batch in batches(self.stream.read())]

    def decisions(self) -> list[dict[str, Any]]:
        sqs = boto3.client("sqs")
        found: list[dict[str, Any]] = []
        while True:
            response = sqs.receive_message(
                QueueUrl=self.queues["DecisionQueue"],
                MaxNumberOfMessages=10,
                MessageAttributeNames=["All"],
                VisibilityTimeout=0,
            )
            messages = response.get("Messages", [])
            if not messages:
                return found
            for message in messages:
                body = json.loads(message["Body"])
                ids = [d["decision_id"] for d in body["decisions"]]
                assert message["MessageAttributes"]["decision_ids"]["StringValue"] == ",".join(ids)
                found.extend(body["decisions"])
                sqs.delete_message(
                    QueueUrl=self.queues["DecisionQueue"], ReceiptHandle=message["ReceiptHandle"]
                )

    def scan_segments(self) -> dict[str, dict[str, Any]]:
        items = boto3.client("dynamodb").scan(TableName=self.settings.usage_table)["Items"]
        return {i["pk"]["S"].removeprefix("USER#"): i for i in items if i["sk"]["S"] == "SEGMENTS"}

    def count_reads(self) -> ReadCounter:
        counter = ReadCounter()
        client = self.sweep.sweeps.service.ports.segments.client
        client.meta.events.register("after-call.dynamodb", counter)
        return counter


def _load(path: Path, name: str) -> ModuleType:
    return load_handler(path, name)


@pytest.fixture
def stack(
    aws: None, template_path: Path, monkeypatch: pytest.MonkeyPatch, use_clock: Callable[[clock.Source], None]
) -> Iterator[Stack]:
    suffix = uuid.uuid4().hex[:8]
    settings = Settings(usage_table=f"usage-{suffix}", keys_path=f"/nudge/it-{suffix}/keys")
    dynamodb = boto3.client("dynamodb")
    create_usage_resources(dynamodb, boto3.client("ssm"), template_path, settings, ["wk"])
    queues = create_queues(boto3.client("sqs"), template_path, f"it-{suffix}")
    monkeypatch.setenv("NUDGE_USAGE_TABLE", settings.usage_table)
    monkeypatch.setenv("NUDGE_DECISION_QUEUE_URL", queues["DecisionQueue"])
    monkeypatch.setenv("NUDGE_RULES_DIR", str(ONE_SHOT_DIR))
    bootstrap.reset()
    now = [NOW]
    use_clock(lambda: now[0])
    try:
        yield Stack(
            settings=settings,
            queues=queues,
            evaluate=_load(REPO / "functions/evaluate/app.py", f"evaluate_app_{suffix}"),
            sweep=_load(REPO / "functions/sweep/app.py", f"sweep_app_{suffix}"),
            usage=DynamoUsageStore(dynamodb, settings.usage_table, settings.rollup_shards),
            stream=StreamReader(settings.usage_table),
            now=now,
        )
    finally:
        bootstrap.reset()


def signed_up(user: str, at: datetime) -> list[Message]:
    return [
        Track(userId=user, event="signed_up", timestamp=at, messageId=f"{user}-s"),
        Identify(userId=user, traits={"email": f"{user}@example.com"}, timestamp=at, messageId=f"{user}-i"),
    ]


def activated(user: str, at: datetime) -> list[Message]:
    steps = ["signed_up", "setup_completed", "project_created", "teammate_invited"]
    return [
        Track(userId=user, event=step, timestamp=at + i * HOUR, messageId=f"{user}-{i}")
        for i, step in enumerate(steps)
    ]


# ---------------------------------------------------------------------------- evaluate


def test_a_changed_users_decision_lands_on_the_decision_queue(stack: Stack) -> None:
    # Given a user who signed up two days ago and has not finished setup
    stack.ingest(signed_up("ada", NOW - 2 * DAY), NOW - 2 * DAY)
    stack.ingest([Track(userId="ada", event="login", timestamp=NOW - HOUR, messageId="l")], NOW)
    # When the stream delivers their state changes to the evaluate handler
    responses = stack.evaluate_stream()
    # Then no record failed, the user is recorded in not_activated with a re-check scheduled,
    # and the onboarding decision is on the queue
    assert all(r == {"batchItemFailures": []} for r in responses)
    record = stack.scan_segments()["ada"]
    assert record["segment"]["S"] == "not_activated"
    assert "due_bucket" in record
    assert "due_at" in record
    decisions = stack.decisions()
    assert [(d["user"], d["rule"], d["channel"]) for d in decisions] == [("ada", "finish_setup", "email")]


def test_the_evaluators_own_writes_never_retrigger_it(stack: Stack, template_path: Path) -> None:
    stack.ingest(signed_up("ada", NOW - 2 * DAY), NOW - 2 * DAY)
    first = stack.stream.read()
    stack.evaluate.handler({"Records": first}, Context())
    own = stack.stream.read()
    assert {key_of(r) for r in own} == {("USER#ada", "SEGMENTS")}
    # The event source's filter keeps them from the function at all...
    events = load_template(template_path)["Resources"]["EvaluateFunction"]["Properties"]["Events"]
    raw = events["UsageChanges"]["Properties"]["FilterCriteria"]["Filters"][0]["Pattern"]
    pattern = EventPattern.load(raw)
    assert all(pattern.matches_event(cast(Any, r)) for r in first if key_of(r)[1] == "STATE")
    assert not any(pattern.matches_event(cast(Any, r)) for r in own)
    # ...and the handler ignores them if they arrive anyway (a pump without the filter)
    stack.decisions()
    assert stack.evaluate.handler({"Records": own}, Context()) == {"batchItemFailures": []}
    assert stack.stream.read() == []
    assert stack.decisions() == []


def test_a_redelivered_batch_publishes_nothing_new_and_writes_nothing(stack: Stack) -> None:
    stack.ingest(signed_up("ada", NOW - 2 * DAY), NOW - 2 * DAY)
    records = stack.stream.read()
    stack.evaluate.handler({"Records": records}, Context())
    published = stack.decisions()
    stack.stream.read()
    stack.evaluate.handler({"Records": records}, Context())
    assert len(published) == 1
    assert stack.decisions() == []
    assert stack.stream.read() == []  # no write at all


def test_a_poison_record_is_reported_and_the_rest_of_the_batch_is_processed(stack: Stack) -> None:
    # Given three users' state changes in one batch, the middle one's state undecodable
    stack.ingest(
        [m for user in ("ann", "bob", "cat") for m in signed_up(user, NOW - 2 * DAY)],
        NOW - 2 * DAY,
    )
    records = sorted(stack.stream.read(), key=lambda r: key_of(r)[0])
    assert [key_of(r)[0] for r in records] == ["USER#ann", "USER#bob", "USER#cat"]
    poison = records[1]
    poison["dynamodb"]["NewImage"]["state"] = {"B": base64.b64encode(b"not zlib at all").decode()}
    # When the batch is delivered
    response = stack.evaluate.handler({"Records": records}, Context())
    # Then only the poison record is reported (Lambda retries it, bisects, then sends it to the
    # on-failure queue), and the others' decisions are on the queue
    assert response == {"batchItemFailures": [{"itemIdentifier": poison["dynamodb"]["SequenceNumber"]}]}
    assert sorted(d["user"] for d in stack.decisions()) == ["ann", "cat"]
    assert set(stack.scan_segments()) == {"ann", "cat"}


def test_the_sample_stream_event_is_what_the_handler_expects(stack: Stack) -> None:
    event = json.loads((REPO / "events/stream-user-modified.json").read_text())
    assert [r["eventName"] for r in event["Records"]] == ["MODIFY"]
    assert stack.evaluate.handler(event, Context()) == {"batchItemFailures": []}
    assert "user-42" in stack.scan_segments()


# ---------------------------------------------------------------------------- account changes


def declining_in(user: str, account: str, mrr: int) -> list[Message]:
    """Activated 60 days ago, daily projects for 40 days, then one report a week: declining."""
    start = NOW - 60 * DAY
    events = [("signed_up", start), ("setup_completed", start), ("teammate_invited", start + DAY)]
    events += [("project_created", start + (1 + i) * DAY) for i in range(40)]
    events += [("report_exported", NOW - 12 * DAY), ("report_exported", NOW - 5 * DAY)]
    messages: list[Message] = [
        Track(userId=user, event=name, timestamp=at, messageId=f"{user}-{name}-{at.isoformat()}")
        for name, at in events
    ]
    group = Group(userId=user, groupId=account, traits={"mrr": mrr}, timestamp=start, messageId=f"{user}-g")
    return [*messages, group]


def matches_filter(template_path: Path, record: dict[str, Any]) -> bool:
    """Whether the evaluate event source's FilterCriteria (any of its patterns) passes `record`."""
    events = load_template(template_path)["Resources"]["EvaluateFunction"]["Properties"]["Events"]
    filters = events["UsageChanges"]["Properties"]["FilterCriteria"]["Filters"]
    return any(EventPattern.load(f["Pattern"]).matches_event(cast(Any, record)) for f in filters)


def test_an_account_trait_change_evaluates_the_accounts_users(stack: Stack, template_path: Path) -> None:
    # Given two declining users of a small account and one of another, all evaluated
    stack.ingest([*declining_in("dee", "acme", 100), *declining_in("eli", "acme", 100)], NOW)
    stack.ingest(declining_in("ole", "other-co", 100), NOW)
    assert all(r == {"batchItemFailures": []} for r in stack.evaluate_stream())
    assert sorted((d["user"], d["rule"]) for d in stack.decisions()) == [
        ("dee", "rescue_declining"),
        ("eli", "rescue_declining"),
        ("ole", "rescue_declining"),
    ]
    # When the account's mrr rises (a group call from the CRM sync) and the stream delivers its
    # TRAITS record alone
    stack.ingest(
        [Group(userId="crm", groupId="acme", traits={"mrr": 5000}, timestamp=NOW, messageId="crm-1")],
        NOW,
    )
    records = stack.stream.read()
    traits = [r for r in records if key_of(r) == ("ACCOUNT#acme", "TRAITS")]
    assert [r["eventName"] for r in traits] == ["MODIFY"]
    # (the event source's filter lets it through)
    assert matches_filter(template_path, traits[0])
    stack.at(NOW + HOUR)
    assert stack.evaluate.handler({"Records": traits}, Context()) == {"batchItemFailures": []}
    # Then the account's users are escalated with the new traits; the other account's user is not
    # evaluated. The crm user is in acme too (a new user: nothing fires yet).
    assert sorted((d["user"], d["rule"], d["action"]) for d in stack.decisions()) == [
        ("dee", "at_risk_account", "escalate"),
        ("dee", "rescue_declining", "escalate"),
        ("eli", "at_risk_account", "escalate"),
        ("eli", "rescue_declining", "escalate"),
    ]
    # And a redelivery, or a trait value set again unchanged, evaluates nobody
    stack.stream.read()
    assert stack.evaluate.handler({"Records": traits}, Context()) == {"batchItemFailures": []}
    stack.ingest(
        [Group(userId="crm", groupId="acme", traits={"mrr": 5000}, timestamp=NOW + HOUR, messageId="crm-2")],
        NOW + HOUR,
    )
    again = [r for r in stack.stream.read() if key_of(r) == ("ACCOUNT#acme", "TRAITS")]
    assert len(again) == 1
    assert stack.evaluate.handler({"Records": again}, Context()) == {"batchItemFailures": []}
    assert stack.decisions() == []
    assert stack.stream.read() == []


def test_the_filter_passes_account_traits_and_still_rejects_segments_and_rollups(
    stack: Stack, template_path: Path
) -> None:
    stack.ingest(declining_in("dee", "acme", 100), NOW)
    records = stack.stream.read()
    # The rollup function's writes (the account's rollup shard, its batch marker) land on the stream too
    RollupStreamHandler(DynamoRollupLedger(boto3.client("dynamodb"), stack.settings.usage_table)).handle(
        {"Records": [r for r in records if "rd" in r["dynamodb"].get("NewImage", {})]}
    )
    rollups = stack.stream.read()
    stack.evaluate.handler({"Records": records}, Context())
    own = stack.stream.read()
    assert {key_of(r) for r in own} == {("USER#dee", "SEGMENTS")}
    passed = {key_of(r) for r in records + rollups + own if matches_filter(template_path, r)}
    assert passed == {("USER#dee", "STATE"), ("ACCOUNT#acme", "TRAITS")}
    assert any(key_of(r)[1].startswith("ROLLUP#") for r in rollups)  # rollups were there, rejected
    assert any(key_of(r)[0].startswith("ROLLUPRUN#") for r in rollups)


# ---------------------------------------------------------------------------- sweep


@pytest.mark.parametrize(("users", "due"), [(200, 5), (400, 5), (200, 20)])
def test_the_sweep_evaluates_exactly_the_users_due_and_its_reads_grow_with_them(
    stack: Stack, users: int, due: int
) -> None:
    # Given `users` users evaluated now: `due` signed up 22 hours ago (their "finish setup"
    # check falls due in 2 hours), the others activated 10 days ago (nothing due for days)
    fresh = [f"fresh{i:03d}" for i in range(due)]
    settled = [f"settled{i:03d}" for i in range(users - due)]
    stack.ingest([m for u in settled for m in activated(u, NOW - 10 * DAY)], NOW - 10 * DAY + 5 * HOUR)
    stack.ingest([m for u in fresh for m in signed_up(u, NOW - 22 * HOUR)], NOW - 22 * HOUR)
    assert all(r == {"batchItemFailures": []} for r in stack.evaluate_stream())
    stack.sweep.handler({}, Context())  # sweeps run all along: this one sets the watermark
    stack.decisions()
    later = NOW + 6 * HOUR
    scheduled = {u: int(i["due_at"]["N"]) for u, i in stack.scan_segments().items() if "due_at" in i}
    assert {u for u, at in scheduled.items() if at <= later.timestamp()} == set(fresh)
    # When the sweep runs six hours later
    stack.at(later)
    reads = stack.count_reads()
    summary = stack.sweep.handler({}, Context())
    # Then it evaluated exactly the users due, and read only them: the watermark, one index
    # query per shard of today's bucket, one BatchGetItem of their states and one of their records
    assert (summary["due"], summary["evaluated"], summary["failed"]) == (due, due, 0)
    shards = stack.settings.due_shards
    assert reads.requests == {"GetItem": 1, "Query": shards, "BatchGetItem": 2}
    assert reads.items == 1 + 3 * due
    assert sorted(d["user"] for d in stack.decisions()) == fresh
    rescheduled = {u: int(i["due_at"]["N"]) for u, i in stack.scan_segments().items() if u in fresh}
    assert all(at > later.timestamp() for at in rescheduled.values())


def test_the_sweep_schedule_event_runs_the_sweep(stack: Stack) -> None:
    event = json.loads((REPO / "events/sweep-schedule.json").read_text())
    assert event["detail-type"] == "Scheduled Event"
    summary = stack.sweep.handler(event, Context())
    assert summary["complete"] is True
    assert summary["due"] == 0


def test_a_bad_rule_file_fails_the_cold_start_naming_file_and_line(
    aws: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import shutil

    from nudge.rulebook.yamlfile import RuleFileError

    rules = tmp_path / "rules"
    shutil.copytree(ONE_SHOT_DIR, rules)
    triggers = rules / "triggers.yaml"
    triggers.write_text(triggers.read_text().replace("segment: not_activated", "segment: not_activatd", 1))
    monkeypatch.setenv("NUDGE_RULES_DIR", str(rules))
    monkeypatch.setenv("NUDGE_DECISION_QUEUE_URL", "https://sqs.us-east-1.amazonaws.com/123456789012/q")
    bootstrap.reset()
    try:
        with pytest.raises(RuleFileError):
            _load(REPO / "functions/evaluate/app.py", "evaluate_app_bad_rules")
    finally:
        bootstrap.reset()
    logged = next(r for r in caplog.records if "rule files are invalid" in r.getMessage())
    assert logged.levelname == "ERROR"
    problems: list[str] = logged.__dict__["problems"]
    assert any(re.search(r"triggers\.yaml:\d+: unknown segment 'not_activatd'", p) for p in problems)
