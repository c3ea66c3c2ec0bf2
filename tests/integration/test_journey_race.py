"""Two evaluations racing for one user never fork a journey instance, on DynamoDB.

The stream evaluator and the sweep (or two stream records of one user) may evaluate the same
user at once. Two threads run the real evaluate use case against one moto server (real HTTP, the
usage table from template.yaml), each with its own boto3 client; a barrier at the segment store
holds each just before its save until both have read the record and decided: the race is forced
on every run. The versioned write lets one through; the loser re-reads, finds the instance the
winner started and decides nothing new. Also: the same stream record evaluated twice writes once.
"""

from __future__ import annotations

import shutil
import threading
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest

from nudge.adapters.dynamo.segments import DynamoSegmentStore
from nudge.adapters.dynamo.usage import DynamoUsageStore
from nudge.adapters.memory import MemoryDecisionPublisher
from nudge.model.messages import Identify, Message, Track
from nudge.model.segments import SegmentRecord
from nudge.rulebook.ruleset import RuleSet, load_rules
from nudge.services.evaluate import RulesPorts, evaluate_user
from nudge.services.ingest import ingest
from nudge.settings import Settings
from nudge.tools.local.aws import LockedMotoServer, create_usage_resources
from tests.shipped import ONE_SHOT_DIR, without_holdouts

REPO = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 11, 26, 17, 0, tzinfo=UTC)
REGION = "us-east-1"
JOURNEY = """
id: upgrade_sequence
kind: upgrade
entry: {event: {name: premium_feature_attempted}}
goal: {event: invoice_paid, within: 14d}
steps:
  - id: offer
    send: {channel: email, template: upgrade_offer}
  - id: pause
    wait: 2d
  - id: reminder
    send: {channel: email, template: sso_offer}
"""


@pytest.fixture(scope="module")
def rules(tmp_path_factory: pytest.TempPathFactory) -> RuleSet:
    target = tmp_path_factory.mktemp("race") / "rules"
    shutil.copytree(ONE_SHOT_DIR, target)  # no shipped journey beside this one
    (target / "journeys" / "upgrade_sequence.yaml").write_text(JOURNEY, encoding="utf-8")
    return without_holdouts(load_rules(target))


class SaveBarrier:
    """The segment store as one evaluation sees it, except that its first save waits until every
    racing evaluation has reached its own."""

    def __init__(self, inner: DynamoSegmentStore, barrier: threading.Barrier) -> None:
        self._inner = inner
        self._barrier = barrier
        self._waited = False
        self.saves = 0
        self.conflicts = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def save(self, user_id: str, record: SegmentRecord, version: int, now: datetime) -> None:
        if not self._waited:
            self._waited = True
            self._barrier.wait(timeout=30)
        self.saves += 1
        try:
            self._inner.save(user_id, record, version, now)
        except Exception:
            self.conflicts += 1
            raise


def test_two_evaluations_racing_for_one_user_start_one_instance_and_decide_once(
    rules: RuleSet, template_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    with LockedMotoServer() as server:
        settings = Settings(usage_table=f"usage-{uuid.uuid4().hex[:8]}", keys_path="/nudge/race/keys")

        def client(name: str) -> Any:
            return boto3.client(name, region_name=REGION, endpoint_url=server.endpoint_url)

        create_usage_resources(client("dynamodb"), client("ssm"), template_path, settings, ["wk"])
        usage = DynamoUsageStore(client("dynamodb"), settings.usage_table)
        messages: list[Message] = [
            Identify(userId="ann", traits={"email": "ann@example.com"}, timestamp=NOW, messageId="i1"),
            Track(
                userId="ann",
                event="premium_feature_attempted",
                properties={"feature": "sso"},
                timestamp=NOW,
                messageId="t1",
            ),
        ]
        assert not ingest(list(enumerate(messages)), rules.plan, usage, NOW).errors
        stored = usage.load_users(["ann"])["ann"]

        # Given two evaluations of the same user, each with its own client, held before saving
        barrier = threading.Barrier(2)
        stores = [
            SaveBarrier(DynamoSegmentStore(client("dynamodb"), settings.usage_table), barrier)
            for _ in range(2)
        ]
        publishers = [MemoryDecisionPublisher() for _ in range(2)]
        errors: list[BaseException] = []

        def run(i: int) -> None:
            try:
                ports = RulesPorts(
                    DynamoUsageStore(client("dynamodb"), settings.usage_table), stores[i], publishers[i]
                )
                evaluate_user(
                    stored.value, rules, ports, NOW + timedelta(seconds=i), state_version=stored.version
                )
            except BaseException as exc:  # reported below, not lost in the thread
                errors.append(exc)

        threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert errors == []

        # Then one write won, the other conflicted and re-read; one instance, one decision id
        assert sorted(s.conflicts for s in stores) == [0, 1]
        record = DynamoSegmentStore(client("dynamodb"), settings.usage_table).load(["ann"])["ann"]
        assert record.version == 1
        assert list(record.value.journeys) == ["upgrade_sequence"]
        assert record.value.journeys["upgrade_sequence"].step == "pause"
        decided = {d.decision_id for p in publishers for d in p.published if d.journey}
        assert len(decided) == 1  # published by both at most, under the same id: dispatch sends once
        assert record.value.next_check_at is not None

        # And the same record evaluated again (a redelivered stream record) writes nothing
        again = MemoryDecisionPublisher()
        evaluate_user(
            stored.value,
            rules,
            RulesPorts(usage, DynamoSegmentStore(client("dynamodb"), settings.usage_table), again),
            NOW + timedelta(seconds=5),
            state_version=stored.version,
        )
        assert DynamoSegmentStore(client("dynamodb"), settings.usage_table).load(["ann"])["ann"].version == 1
        assert [d for d in again.published if d.journey] == []
