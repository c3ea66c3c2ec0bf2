"""What journeys cost: steps advanced per second per core by the engine (nudge.domain.journeys, in
memory, the evaluation's facts computed beforehand), and DynamoDB requests per step through the
evaluate use case on moto against the floor (one conditional write per evaluation that advances
an instance, however many steps it advances: the record's own write, no extra one).

The journey is a seven-step upgrade sequence (send, wait, send, wait_until with timeout, branch,
update, escalate) entered on an event; each user is walked through it in three evaluations, as the
stream (entry) and the sweep (the wait, the timeout) would."""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
from moto import mock_aws

from bench.units import Meter
from nudge.adapters.dynamo.segments import DynamoSegmentStore
from nudge.adapters.memory import MemoryDecisionPublisher, MemoryUsageStore
from nudge.conditions.tree import Context
from nudge.domain.evaluate import evaluate
from nudge.domain.fold import fold
from nudge.domain.journeys import run_journeys
from nudge.model.journeys import JourneyInstance
from nudge.model.messages import Identify, Message, Track
from nudge.model.state import UserState
from nudge.observability import quiet_logs
from nudge.rulebook.loader import load_rules
from nudge.rulebook.ruleset import RuleSet
from nudge.services.evaluate import RulesPorts, evaluate_user
from nudge.settings import Settings
from nudge.tools.local.aws import create_usage_resources

ROOT = Path(__file__).resolve().parent.parent
START = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
DAY = timedelta(days=1)
JOURNEY = """
id: bench_upgrade
kind: upgrade
entry: {event: {name: premium_feature_attempted}}
steps:
  - id: offer
    send: {channel: email, template: upgrade_offer}
  - id: pause
    wait: 2d
  - id: reminder
    send: {channel: email, template: sso_offer}
  - id: paid
    wait_until: {event: invoice_paid, timeout: 3d, then: done, on_timeout: big}
  - id: big
    branch:
      - when: {account: {band: high}}
        step: cs
      - else: done
  - id: cs
    escalate: {next_step: Call them.}
  - id: done
    update: {trait: plan, value: team}
"""
# The three evaluations: entry (offer -> pause), the wait over (pause -> reminder -> paid), the
# timeout (paid -> big -> done -> end).
ROUNDS = (START, START + 2 * DAY + timedelta(hours=1), START + 6 * DAY)


def journey_rules() -> RuleSet:
    folder = Path(tempfile.mkdtemp(prefix="nudge-bench-journeys-")) / "rules"
    shutil.copytree(ROOT / "rules", folder)
    (folder / "journeys" / "bench_upgrade.yaml").write_text(JOURNEY, encoding="utf-8")
    return load_rules(folder)


def users(rules: RuleSet, count: int) -> list[UserState]:
    made = []
    for i in range(count):
        uid = f"bench-{i}"
        messages: list[Message] = [
            Identify(
                userId=uid, traits={"email": f"{uid}@example.com"}, timestamp=START, messageId=f"{uid}-i"
            ),
            Track(
                userId=uid,
                event="premium_feature_attempted",
                properties={"feature": "sso"},
                timestamp=START,
                messageId=f"{uid}-t",
            ),
        ]
        made.append(fold(None, uid, messages, rules.plan, START))
    return made


@dataclass(frozen=True)
class Throughput:
    users: int
    steps: int
    seconds: float

    @property
    def per_second(self) -> float:
        return self.steps / self.seconds


def throughput(rules: RuleSet, population: list[UserState], repeats: int) -> Throughput:
    """The engine alone: each user through the three rounds; facts computed before the clock runs."""
    prepared = []
    for user in population:
        for now in ROUNDS:
            evaluation = evaluate(rules, user, None, None, now)
            ctx = Context(user, now).scored(
                evaluation.segment or "", evaluation.score, evaluation.band, 0, ""
            )
            prepared.append((user.user_id, ctx, evaluation.facts))
    best = float("inf")
    steps = 0
    for _ in range(repeats):
        instances: dict[str, dict[str, JourneyInstance]] = {}
        steps = 0
        began = time.process_time()
        for uid, ctx, facts in prepared:
            before = instances.get(uid, {})
            run = run_journeys(rules.journeys, before, ctx, facts)
            steps += sum(i.seq for i in run.instances.values()) - sum(i.seq for i in before.values())
            instances[uid] = run.instances
        best = min(best, time.process_time() - began)
    return Throughput(len(population), steps, best)


@dataclass(frozen=True)
class Requests:
    evaluations: int
    advancing: int  # evaluations that moved an instance
    steps: int
    writes: int
    reads: int

    @property
    def writes_per_advancing(self) -> float:
        return self.writes / self.advancing


def dynamo_requests(rules: RuleSet, population: list[UserState]) -> Requests:
    """evaluate_user on DynamoSegmentStore (moto): requests on the segment records per step."""
    with mock_aws(), quiet_logs():
        settings = Settings(usage_table="nudge-bench-journeys", keys_path="/nudge/bench/keys")
        dynamodb = boto3.client("dynamodb", region_name="us-east-1")
        create_usage_resources(dynamodb, boto3.client("ssm", region_name="us-east-1"), ROOT / "template.yaml",
                               settings, ["wk"])  # fmt: skip
        meter = Meter()
        meter.attach(dynamodb)
        segments = DynamoSegmentStore(dynamodb, settings.usage_table)
        ports = RulesPorts(MemoryUsageStore(), segments, MemoryDecisionPublisher())
        evaluations = advancing = steps = writes = reads = 0
        for now in ROUNDS:
            for user in population:
                before = segments.load([user.user_id])[user.user_id].value.journeys
                asked = dict(meter.tally.requests)
                evaluate_user(user, rules, ports, now, previous=None)
                writes += meter.tally.requests["PutItem"] - asked.get("PutItem", 0)
                reads += meter.tally.requests["BatchGetItem"] - asked.get("BatchGetItem", 0)
                after = segments.load([user.user_id])[user.user_id].value.journeys
                moved = sum(i.seq for i in after.values()) - sum(i.seq for i in before.values())
                evaluations += 1
                advancing += moved > 0
                steps += moved
    return Requests(evaluations, advancing, steps, writes, reads)
