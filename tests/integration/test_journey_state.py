"""`nudge journeys snapshot` and `nudge rules lint --state`: the live journey instances of the usage
table written as JSON lines, and the lint counting, per journey change, the live instances it ends
(a step removed, a journey removed) and with which reason; a bad snapshot line refused by file:line."""

from __future__ import annotations

import json
import shutil
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest

from nudge.adapters.dynamo.segments import DynamoSegmentStore
from nudge.model.journeys import JourneyInstance
from nudge.model.segments import SegmentRecord
from nudge.settings import Settings
from nudge.tools.cli import main
from nudge.tools.local.aws import create_usage_resources
from tests.shipped import ONE_SHOT_DIR

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


@pytest.fixture
def rules_dir(tmp_path: Path) -> Path:
    target = tmp_path / "rules"
    shutil.copytree(ONE_SHOT_DIR, target)  # no shipped journey beside the fixture's
    shutil.copy(ROOT / "tests" / "journeys" / "declining_rescue.yaml", target / "journeys")
    return target


def at(journey: str, step: str | None, ended: bool = False) -> JourneyInstance:
    return JourneyInstance(
        journey=journey,
        step=None if ended else step,
        step_since=NOW,
        entered_at=NOW,
        exited_at=NOW + timedelta(days=1) if ended else None,
        reason="completed" if ended else None,
        path=(step,) if step else (),
    )


def test_a_snapshot_of_the_table_feeds_the_lint_which_counts_what_each_change_ends(
    aws: None, template_path: Path, rules_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = Settings(usage_table=f"usage-{uuid.uuid4().hex[:8]}", keys_path="/nudge/test-state/keys")
    client: Any = boto3.client("dynamodb")
    create_usage_resources(client, boto3.client("ssm"), template_path, settings, ["k"])
    store = DynamoSegmentStore(client, settings.usage_table)
    # Given three users on a step that is gone, two of them also in a journey that is gone, one on a
    # step that exists, one whose instance on the gone step already ended, and one with no journey
    population = {
        "ann": {"declining_rescue": at("declining_rescue", "old_step"), "gone": at("gone", "s1")},
        "bob": {"declining_rescue": at("declining_rescue", "old_step"), "gone": at("gone", None)},
        "cat": {"declining_rescue": at("declining_rescue", "old_step")},
        "dan": {"declining_rescue": at("declining_rescue", "pause")},
        "eve": {"declining_rescue": at("declining_rescue", "old_step", ended=True)},
        "fay": {},
    }
    for user, journeys in population.items():
        store.save(user, SegmentRecord(journeys=journeys), 0, NOW)
    snapshot = tmp_path / "state.jsonl"
    # When a snapshot is taken and the rules linted against it
    assert main(["journeys", "snapshot", "--table", settings.usage_table, "--out", str(snapshot)]) == 0
    lines = [json.loads(line) for line in snapshot.read_text().splitlines()]
    assert sorted(line["user"] for line in lines) == ["ann", "bob", "cat", "dan", "eve"]
    capsys.readouterr()
    assert main(["rules", "lint", str(rules_dir), "--state", str(snapshot)]) == 0
    out = capsys.readouterr().out
    # Then each change is listed with the live instances it ends and the reason they will carry
    assert f"{snapshot}: 6 live journey instances of 5 users" in out
    assert (
        "  declining_rescue: step 'old_step' removed: 3 live instances (3 users) will exit with reason "
        "step_removed at their next evaluation"
    ) in out
    assert "  gone: journey removed: 2 live instances (2 users) will exit with reason journey_removed" in out
    assert "pause" not in out


def test_lint_against_a_snapshot_with_nothing_removed_says_so(
    rules_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    snapshot = tmp_path / "state.jsonl"
    instance = at("declining_rescue", "survey").model_dump(mode="json")
    snapshot.write_text("# taken today\n\n" + json.dumps({"user": "ann", "journeys": {"d": instance}}) + "\n")
    assert main(["rules", "lint", str(rules_dir), "--state", str(snapshot)]) == 0
    assert "no live instance is on a removed journey or step" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "state.jsonl:2: not JSON"),
        ('["ann"]', 'state.jsonl:2: each line needs "user"'),
        (
            '{"user": "ann", "journeys": {"d": {"journey": "x"}}}',
            "state.jsonl:2: instance 'd': step_since: Field required",
        ),
    ],
)
def test_a_bad_snapshot_line_is_refused_by_file_and_line(
    rules_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], line: str, message: str
) -> None:
    snapshot = tmp_path / "state.jsonl"
    snapshot.write_text('{"user": "bob", "journeys": {}}\n' + line + "\n")
    assert main(["rules", "lint", str(rules_dir), "--state", str(snapshot)]) == 1
    assert message in capsys.readouterr().err
