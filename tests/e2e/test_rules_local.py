"""The local stack's rules path: the stream pump, the sweep on the simulated clock, the decision tap.

The real evaluate and sweep handlers run in the stack's containers; these tests drive them the way
Lambda and EventBridge would (nudge.tools.local.streams and schedules) and look at the results over HTTP.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import boto3
import pytest

from nudge.tools.local.aws import HandlerFailed
from nudge.tools.local.streams import StreamPump

if TYPE_CHECKING:
    from mypy_boto3_sqs.client import SQSClient

    from tests.e2e.conftest import Api

# Most of these move the stack's clock: they run after the e2e tests that need the wall clock.
pytestmark = [pytest.mark.e2e, pytest.mark.moves_clock]

ACTIVATION = ("signed_up", "setup_completed", "project_created", "teammate_invited")


def track(api: Api, user: str, event: str, **delta: float) -> dict[str, Any]:
    when = api.stack.clock.now() - timedelta(**(delta or {"minutes": 1}))
    return {
        "type": "track",
        "userId": user,
        "event": event,
        "messageId": str(uuid.uuid4()),
        "timestamp": when.isoformat(),
    }


def post_events(api: Api, user: str, *events: str) -> None:
    response = api.post("/v1/batch", {"batch": [track(api, user, event) for event in events]})
    assert response.status_code == 200, response.text
    assert response.json()["accepted"] == len(events)


def move_clock(api: Api, when: datetime) -> dict[str, Any]:
    response = api.session.post(f"{api.base_url}/_local/clock", json={"now": when.isoformat()}, timeout=600)
    assert response.status_code == 200, response.text
    moved: dict[str, Any] = response.json()
    return moved


def decisions(api: Api, user: str) -> list[dict[str, Any]]:
    response = api.session.get(f"{api.base_url}/_local/decisions", params={"user": user}, timeout=60)
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()["decisions"]
    return found


def sqs(api: Api) -> SQSClient:
    client: SQSClient = boto3.client(
        "sqs",
        endpoint_url=api.stack.endpoint_url,
        region_name="us-east-1",
        aws_access_key_id="local",
        aws_secret_access_key="local",
    )
    return client


def evaluate_pump(api: Api) -> StreamPump:
    """The stack's pump of the usage stream into the evaluate function (the rollup function has one too)."""
    return next(p for p in api.stack.pumps if p.source.function == "EvaluateFunction")


def side_pump(api: Api, invoke: Any, **changes: Any) -> StreamPump:
    """A second event source mapping on the usage table's stream (from now on), with its own invoker."""
    stack_pump = evaluate_pump(api)
    pump = StreamPump(
        replace(stack_pump.source, **changes),
        stream_arn=stack_pump.stream_arn,
        streams=boto3.client(
            "dynamodbstreams",
            endpoint_url=api.stack.endpoint_url,
            region_name="us-east-1",
            aws_access_key_id="local",
            aws_secret_access_key="local",
        ),
        sqs=sqs(api),
        failure_queue_url=api.stack.queue_urls["EvaluateFailureQueue"],
        invoke=invoke,
        now=api.stack.clock.now,
    )
    pump.start()
    return pump


# ---------------------------------------------------------------------------- segments over time


def test_an_activated_user_becomes_dormant_when_the_clock_moves_31_days(api: Api, uid: str) -> None:
    # Given a user who activated a minute ago
    post_events(api, uid, *ACTIVATION)
    user = api.user(uid)
    assert user["segments"] == ["newly_activated"]
    assert [(t["from"], t["to"]) for t in user["segment_history"]] == [(None, "newly_activated")]
    active_at = api.stack.clock.now()

    # When 31 days pass with no event at all
    moved = move_clock(api, active_at + timedelta(days=31))

    # Then the sweep (no new event came) moved them on, to dormant, once the 30 days were up
    assert moved["sweeps"] >= 31
    user = api.user(uid)
    assert user["segments"] == ["dormant"]
    history = user["segment_history"]
    assert history[0] == {"from": None, "to": "newly_activated", "at": history[0]["at"]}
    assert [t["from"] for t in history[1:]] == [t["to"] for t in history[:-1]]
    dormant_at = datetime.fromisoformat(history[-1]["at"])
    assert history[-1]["to"] == "dormant"
    # The clock moves a day at a time, so the transition is dated within a day of the threshold.
    assert timedelta(days=30) <= dormant_at - active_at <= timedelta(days=31, minutes=5)
    assert datetime.fromisoformat(user["segment_since"]) == dormant_at
    # ...and the rescue rule decided to write to them, dated on the simulated clock
    # (once per cooldown window: the rule's 30-day window may turn within the last day, and the
    # decision of the new window then meets the guardrails again, as a new decision)
    rescue = [d for d in decisions(api, uid) if d["rule"] == "rescue_dormant"]
    assert 1 <= len(rescue) <= 2
    assert len({d["decision_id"] for d in rescue}) == len(rescue)
    assert rescue[0]["action"] == "email"
    assert datetime.fromisoformat(rescue[0]["decided_at"]) == dormant_at


def test_a_redelivered_stream_record_yields_no_duplicate_transition(api: Api, uid: str) -> None:
    # Given a user already evaluated once (not activated yet)
    post_events(api, uid, "signed_up", "login")
    assert api.user(uid)["segments"] == ["not_activated"]
    before = {d["decision_id"] for d in decisions(api, uid)}

    # ...and a second mapping on the stream: every record will reach the handler twice
    delivered: list[dict[str, Any]] = []

    def real(function: str, event: dict[str, Any]) -> dict[str, Any]:
        delivered.extend(event["Records"])
        return api.stack.invoke_function(function, event)

    duplicate = side_pump(api, real)

    # When the activation arrives and both mappings deliver its record (the side one first)
    post_events(api, uid, "setup_completed", "project_created", "teammate_invited")
    stats = duplicate.pump()
    user = api.user(uid)  # the stack's own pump delivers the same record again

    # Then the transition is recorded once, and no decision is published twice
    duplicate.close()
    assert stats.delivered >= 1
    assert any(r["dynamodb"]["Keys"]["pk"]["S"] == f"USER#{uid}" for r in delivered)
    assert [(t["from"], t["to"]) for t in user["segment_history"]] == [
        (None, "not_activated"),
        ("not_activated", "newly_activated"),
    ]
    ids = [d["decision_id"] for d in decisions(api, uid)]
    assert len(ids) == len(set(ids))
    assert before <= set(ids)


# ---------------------------------------------------------------------------- Lambda's behaviour


def test_the_handler_gets_lambda_shaped_batches_of_state_records_only(api: Api, uid: str) -> None:
    # Given a mapping whose "function" records what it is sent
    events: list[dict[str, Any]] = []

    def recorder(function: str, event: dict[str, Any]) -> dict[str, Any]:
        events.append(event)
        return {"batchItemFailures": []}

    pump = side_pump(api, recorder)

    # When a user and their account change (traits, rollups and state items are all written)
    account = f"acct-{uid}"
    assert api.post("/v1/group", {"userId": uid, "groupId": account, "traits": {"plan": "team"}}).ok
    post_events(api, uid, "signed_up", "setup_completed")
    api.stack.settle()  # the rollup function applies the users' deltas: its writes are on the stream too
    stats = pump.pump()
    pump.close()

    # Then only users' STATE and accounts' TRAITS records got through the template's filters (the
    # rollups and the rollup function's markers did not), shaped as Lambda sends them
    records = [r for event in events for r in event["Records"]]
    assert stats.filtered_out > 0
    assert records
    assert all(len(event["Records"]) <= pump.source.batch_size for event in events)
    stream_arn = evaluate_pump(api).stream_arn
    for record in records:
        assert record["eventSource"] == "aws:dynamodb"
        assert record["eventName"] in ("INSERT", "MODIFY")
        assert record["eventSourceARN"] == stream_arn
        assert record["awsRegion"] == "us-east-1"
        keys = record["dynamodb"]["Keys"]
        assert (keys["pk"]["S"].split("#")[0], keys["sk"]["S"]) in (("USER", "STATE"), ("ACCOUNT", "TRAITS"))
        assert record["dynamodb"]["StreamViewType"] == "NEW_AND_OLD_IMAGES"
        assert isinstance(record["dynamodb"]["ApproximateCreationDateTime"], int)
        assert isinstance(record["dynamodb"]["NewImage"]["state"]["B"], str)  # base64, as on the wire
    assert {"pk": {"S": f"ACCOUNT#{account}"}, "sk": {"S": "TRAITS"}} in [
        r["dynamodb"]["Keys"] for r in records
    ]
    mine = [r for r in records if r["dynamodb"]["Keys"]["pk"]["S"] == f"USER#{uid}"]
    assert mine
    # Stamped on the simulated clock, which the e2e session may have moved far from the real one
    created = datetime.fromtimestamp(mine[-1]["dynamodb"]["ApproximateCreationDateTime"], UTC)
    assert abs(created - api.stack.clock.now()) < timedelta(minutes=1)


def test_a_reported_failure_is_retried_from_it_then_sent_to_the_failure_queue(api: Api, uid: str) -> None:
    # Given a "function" that always reports the record of one user as failed
    attempts: list[list[str]] = []
    poison = f"USER#{uid}-poison"

    def failing(function: str, event: dict[str, Any]) -> dict[str, Any]:
        keys = [r["dynamodb"]["Keys"]["pk"]["S"] for r in event["Records"]]
        attempts.append(keys)
        failed = [r for r in event["Records"] if r["dynamodb"]["Keys"]["pk"]["S"] == poison]
        return {"batchItemFailures": [{"itemIdentifier": r["dynamodb"]["SequenceNumber"]} for r in failed]}

    pump = side_pump(api, failing, max_retries=2)
    queue = api.stack.queue_urls["EvaluateFailureQueue"]
    client = sqs(api)
    drain(client, queue)

    # When a good user, the poison one and another good one change, in that order
    for user in (f"{uid}-a", f"{uid}-poison", f"{uid}-b"):
        post_events(api, user, "login")
    stats = pump.pump()
    pump.close()

    # Then the batch went through once, and was retried from the poison record on, twice
    assert attempts[0] == [f"USER#{uid}-a", poison, f"USER#{uid}-b"]
    assert attempts[1:] == [[poison, f"USER#{uid}-b"]] * 2
    assert (stats.retries, stats.failed_batches, stats.failed_records) == (2, 1, 2)
    # ...and the on-failure destination got where the records are, not the records
    received = client.receive_message(QueueUrl=queue, MaxNumberOfMessages=10)["Messages"]
    assert len(received) == 1
    failure = json.loads(received[0]["Body"])
    info = failure["DDBStreamBatchInfo"]
    assert info["batchSize"] == 2
    assert info["streamArn"] == pump.stream_arn
    assert int(info["startSequenceNumber"]) < int(info["endSequenceNumber"])
    assert failure["requestContext"]["condition"] == "RetryAttemptsExhausted"
    assert failure["requestContext"]["approximateInvokeCount"] == 3


def drain(client: Any, queue: str) -> None:
    """Empty a queue by receiving and deleting (SQS allows one PurgeQueue a minute per queue)."""
    while messages := client.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages"):
        for message in messages:
            client.delete_message(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"])


def test_a_function_error_bisects_the_batch_down_to_the_poison_record(api: Api, uid: str) -> None:
    # Given a "function" that raises whenever the poison user is in its batch
    attempts: list[list[str]] = []
    poison = f"USER#{uid}-poison"

    def crashing(function: str, event: dict[str, Any]) -> dict[str, Any]:
        keys = [r["dynamodb"]["Keys"]["pk"]["S"] for r in event["Records"]]
        attempts.append(keys)
        if poison in keys:
            raise HandlerFailed("boom")
        return {}

    pump = side_pump(api, crashing, max_retries=1)
    drain(sqs(api), api.stack.queue_urls["EvaluateFailureQueue"])

    # When four users change, the third being the poison one
    users = [f"{uid}-a", f"{uid}-b", f"{uid}-poison", f"{uid}-c"]
    for user in users:
        post_events(api, user, "login")
    stats = pump.pump()
    pump.close()

    # Then every good record got through, and only the poison one was given up
    succeeded = {key for keys in attempts for key in keys if poison not in keys}
    assert succeeded == {f"USER#{u}" for u in users if "poison" not in u}
    assert stats.failed_records == 1
    assert stats.bisections == 2  # [a b poison c] -> [a b] [poison c] -> [poison] [c]
    assert attempts.count([poison]) == 2  # alone: one try and one retry, then given up


def test_the_clock_moves_forward_only_and_a_short_move_runs_no_sweep(api: Api) -> None:
    now = api.stack.clock.now()
    runs = sum(len(s.runs) for s in api.stack.schedules)
    moved = move_clock(api, now + timedelta(seconds=5))
    assert moved["sweeps"] in (0, 1)  # one only if a 15-minute firing fell in those seconds
    assert sum(len(s.runs) for s in api.stack.schedules) == runs + moved["sweeps"]
    back = api.session.post(f"{api.base_url}/_local/clock", json={"now": now.isoformat()}, timeout=30)
    assert back.status_code == 409
    naive = api.session.post(f"{api.base_url}/_local/clock", json={"now": "2030-01-01T00:00:00"}, timeout=30)
    assert naive.status_code == 409
    assert "timezone" in naive.json()["message"]


def test_the_sweep_gets_an_eventbridge_scheduled_event(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    schedule = api.stack.schedules[0]
    seen: list[dict[str, Any]] = []
    invoke = schedule._invoke

    def recording(function: str, event: dict[str, Any]) -> dict[str, Any]:
        seen.append(event)
        return invoke(function, event)

    monkeypatch.setattr(schedule, "_invoke", recording)
    move_clock(api, api.stack.clock.now() + schedule.source.rate)
    assert len(seen) == 1
    event = seen[0]
    assert (event["source"], event["detail-type"], event["detail"]) == ("aws.events", "Scheduled Event", {})
    assert event["resources"] == [schedule.source.rule_arn]
    assert schedule.runs[-1].result is not None
    assert schedule.runs[-1].result["complete"] is True
