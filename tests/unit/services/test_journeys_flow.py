"""Journeys through the use cases with in-memory fakes: ingest -> evaluate_user (instances in the
segment record, timers on next_check_at) -> dispatch -> deliver. A message already queued for a
user who converted is not sent; a redelivered record or two racing evaluations advance a step
once and publish one decision once."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from nudge.adapters.memory import (
    MemoryDecisionPublisher,
    MemoryEmailSender,
    MemoryLedger,
    MemoryRouter,
    MemorySegmentStore,
    MemoryUsageStore,
)
from nudge.model.journeys import JourneyInstance
from nudge.model.messages import Identify, Message, Track
from nudge.model.segments import SegmentRecord
from nudge.model.versioned import Versioned
from nudge.rulebook.ruleset import RuleSet
from nudge.services.deliver import Channels, DeliverPorts, deliver
from nudge.services.dispatch import DispatchPorts, dispatch
from nudge.services.evaluate import RulesPorts, SegmentRechecks, evaluate_user
from nudge.services.ingest import ingest
from tests.journey_fixtures import UPGRADE, rules_with

ROOT = Path(__file__).resolve().parents[3]
NOON = datetime(2025, 3, 4, 17, 0, tzinfo=UTC)  # 12:00 in New York: no quiet hours
DAY = timedelta(days=1)
BURST = """
id: burst
kind: upgrade
entry: {event: {name: premium_feature_attempted}}
blocked: {do: %s}
steps:
  - id: first
    send: {channel: email, template: upgrade_offer}
  - id: second
    send: {channel: email, template: sso_offer}
  - id: pause
    wait: 7d
"""


@pytest.fixture(scope="module")
def rules(tmp_path_factory: pytest.TempPathFactory) -> RuleSet:
    return rules_with(tmp_path_factory.mktemp("flow"), "upgrade_sequence", UPGRADE)


@dataclasses.dataclass
class World:
    rules: RuleSet
    usage: MemoryUsageStore = dataclasses.field(default_factory=MemoryUsageStore)
    segments: MemorySegmentStore = dataclasses.field(default_factory=MemorySegmentStore)
    publisher: MemoryDecisionPublisher = dataclasses.field(default_factory=MemoryDecisionPublisher)
    ledger: MemoryLedger = dataclasses.field(default_factory=MemoryLedger)
    router: MemoryRouter = dataclasses.field(default_factory=MemoryRouter)
    email: MemoryEmailSender = dataclasses.field(default_factory=MemoryEmailSender)
    dispatched: int = 0
    delivered: int = 0

    def send(self, user: str, at: datetime, *events: str, zone: str = "America/New_York") -> None:
        traits = {
            "email": f"{user}@example.com",
            "timezone": zone,
            "push_token": f"token-{user}",
            "consent": {"email": True, "push": True},
        }
        messages: list[Message] = [
            Identify(
                userId=user,
                traits=traits,
                timestamp=at - 30 * DAY,
                messageId=f"{user}-identify",
            )
        ]
        messages += [
            Track(
                userId=user,
                event=e,
                timestamp=at,
                messageId=f"{user}-{e}-{at.isoformat()}",
                properties={"feature": "sso"}
                if e == "premium_feature_attempted"
                else {"revenue": 10}
                if e == "invoice_paid"
                else {},
            )
            for e in events
        ]
        result = ingest(list(enumerate(messages)), self.rules.plan, self.usage, at)
        assert not result.errors, result.errors

    def evaluate(self, user: str, now: datetime, previous: Versioned[SegmentRecord] | None = None) -> None:
        stored = self.usage.users[user]
        ports = RulesPorts(self.usage, self.segments, self.publisher)
        evaluate_user(stored.value, self.rules, ports, now, state_version=stored.version, previous=previous)

    def dispatch_all(self, now: datetime) -> None:
        rechecks = SegmentRechecks(self.segments)
        ports = DispatchPorts(ledger=self.ledger, usage=self.usage, router=self.router, rechecks=rechecks)
        for batch in self.publisher.batches[self.dispatched :]:
            dispatch(batch, self.rules, ports, now)
        self.dispatched = len(self.publisher.batches)

    def deliver_all(self, now: datetime) -> list[str]:
        ports = DeliverPorts(
            ledger=self.ledger,
            usage=self.usage,
            channels=Channels(email=self.email),
            unsubscribe_secrets=(bytes(32),),
            unsubscribe_url="https://api.example/unsubscribe",
        )
        results = [deliver(d, self.rules, ports, now).result for d in self.router.routed[self.delivered :]]
        self.delivered = len(self.router.routed)
        return results

    def templates(self) -> list[str]:
        return [self.ledger.get(d.subject, d.decision_id).decision.template for d in self.router.routed]  # type: ignore[union-attr]

    def journey_decisions(self) -> list[str]:
        return [d.decision_id for d in self.publisher.published if d.journey]

    def instance(self, user: str, journey: str = "upgrade_sequence") -> JourneyInstance:
        return self.segments.records[user].value.journeys[journey]

    def outcomes(self, user: str) -> list[tuple[str, str]]:
        entries = [self.ledger.get(f"USER#{user}", i) for i in dict.fromkeys(self.journey_decisions())]
        return [(e.decision.step, e.outcome) for e in entries if e is not None]


def test_a_journey_message_already_queued_is_not_sent_once_the_user_converted(rules: RuleSet) -> None:
    # Given a user entering the journey, whose offer is judged and queued
    world = World(rules)
    world.send("ann", NOON, "premium_feature_attempted")
    world.evaluate("ann", NOON)
    world.dispatch_all(NOON)
    assert world.templates() == ["upgrade_offer"]
    # When they pay before the email function picks the message up
    world.send("ann", NOON + timedelta(minutes=1), "invoice_paid")
    results = world.deliver_all(NOON + timedelta(minutes=2))
    # Then nothing is sent, and the ledger says why
    assert results == ["suppressed"]
    assert world.email.sent == []
    entry = world.ledger.get("USER#ann", world.router.routed[0].decision_id)
    assert entry is not None
    assert entry.reason == "converted"
    # And the next evaluation ends the instance as converted
    world.evaluate("ann", NOON + timedelta(minutes=3))
    assert world.instance("ann").reason == "converted"


def test_the_wait_rides_on_the_due_index_and_the_next_step_follows(rules: RuleSet) -> None:
    world = World(rules)
    world.send("bob", NOON, "premium_feature_attempted")
    world.evaluate("bob", NOON)
    world.dispatch_all(NOON)
    assert world.deliver_all(NOON) == ["sent"]
    record = world.segments.records["bob"].value
    assert record.next_check_at is not None
    assert record.next_check_at <= NOON + 2 * DAY
    world.evaluate("bob", NOON + 2 * DAY)
    world.dispatch_all(NOON + 2 * DAY)
    assert world.deliver_all(NOON + 2 * DAY) == ["sent"]
    assert world.templates() == ["upgrade_offer", "sso_offer"]


def test_a_redelivered_record_advances_nothing_and_publishes_nothing_again(rules: RuleSet) -> None:
    world = World(rules)
    world.send("cat", NOON, "premium_feature_attempted")
    world.evaluate("cat", NOON)
    version = world.segments.records["cat"].version
    world.evaluate("cat", NOON + timedelta(seconds=1))  # the same stream record again
    assert world.segments.records["cat"].version == version
    assert len(world.journey_decisions()) == 1


def test_two_evaluations_racing_for_one_user_never_fork_an_instance(rules: RuleSet) -> None:
    # Both read the record before either wrote: the loser's write conflicts, it re-reads, finds
    # the instance the winner started, and decides nothing new.
    world = World(rules)
    world.send("dee", NOON, "premium_feature_attempted")
    stale = world.segments.load(["dee"])["dee"]
    world.evaluate("dee", NOON, previous=stale)
    world.evaluate("dee", NOON + timedelta(seconds=2), previous=stale)
    record = world.segments.records["dee"].value
    assert list(record.journeys) == ["upgrade_sequence"]
    ids = world.journey_decisions()
    assert len(set(ids)) == 1  # the loser published at most the same id again
    world.dispatch_all(NOON + timedelta(seconds=3))
    assert world.deliver_all(NOON + timedelta(seconds=3)).count("sent") == 1


# ------------------------------------------------------------------------------ blocked sends


def test_a_send_held_back_by_a_cap_is_retried_the_next_day_and_then_sent(tmp_path: Path) -> None:
    # Given a journey whose two emails come at once (the second exceeds 1 email a day)
    world = World(rules_with(tmp_path, "burst", BURST % "retry"))
    world.send("eve", NOON, "premium_feature_attempted")
    world.evaluate("eve", NOON)
    world.dispatch_all(NOON)
    # Then the second is deferred, not dropped, and the journey goes on to its wait
    assert world.outcomes("eve") == [("first", "send"), ("second", "deferred")]
    assert world.instance("eve", "burst").step == "pause"
    # When the sweep wakes the user a day later, the deferred send goes back to dispatch, and out
    world.evaluate("eve", NOON + DAY)
    world.dispatch_all(NOON + DAY)
    assert world.deliver_all(NOON + DAY) == ["sent", "sent"]
    assert world.templates() == ["upgrade_offer", "sso_offer"]


def test_a_send_held_back_ends_the_journey_when_it_says_exit(tmp_path: Path) -> None:
    world = World(rules_with(tmp_path, "burst", BURST % "exit"))
    world.send("fay", NOON, "premium_feature_attempted")
    world.evaluate("fay", NOON)
    world.dispatch_all(NOON)
    assert world.outcomes("fay") == [("first", "send"), ("second", "suppressed")]
    assert world.instance("fay", "burst").reason == "blocked"


def test_a_send_held_back_is_skipped_when_it_says_skip(tmp_path: Path) -> None:
    world = World(rules_with(tmp_path, "burst", BURST % "skip"))
    world.send("gus", NOON, "premium_feature_attempted")
    world.evaluate("gus", NOON)
    world.dispatch_all(NOON)
    assert world.outcomes("gus") == [("first", "send"), ("second", "suppressed")]
    instance = world.instance("gus", "burst")
    assert instance.live
    assert instance.step == "pause"


TAG = """
id: tagging
kind: upgrade
entry: {event: {name: premium_feature_attempted}}
steps:
  - id: tag
    update: {trait: plan, value: trial}
"""


def test_an_update_step_sets_the_trait_once_through_ingest(tmp_path: Path) -> None:
    world = World(rules_with(tmp_path, "tagging", TAG))
    world.send("hal", NOON, "premium_feature_attempted")
    world.evaluate("hal", NOON)
    state = world.usage.users["hal"]
    assert state.value.traits["plan"].v == "trial"
    # Evaluating the same starting instance again (a race's loser) sets nothing twice
    world.segments.records.pop("hal")
    world.evaluate("hal", NOON + timedelta(seconds=1))
    assert world.usage.users["hal"].version == state.version


NIGHT = """
id: nightly
kind: upgrade
entry: {event: {name: premium_feature_attempted}}
goal: {event: invoice_paid, within: 14d}
steps:
  - id: nudge
    send: {channel: push, template: upgrade_offer}
  - id: pause
    wait: 7d
"""
TOKYO_MORNING = datetime(2025, 3, 4, 23, 0, tzinfo=UTC)  # 08:00 in Tokyo, where NOON is 02:00


def test_a_push_deferred_by_quiet_hours_resumes_at_their_end_and_is_not_repeated(tmp_path: Path) -> None:
    # Given a user in Tokyo entering at 02:00 their time: the push waits for the quiet hours' end
    world = World(rules_with(tmp_path, "nightly", NIGHT))
    world.send("ivy", NOON, "premium_feature_attempted", zone="Asia/Tokyo")
    world.evaluate("ivy", NOON)
    world.dispatch_all(NOON)
    assert world.outcomes("ivy") == [("nudge", "deferred")]
    assert world.segments.records["ivy"].value.next_check_at == TOKYO_MORNING
    # When the sweep wakes them at 08:00, the same decision goes back to dispatch and out, once
    world.evaluate("ivy", TOKYO_MORNING)
    world.dispatch_all(TOKYO_MORNING)
    assert world.outcomes("ivy") == [("nudge", "send")]
    assert [d.channel for d in world.router.routed] == ["push"]
    world.evaluate("ivy", TOKYO_MORNING + DAY)
    world.dispatch_all(TOKYO_MORNING + DAY)
    assert len(world.router.routed) == 1
    assert world.instance("ivy", "nightly").step == "pause"


def test_a_deferred_push_is_cancelled_when_the_user_converts_before_it_goes(tmp_path: Path) -> None:
    world = World(rules_with(tmp_path, "nightly", NIGHT))
    world.send("jay", NOON, "premium_feature_attempted", zone="Asia/Tokyo")
    world.evaluate("jay", NOON)
    world.dispatch_all(NOON)
    # The user pays during the night: converted; the deferred push is cancelled, not sent
    world.send("jay", NOON + timedelta(hours=2), "invoice_paid", zone="Asia/Tokyo")
    world.evaluate("jay", NOON + timedelta(hours=2))
    world.evaluate("jay", TOKYO_MORNING)
    world.dispatch_all(TOKYO_MORNING)
    assert world.instance("jay", "nightly").reason == "converted"
    assert world.router.routed == []
    assert world.outcomes("jay") == [("nudge", "cancelled")]


LAST_STEP = """
id: last_push
kind: upgrade
entry: {event: {name: premium_feature_attempted}}
steps:
  - id: nudge
    send: {channel: push, template: upgrade_offer}
"""


def test_a_deferred_push_on_the_last_step_still_goes_once_the_journey_has_completed(tmp_path: Path) -> None:
    # Given a journey whose only step is a push, entered at 02:00 in Tokyo: the instance walks past
    # the step (it completes) while the push waits for the quiet hours' end
    world = World(rules_with(tmp_path, "last_push", LAST_STEP))
    world.send("kim", NOON, "premium_feature_attempted", zone="Asia/Tokyo")
    world.evaluate("kim", NOON)
    world.dispatch_all(NOON)
    assert world.outcomes("kim") == [("nudge", "deferred")]
    assert world.instance("kim", "last_push").reason == "completed"
    # When the sweep wakes them at 08:00, the deferred push resumes and goes out, once
    world.evaluate("kim", TOKYO_MORNING)
    world.dispatch_all(TOKYO_MORNING)
    assert world.outcomes("kim") == [("nudge", "send")]
    assert [d.channel for d in world.router.routed] == ["push"]
    world.evaluate("kim", TOKYO_MORNING + DAY)
    world.dispatch_all(TOKYO_MORNING + DAY)
    assert len(world.router.routed) == 1


def test_a_queued_decision_of_a_trigger_a_deploy_removed_is_suppressed_not_a_crash(rules: RuleSet) -> None:
    # Given a decision on the queue of a trigger the running rules no longer have (a deploy removed
    # it while the message waited): a one-shot decision of a rule named nowhere
    world = World(rules)
    world.send("lee", NOON, "premium_feature_attempted")
    world.evaluate("lee", NOON)
    batch = world.publisher.batches[-1]
    retired = [
        d.model_copy(update={"rule": "retired_rule", "journey": "", "step": "", "instance": "", "seq": None})
        for d in batch.decisions
    ]
    world.publisher.batches[-1] = batch.model_copy(update={"decisions": retired})
    # When dispatch reads it
    world.dispatch_all(NOON)
    # Then it is recorded as suppressed, saying why, and nothing is routed (no KeyError, no retry)
    for decision in retired:
        entry = world.ledger.get("USER#lee", decision.decision_id)
        assert entry is not None
        assert (entry.outcome, entry.reason) == ("suppressed", "rule_removed")
    assert world.router.routed == []
