"""Two evaluations racing for one user from one version of the record, each taking another path of
one journey instance (the sweep read the state just before an event landed and saw the
wait_until's timeout; the stream saw the event): both publish, one save wins, and only the saved
path's message is ever sent. In-memory fakes, through evaluate_user and dispatch."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from nudge.model.errors import StoreUnavailable
from nudge.model.queue import DecisionBatch
from nudge.rulebook.ruleset import RuleSet
from nudge.services.dispatch import DispatchPorts, JourneyNotSaved, dispatch
from nudge.services.evaluate import RulesPorts, SegmentRechecks, evaluate_user
from tests.journey_fixtures import INVITE, rules_with
from tests.unit.services.test_journeys_flow import DAY, NOON, World

DEADLINE = NOON + 2 * DAY


@pytest.fixture(scope="module")
def rules(tmp_path_factory: pytest.TempPathFactory) -> RuleSet:
    return rules_with(tmp_path_factory.mktemp("race"), "invite_nudge", INVITE)


def divergent(world: World, user: str, *, stream_first: bool, journey: str = "invite_nudge") -> None:
    """The user waits at `ask`; the sweep (after the deadline, on the state read before the invite)
    and the stream (on the state with it) both evaluate from one version of the record."""
    world.send(user, NOON, "premium_feature_attempted")
    world.evaluate(user, NOON)
    world.dispatch_all(NOON)
    assert world.instance(user, journey).step == "ask"
    record = world.segments.load([user])[user]
    before = world.usage.users[user]
    world.send(user, DEADLINE - timedelta(minutes=1), "teammate_invited")
    after = world.usage.users[user]
    ports = RulesPorts(world.usage, world.segments, world.publisher)

    def sweep() -> None:
        evaluate_user(before.value, world.rules, ports, DEADLINE + timedelta(minutes=1), previous=record)

    def stream() -> None:
        evaluate_user(
            after.value,
            world.rules,
            ports,
            DEADLINE - timedelta(seconds=30),
            state_version=after.version,
            previous=record,
        )

    # The first to save wins; the other's save conflicts (after it published), it re-reads and
    # finds the instance already past the wait.
    for evaluation in (stream, sweep) if stream_first else (sweep, stream):
        evaluation()


@pytest.mark.parametrize(
    ("stream_first", "sent_step", "superseded_step"),
    [(False, "reminder", "thanks"), (True, "thanks", "reminder")],
    ids=["the sweep saves first", "the stream saves first"],
)
def test_two_evaluations_taking_different_paths_send_only_the_saved_one(
    rules: RuleSet, stream_first: bool, sent_step: str, superseded_step: str
) -> None:
    # Given two evaluations from one record version, one seeing the invite, one the timeout
    world = World(rules)
    divergent(world, "ann", stream_first=stream_first)
    published = {d.step for d in world.publisher.published if d.journey}
    assert published == {"thanks", "reminder"}  # both published before one save won

    # When dispatch judges everything published
    world.dispatch_all(DEADLINE + timedelta(minutes=2))
    results = world.deliver_all(DEADLINE + timedelta(minutes=2))

    # Then only the saved path's message is sent; the other is suppressed as superseded, on record
    assert results == ["sent"]
    saved = world.instance("ann", "invite_nudge")
    sent = world.ledger.get("USER#ann", world.router.routed[0].decision_id)
    assert sent is not None
    assert sent.decision.step == sent_step
    assert sent.decision.decision_id in {d.decision_id for d in saved.decided or ()}
    assert (superseded_step, "suppressed") in world.outcomes("ann")
    [loser] = [d for d in world.publisher.published if d.step == superseded_step]
    entry = world.ledger.get("USER#ann", loser.decision_id)
    assert entry is not None
    assert (entry.outcome, entry.reason) == ("suppressed", "superseded")


def test_a_decision_whose_save_has_not_landed_fails_its_batch_and_goes_out_once_it_has(
    rules: RuleSet,
) -> None:
    # Given an evaluation whose decision reaches dispatch before its record is saved
    world = World(rules)
    world.send("bob", NOON, "premium_feature_attempted")
    world.evaluate("bob", NOON)
    world.send("bob", NOON + DAY, "teammate_invited")
    ports = DispatchPorts(world.ledger, world.usage, world.router, SegmentRechecks(world.segments))
    early: list[DecisionBatch] = []

    class DispatchAtPublish:
        def publish(self, batch: DecisionBatch) -> None:
            world.publisher.publish(batch)
            try:
                dispatch(batch, world.rules, ports, NOON + DAY, attempts=2)
            except JourneyNotSaved:
                early.append(batch)

    stored = world.usage.users["bob"]
    evaluate_user(
        stored.value,
        world.rules,
        RulesPorts(world.usage, world.segments, DispatchAtPublish()),
        NOON + DAY,
        state_version=stored.version,
    )
    # Then that dispatch judged nothing (its queue delivers the batch again), and wrote nothing
    assert len(early) == 1
    assert world.router.routed == []
    assert world.outcomes("bob") == []
    # When the queue delivers it again, after the save: it is sent
    result = dispatch(early[0], world.rules, ports, NOON + DAY + timedelta(seconds=30))
    assert [v.outcome for v in result.verdicts] == ["send"]
    assert world.templates() == ["upgrade_offer"]


TAGGING = """
id: invite_tagging
kind: upgrade
entry: {event: {name: premium_feature_attempted}}
steps:
  - id: ask
    wait_until: {event: teammate_invited, timeout: 2d, then: thanks, on_timeout: tag_lapsed}
  - id: thanks
    send: {channel: email, template: upgrade_offer}
    next: end
  - id: tag_lapsed
    update: {trait: plan, value: lapsed}
"""


@pytest.mark.parametrize(
    "stream_first", [True, False], ids=["the stream saves first", "the sweep saves first"]
)
def test_the_losing_path_of_a_race_sets_no_trait(
    tmp_path_factory: pytest.TempPathFactory, stream_first: bool
) -> None:
    # Given a race where the sweep takes the timeout path (an update step) and the stream the event path
    world = World(rules_with(tmp_path_factory.mktemp("tagging"), "invite_tagging", TAGGING))
    divergent(world, "cy", stream_first=stream_first, journey="invite_tagging")

    # Then the trait is set only when the sweep's path is the saved one
    saved = world.segments.records["cy"].value.journeys["invite_tagging"]
    plan = world.usage.users["cy"].value.traits.get("plan")
    if stream_first:
        assert "tag_lapsed" not in saved.path
        assert plan is None or plan.v != "lapsed"
    else:
        assert "tag_lapsed" in saved.path
        assert plan is not None
        assert plan.v == "lapsed"


def test_a_trait_whose_set_failed_after_the_save_is_set_by_the_retry(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a user waiting at `ask` whose wait times out into an update step
    world = World(rules_with(tmp_path_factory.mktemp("tagging"), "invite_tagging", TAGGING))
    world.send("di", NOON, "premium_feature_attempted")
    world.evaluate("di", NOON)
    later = DEADLINE + timedelta(minutes=1)

    # When the evaluation's save wins but setting the trait finds the store unavailable
    save_user = world.usage.save_user
    failures = iter([StoreUnavailable("usage table throttled")])

    def flaky_save_user(*args: Any, **kwargs: Any) -> None:
        failure = next(failures, None)
        if failure is not None:
            raise failure
        save_user(*args, **kwargs)

    monkeypatch.setattr(world.usage, "save_user", flaky_save_user)
    with pytest.raises(StoreUnavailable):
        world.evaluate("di", later)
    assert "tag_lapsed" in world.segments.records["di"].value.journeys["invite_tagging"].path
    assert world.usage.users["di"].value.traits.get("plan") is None
    pending = world.segments.records["di"].value

    # Then the stream's retry of that evaluation sets it, and clears what was pending
    world.evaluate("di", later + timedelta(seconds=5))
    plan = world.usage.users["di"].value.traits.get("plan")
    assert plan is not None
    assert plan.v == "lapsed"
    assert world.segments.records["di"].value.pending_traits == {}
    # (meanwhile the record kept it pending, and due so that the sweep would finish it too)
    assert list(pending.pending_traits.values()) == [("plan", "lapsed")]
    assert pending.next_check_at == later.replace(microsecond=0)


def test_a_trait_set_after_the_save_is_not_left_pending(tmp_path_factory: pytest.TempPathFactory) -> None:
    # Given a user whose wait times out into an update step, evaluated without a failure
    world = World(rules_with(tmp_path_factory.mktemp("tagging"), "invite_tagging", TAGGING))
    world.send("ed", NOON, "premium_feature_attempted")
    world.evaluate("ed", NOON)
    world.evaluate("ed", DEADLINE + timedelta(minutes=1))

    # Then the trait is set, nothing stays pending, and the record is not due now for it
    record = world.segments.records["ed"].value
    plan = world.usage.users["ed"].value.traits.get("plan")
    assert plan is not None
    assert plan.v == "lapsed"
    assert record.pending_traits == {}
    assert record.next_check_at is None or record.next_check_at > DEADLINE + timedelta(minutes=1)
