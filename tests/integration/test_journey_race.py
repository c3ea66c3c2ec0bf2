"""Two evaluations racing for one user never fork a journey instance, on DynamoDB.

The stream evaluator and the sweep (or two stream records of one user) may evaluate the same
user at once. Two threads run the real evaluate use case against one moto server (real HTTP, the
usage table from template.yaml), each with its own boto3 client; a barrier at the segment store
holds each just before its save until both have read the record and decided: the race is forced
on every run. The versioned write lets one through; the loser re-reads, finds the instance the
winner started and decides nothing new. Also: the same stream record evaluated twice writes once;
and two evaluations taking different paths of one instance (the sweep on the state read before an
event, past a wait_until's timeout; the stream on the state with it) both publish, but dispatch
sends only the saved path's message.
"""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest

from nudge.adapters.dynamo.ledger import DynamoLedger
from nudge.adapters.dynamo.segments import DynamoSegmentStore
from nudge.adapters.dynamo.usage import DynamoUsageStore
from nudge.adapters.memory import MemoryDecisionPublisher, MemoryRouter
from nudge.model.messages import Identify, Message, Track
from nudge.model.segments import SegmentRecord
from nudge.model.state import UserState
from nudge.model.versioned import Versioned
from nudge.rulebook.ruleset import RuleSet
from nudge.services.dispatch import DispatchPorts, dispatch
from nudge.services.evaluate import RulesPorts, SegmentRechecks, evaluate_user
from nudge.services.ingest import ingest
from nudge.settings import Settings
from nudge.tools.local.aws import LockedMotoServer, create_usage_resources
from tests.journey_fixtures import INVITE, UPGRADE, rules_with

REPO = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 11, 26, 17, 0, tzinfo=UTC)
REGION = "us-east-1"


@pytest.fixture(scope="module")
def rules(tmp_path_factory: pytest.TempPathFactory) -> RuleSet:
    return rules_with(tmp_path_factory.mktemp("race"), "upgrade_sequence", UPGRADE)


@pytest.fixture(scope="module")
def invite_rules(tmp_path_factory: pytest.TempPathFactory) -> RuleSet:
    return rules_with(tmp_path_factory.mktemp("fork"), "invite_nudge", INVITE)


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


def test_two_evaluations_taking_different_paths_of_one_instance_send_only_the_saved_one(
    invite_rules: RuleSet, template_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rules = invite_rules
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    with LockedMotoServer() as server:
        suffix = uuid.uuid4().hex[:8]
        settings = Settings(
            usage_table=f"usage-{suffix}", ledger_table=f"ledger-{suffix}", keys_path="/nudge/fork/keys"
        )

        def client(name: str) -> Any:
            return boto3.client(name, region_name=REGION, endpoint_url=server.endpoint_url)

        create_usage_resources(client("dynamodb"), client("ssm"), template_path, settings, ["wk"])
        usage = DynamoUsageStore(client("dynamodb"), settings.usage_table)
        segments = DynamoSegmentStore(client("dynamodb"), settings.usage_table)
        messages: list[Message] = [
            Identify(
                userId="bea",
                traits={"email": "bea@example.com", "timezone": "UTC"},
                timestamp=NOW,
                messageId="i1",
            ),
            Track(
                userId="bea",
                event="premium_feature_attempted",
                properties={"feature": "sso"},
                timestamp=NOW,
                messageId="t1",
            ),
        ]
        assert not ingest(list(enumerate(messages)), rules.plan, usage, NOW).errors
        entered = usage.load_users(["bea"])["bea"]
        evaluate_user(
            entered.value,
            rules,
            RulesPorts(usage, segments, MemoryDecisionPublisher()),
            NOW,
            state_version=entered.version,
        )
        assert segments.load(["bea"])["bea"].value.journeys["invite_nudge"].step == "ask"

        # Given the sweep's read of the state just before an invite landed, and the state with it
        deadline = NOW + timedelta(days=2)
        before = usage.load_users(["bea"])["bea"]
        invite = Track(
            userId="bea", event="teammate_invited", timestamp=deadline - timedelta(minutes=1), messageId="t2"
        )
        assert not ingest([(0, invite)], rules.plan, usage, deadline - timedelta(minutes=1)).errors
        after = usage.load_users(["bea"])["bea"]
        # When the sweep (past the timeout) and the stream (seeing the invite) evaluate at once,
        # each held before its save until both have read the record and published
        barrier = threading.Barrier(2)
        stores = [
            SaveBarrier(DynamoSegmentStore(client("dynamodb"), settings.usage_table), barrier)
            for _ in range(2)
        ]
        publishers = [MemoryDecisionPublisher() for _ in range(2)]
        runs: list[tuple[Versioned[UserState], datetime]] = [
            (before, deadline + timedelta(minutes=1)),
            (after, deadline - timedelta(seconds=30)),
        ]
        errors: list[BaseException] = []

        def run(i: int) -> None:
            state, now = runs[i]
            try:
                ports = RulesPorts(
                    DynamoUsageStore(client("dynamodb"), settings.usage_table), stores[i], publishers[i]
                )
                evaluate_user(state.value, rules, ports, now, state_version=state.version)
            except BaseException as exc:  # reported below, not lost in the thread
                errors.append(exc)

        threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert errors == []
        assert sorted(s.conflicts for s in stores) == [0, 1]
        published = [d for p in publishers for d in p.published if d.journey]
        assert sorted(d.step for d in published) == ["reminder", "thanks"]  # both paths published

        # Then dispatch, on the same tables, sends the saved path's message only
        ledger = DynamoLedger(client("dynamodb"), settings.ledger_table)
        router = MemoryRouter()
        ports = DispatchPorts(ledger, usage, router, SegmentRechecks(segments))
        for batch in [b for p in reversed(publishers) for b in p.batches]:
            dispatch(batch, rules, ports, deadline + timedelta(minutes=2))
        saved = segments.load(["bea"])["bea"].value.journeys["invite_nudge"]
        on_path = {d.decision_id for d in saved.decided or ()}
        [sent] = router.routed
        assert sent.decision_id in on_path
        [loser] = [d for d in published if d.decision_id not in on_path]
        entry = ledger.get("USER#bea", loser.decision_id)
        assert entry is not None
        assert (entry.outcome, entry.reason) == ("suppressed", "superseded")
