"""`nudge rules explain USER --table | --stack` on DynamoDB (moto, tables from template.yaml): "why
didn't Ann get the create-first-project email yesterday?" answered from the live tables: her
segment, each rule's tests, the ledger's decisions with their verdicts, and what is next."""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest

from nudge.adapters.dynamo.ledger import DynamoLedger
from nudge.adapters.dynamo.segments import DynamoSegmentStore
from nudge.adapters.dynamo.usage import DynamoUsageStore
from nudge.adapters.memory import MemoryDecisionPublisher, MemoryRechecks, MemoryRouter
from nudge.model.decisions import Decision
from nudge.model.journeys import JourneyInstance
from nudge.model.messages import Identify, Message, Track
from nudge.model.queue import DecisionBatch
from nudge.services.dispatch import DispatchPorts, dispatch
from nudge.services.evaluate import RulesPorts, evaluate_user
from nudge.services.ingest import ingest
from nudge.settings import Settings, get_settings
from nudge.tools.cli import main
from nudge.tools.local.aws import create_usage_resources
from tests.shipped import ONE_SHOT_DIR, UNHELD

REPO = Path(__file__).resolve().parents[2]
RULES = UNHELD  # no holdouts: whether a send goes out must not depend on the user id's hash
SIGNED_UP = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)
NOW = SIGNED_UP + timedelta(days=1, hours=2)  # 12:00 in New York, outside quiet hours


@dataclass
class Tables:
    settings: Settings
    usage: DynamoUsageStore
    segments: DynamoSegmentStore
    ledger: DynamoLedger


@pytest.fixture
def tables(aws: None, template_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Tables]:
    suffix = uuid.uuid4().hex[:8]
    settings = Settings(usage_table=f"usage-{suffix}", ledger_table=f"ledger-{suffix}")
    client = boto3.client("dynamodb")
    create_usage_resources(client, boto3.client("ssm"), template_path, settings, ["wk"])
    monkeypatch.setenv("NUDGE_RULES_DIR", str(ONE_SHOT_DIR))
    get_settings.cache_clear()
    try:
        yield Tables(
            settings,
            DynamoUsageStore(client, settings.usage_table, settings.rollup_shards),
            DynamoSegmentStore(client, settings.usage_table),
            DynamoLedger(client, settings.ledger_table),
        )
    finally:
        get_settings.cache_clear()


def decision(rule: str, user: str, at: datetime) -> Decision:
    spec = RULES.trigger_by_id[rule].spec
    return Decision(
        decision_id=f"{rule}-{user}-{at:%Y%m%d%H}",
        user=user,
        account=None,
        rule=rule,
        kind=spec.kind,
        action=spec.action,
        channel=spec.action,
        template=spec.template,
        priority=spec.priority,
        reason=spec.description,
        facts={},
        decided_at=at,
    )


def ann_signed_up_and_was_emailed(tables: Tables) -> str:
    """Ann signed up yesterday and set nothing up; the evaluator recorded her segment, and
    dispatch sent finish_setup, then capped a create_first_project email an hour later (one email
    a day)."""
    ann = f"ann-{uuid.uuid4().hex[:6]}"
    messages: list[Message] = [
        Identify(
            userId=ann,
            traits={"email": f"{ann}@example.com", "timezone": "America/New_York"},
            timestamp=SIGNED_UP,
            messageId=f"{ann}-i",
        ),
        Track(userId=ann, event="signed_up", timestamp=SIGNED_UP, messageId=f"{ann}-s"),
    ]
    assert not ingest(list(enumerate(messages)), RULES.plan, tables.usage, NOW).errors
    state = tables.usage.load_users([ann])[ann]
    evaluate_user(
        state.value, RULES, RulesPorts(tables.usage, tables.segments, MemoryDecisionPublisher()), NOW
    )
    ports = DispatchPorts(tables.ledger, tables.usage, MemoryRouter(), MemoryRechecks())
    for rule, at in (("finish_setup", NOW), ("create_first_project", NOW + timedelta(hours=1))):
        batch = DecisionBatch(user=ann, account=None, decided_at=at, decisions=[decision(rule, ann, at)])
        dispatch(batch, RULES, ports, at)
    return ann


def explain(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["rules", "explain", *argv, "--rules", str(ONE_SHOT_DIR)])
    printed = capsys.readouterr()
    assert "Traceback" not in printed.out + printed.err
    return code, printed.out, printed.err


def test_explain_reads_the_deployed_tables(tables: Tables, capsys: pytest.CaptureFixture[str]) -> None:
    # Given Ann's state, segment record and ledger in the tables
    ann = ann_signed_up_and_was_emailed(tables)
    at = (NOW + timedelta(hours=2)).isoformat()
    s = tables.settings
    # When a marketer asks why, from the tables
    code, out, _ = explain(
        capsys, ann, "--table", s.usage_table, "--ledger-table", s.ledger_table, "--at", at, "--json"
    )
    # Then: her segment, each rule's tests, the decisions with their verdicts, and what is next
    assert code == 0
    data: dict[str, Any] = json.loads(out)
    assert data["segment"] == "not_activated"
    assert data["record"]["segment"] == "not_activated"
    assert data["record"]["next_check_at"] is not None
    verdicts = [(d["rule"], d["verdict"]) for d in data["decisions"]]
    assert verdicts == [
        ("create_first_project", "not sent: cap_email_day"),
        ("finish_setup", "queued to send"),
    ]
    finish = next(t for t in data["triggers"] if t["id"] == "finish_setup")
    assert finish["fires"] is True
    assert finish["condition"]["holds"] is True
    nexts = [n["what"] for n in data["next"]]
    assert any(n.startswith("finish_setup holds; its cooldown (3d) ends") for n in nexts)
    assert any(n.startswith("time-based re-check") for n in nexts)
    # ... and as text, in the marketer's words
    code, text, _ = explain(
        capsys, ann, "--table", s.usage_table, "--ledger-table", s.ledger_table, "--at", at
    )
    assert code == 0
    assert "Decisions in the ledger, newest first (2 in all):" in text
    assert "create_first_project (email): not sent: cap_email_day" in text
    assert "Segment record: not_activated since " in text
    assert "What is next:" in text


def test_explain_finds_the_tables_through_the_stack_outputs(
    tables: Tables, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a stack whose outputs name the tables, as template.yaml's do
    ann = ann_signed_up_and_was_emailed(tables)
    stack = f"nudge-{uuid.uuid4().hex[:6]}"
    template = {
        "Resources": {"Queue": {"Type": "AWS::SQS::Queue", "Properties": {"QueueName": stack}}},
        "Outputs": {
            "UsageTableName": {"Value": tables.settings.usage_table},
            "LedgerTableName": {"Value": tables.settings.ledger_table},
        },
    }
    boto3.client("cloudformation").create_stack(StackName=stack, TemplateBody=json.dumps(template))
    # When explain is given the stack
    code, out, _ = explain(capsys, ann, "--stack", stack, "--json", "--at", NOW.isoformat())
    # Then it read both tables
    assert code == 0
    data = json.loads(out)
    assert stack in data["source"]
    assert len(data["decisions"]) == 2


def test_without_the_ledger_table_it_says_the_decisions_were_not_read(
    tables: Tables, capsys: pytest.CaptureFixture[str]
) -> None:
    ann = ann_signed_up_and_was_emailed(tables)
    code, out, _ = explain(capsys, ann, "--table", tables.settings.usage_table, "--at", NOW.isoformat())
    assert code == 0
    assert "Decisions: the ledger was not read (give --ledger-table, or --stack)" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--table", "no-such-table"], "cannot read the tables: DynamoDB ResourceNotFoundException"),
        (["--stack", "no-such-stack"], "stack no-such-stack:"),
        (["--local", "localhost:1"], "--local wants the local API's URL"),
    ],
)
def test_unreadable_sources_are_one_line(
    aws: None, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    code, _, err = explain(capsys, "ann", *argv)
    assert code == 1
    assert message in err
    assert len(err.strip().splitlines()) == 1


def test_an_unknown_user_is_named(tables: Tables, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = explain(capsys, "nobody", "--table", tables.settings.usage_table)
    assert code == 1
    assert f"nobody: no usage state in table {tables.settings.usage_table}" in err


def test_explain_shows_where_a_live_user_is_in_each_journey(
    tables: Tables, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given Ann's segment record holding a rescue instance waiting for her survey answer
    ann = ann_signed_up_and_was_emailed(tables)
    rules_dir = tmp_path / "rules"
    shutil.copytree(ONE_SHOT_DIR, rules_dir)  # no shipped journey beside the fixture's
    shutil.copy(REPO / "tests" / "journeys" / "declining_rescue.yaml", rules_dir / "journeys")
    stored = tables.segments.load([ann])[ann]
    since = NOW - timedelta(days=1)
    waiting = JourneyInstance(
        journey="declining_rescue",
        step="answer",
        step_since=since,
        entered_at=since - timedelta(days=3),
        wake_at=since + timedelta(days=4),
        path=("quick_win", "pause", "survey", "answer"),
    )
    record = stored.value.model_copy(update={"journeys": {"declining_rescue": waiting}})
    tables.segments.save(ann, record, stored.version, NOW)
    s = tables.settings
    argv = ["rules", "explain", ann, "--table", s.usage_table, "--rules", str(rules_dir)]
    # When a marketer asks, from the tables
    assert main([*argv, "--at", NOW.isoformat()]) == 0
    out = capsys.readouterr().out
    # Then the journey part says where she is, why she has not moved on, and what is next and when
    assert "  declining_rescue (rescue, entry on entering segment declining):" in out
    assert f"    at step answer since {since:%Y-%m-%dT%H:%M:%SZ}" in out
    assert f"      ✗ did survey_answered since {since:%Y-%m-%dT%H:%M:%SZ}" in out
    wake = since + timedelta(days=4)
    assert (
        f"    next: {wake:%Y-%m-%dT%H:%M:%SZ}: on to route as soon as it happens, else to high_value at the timeout"
    ) in out
    assert main([*argv, "--at", NOW.isoformat(), "--json"]) == 0
    (rescue,) = json.loads(capsys.readouterr().out)["journeys"]
    assert rescue["instances"][0]["step"] == "answer"
