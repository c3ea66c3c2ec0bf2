"""The evaluate use case and the sweep with in-memory fakes: what is recorded, published and written."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from nudge.adapters.dynamo import codec
from nudge.adapters.dynamo.stream import (
    AccountChange,
    UndecodableRecord,
    account_from_stream,
    user_from_stream,
)
from nudge.adapters.memory import MemoryDecisionPublisher, MemorySegmentStore, MemoryUsageStore
from nudge.adapters.sqs import SqsDecisionPublisher
from nudge.domain.evaluate import evaluate
from nudge.model.errors import StateConflict
from nudge.model.messages import Group, Identify, Message, Track
from nudge.model.outcomes import SweepResult, UserOutcome
from nudge.model.queue import DecisionBatch
from nudge.model.segments import SegmentRecord, bucket_start, due_time
from nudge.model.state import Stamped, UserState
from nudge.ports import PublishFailed
from nudge.rulebook.loader import load_rules
from nudge.rulebook.ruleset import RuleSet
from nudge.services.account_facts import AccountFactsCache
from nudge.services.evaluate import (
    AccountEvaluationFailed,
    EvaluationContention,
    RulesPorts,
    SegmentRechecks,
    evaluate_account,
    evaluate_user,
)
from nudge.services.ingest import ingest
from nudge.services.sweep import SweepOptions, sweep
from tests.shipped import ONE_SHOT_DIR

RULES: RuleSet = load_rules(ONE_SHOT_DIR)
NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
NEVER = datetime.max.replace(tzinfo=UTC)


class RecordingMetrics:
    def __init__(self) -> None:
        self.entered: list[str] = []
        self.exited: list[str] = []
        self.sweeps: list[SweepResult] = []

    def outcome(self, outcome: UserOutcome) -> None:
        if outcome.entered:
            self.entered.append(outcome.entered)
        if outcome.exited:
            self.exited.append(outcome.exited)

    def swept(self, result: SweepResult) -> None:
        self.sweeps.append(result)


class World:
    """Usage store, segment store, publisher and metrics: the ports, all fakes."""

    def __init__(self) -> None:
        self.usage = MemoryUsageStore()
        self.segments = MemorySegmentStore()
        self.publisher = MemoryDecisionPublisher()
        self.metrics = RecordingMetrics()
        self.ports = RulesPorts(self.usage, self.segments, self.publisher, self.metrics)

    def track(self, user: str, *events: tuple[str, datetime], account: str | None = None) -> None:
        messages: list[Message] = [
            Track(userId=user, event=name, timestamp=at, messageId=f"{user}-{name}-{at.isoformat()}")
            for name, at in events
        ]
        first = min(at for _, at in events)
        messages.append(
            Identify(
                userId=user,
                traits={"email": f"{user}@example.com", "plan": "free"},
                timestamp=first,
                messageId=f"{user}-identify",
            )
        )
        if account:
            messages.append(
                Group(
                    userId=user, groupId=account, traits={"mrr": 5000}, timestamp=first, messageId=f"{user}-g"
                )
            )
        latest = max(at for _, at in events)
        result = ingest(list(enumerate(messages)), RULES.plan, self.usage, latest + timedelta(minutes=1))
        assert not result.errors, result.errors

    def user(self, user_id: str) -> UserState:
        return self.usage.users[user_id].value

    def version(self, user_id: str) -> int:
        return self.usage.users[user_id].version

    def evaluate(self, user_id: str, now: datetime, **kwargs: Any) -> UserOutcome:
        return evaluate_user(
            self.user(user_id), RULES, self.ports, now, state_version=self.version(user_id), **kwargs
        )

    def record(self, user_id: str) -> SegmentRecord:
        return self.segments.records[user_id].value


def signed_up_without_setup(world: World, user: str, at: datetime) -> None:
    world.track(user, ("signed_up", at), ("login", at + timedelta(minutes=5)))


def activated(world: World, user: str, at: datetime, account: str | None = None) -> None:
    steps = ["signed_up", "setup_completed", "project_created", "teammate_invited"]
    world.track(user, *((step, at + i * HOUR) for i, step in enumerate(steps)), account=account)


# ---------------------------------------------------------------------------- evaluate_user


def test_a_first_evaluation_records_the_entry_and_publishes_the_decision() -> None:
    # Given a user who signed up two days ago and never finished setup
    world = World()
    signed_up_without_setup(world, "u1", NOW - 2 * DAY)
    # When they are evaluated
    outcome = world.evaluate("u1", NOW)
    # Then they enter not_activated, the finish_setup email is decided and published, and a
    # re-check is scheduled
    assert outcome.written
    assert (outcome.entered, outcome.exited) == ("not_activated", None)
    assert [d.rule for d in world.publisher.published] == ["finish_setup"]
    assert world.metrics.entered == ["not_activated"]
    record = world.record("u1")
    assert record.segments.segment == "not_activated"
    assert record.decided == {"finish_setup:email": world.publisher.published[0].decision_id}
    assert record.state_version == world.version("u1")
    assert record.next_check_at is not None
    assert record.next_check_at > NOW


def test_an_unchanged_evaluation_writes_nothing_and_publishes_nothing() -> None:
    # Given a user evaluated once
    world = World()
    signed_up_without_setup(world, "u1", NOW - 2 * DAY)
    world.evaluate("u1", NOW)
    writes, published = world.segments.writes, len(world.publisher.published)
    # When the same state is evaluated again a little later (another usage change, same picture)
    outcome = world.evaluate("u1", NOW + timedelta(minutes=10))
    # Then nothing is written, nothing published, no transition counted
    assert not outcome.written
    assert outcome.published == ()
    assert world.segments.writes == writes
    assert len(world.publisher.published) == published
    assert world.metrics.entered == ["not_activated"]


def test_a_transition_is_recorded_once_however_often_the_user_is_evaluated() -> None:
    world = World()
    activated(world, "u1", NOW - 60 * DAY)
    world.evaluate("u1", NOW - 59 * DAY)
    for hours in range(5):
        world.evaluate("u1", NOW + hours * HOUR)
    assert world.metrics.entered == ["newly_activated", "dormant"]
    assert world.metrics.exited == ["newly_activated"]
    history = world.record("u1").segments.history
    assert [(t.from_, t.to) for t in history] == [(None, "newly_activated"), ("newly_activated", "dormant")]


def test_a_redelivered_record_yields_the_same_decision_ids() -> None:
    # Given two evaluations of the same state, as when a stream record is delivered twice to
    # evaluators that have not recorded anything yet (the first crashed before its save)
    first, second = World(), World()
    for world in (first, second):
        signed_up_without_setup(world, "u1", NOW - 2 * DAY)
    first.evaluate("u1", NOW)
    second.evaluate("u1", NOW + timedelta(minutes=3))
    # Then both decide the same ids: the consumer sends once
    assert [d.decision_id for d in first.publisher.published] == [
        d.decision_id for d in second.publisher.published
    ]


def test_a_redelivered_record_after_a_save_publishes_nothing_again() -> None:
    world = World()
    signed_up_without_setup(world, "u1", NOW - 2 * DAY)
    world.evaluate("u1", NOW)
    again = world.evaluate("u1", NOW)
    assert again.published == ()
    assert len(world.publisher.published) == 1


def test_a_save_that_fails_after_publishing_republishes_the_same_ids_on_retry() -> None:
    class FailingOnce(MemorySegmentStore):
        failed = False

        def save(self, user_id: str, record: SegmentRecord, version: int, now: datetime) -> None:
            if not self.failed:
                self.failed = True
                raise RuntimeError("DynamoDB outage")
            super().save(user_id, record, version, now)

    world = World()
    world.segments = FailingOnce()
    world.ports = RulesPorts(world.usage, world.segments, world.publisher, world.metrics)
    signed_up_without_setup(world, "u1", NOW - 2 * DAY)
    with pytest.raises(RuntimeError):
        world.evaluate("u1", NOW)
    world.evaluate("u1", NOW + timedelta(seconds=30))
    ids = [d.decision_id for d in world.publisher.published]
    assert len(ids) == 2
    assert len(set(ids)) == 1
    assert world.metrics.entered == ["not_activated"]


def test_nothing_is_recorded_when_the_decision_queue_is_down() -> None:
    world = World()
    signed_up_without_setup(world, "u1", NOW - 2 * DAY)
    world.publisher.fail = True
    with pytest.raises(PublishFailed):
        world.evaluate("u1", NOW)
    assert "u1" not in world.segments.records
    world.publisher.fail = False
    assert world.evaluate("u1", NOW).written


def test_a_conflicting_writer_wins_and_the_transition_is_still_recorded_once() -> None:
    # Given a sweep and a stream evaluator racing on one user: the other one saves first
    world = World()
    signed_up_without_setup(world, "u1", NOW - 2 * DAY)

    class RacedOnce(MemorySegmentStore):
        raced = False

        def save(self, user_id: str, record: SegmentRecord, version: int, now: datetime) -> None:
            if not self.raced:
                self.raced = True
                rival = evaluate(RULES, world.user(user_id), None, None, now)
                super().save(
                    user_id,
                    SegmentRecord(
                        segments=rival.segments,
                        decided={f"{d.rule}:{d.action}": d.decision_id for d in rival.decisions},
                        next_check_at=rival.next_check_at,
                    ),
                    0,
                    now,
                )
            super().save(user_id, record, version, now)

    world.segments = RacedOnce()
    world.ports = RulesPorts(world.usage, world.segments, world.publisher, world.metrics)
    # When our evaluation loses the race
    outcome = world.evaluate("u1", NOW)
    # Then it re-reads and re-evaluates: no second transition, no entry counted by us
    assert outcome.conflicts == 1
    assert outcome.entered is None
    assert world.metrics.entered == []
    assert len(world.record("u1").segments.history) == 1


def test_endless_contention_gives_up_with_a_domain_error() -> None:
    class AlwaysConflicts(MemorySegmentStore):
        def save(self, user_id: str, record: SegmentRecord, version: int, now: datetime) -> None:
            raise StateConflict(user_id)

    world = World()
    world.segments = AlwaysConflicts()
    world.ports = RulesPorts(world.usage, world.segments, world.publisher, world.metrics)
    signed_up_without_setup(world, "u1", NOW - 2 * DAY)
    with pytest.raises(EvaluationContention):
        world.evaluate("u1", NOW, attempts=3)


def test_a_stream_record_older_than_the_state_already_evaluated_is_skipped() -> None:
    # Given a user evaluated (by the sweep) at usage-state version 2
    world = World()
    signed_up_without_setup(world, "u1", NOW - 2 * DAY)
    old_state, old_version = world.user("u1"), world.version("u1")
    world.track("u1", ("setup_completed", NOW - HOUR))
    world.evaluate("u1", NOW)
    before = world.record("u1")
    # When a lagging stream record of version 1 arrives
    outcome = evaluate_user(old_state, RULES, world.ports, NOW, state_version=old_version)
    # Then it changes nothing
    assert not outcome.evaluated
    assert world.record("u1") == before


def test_account_facts_are_read_once_per_batch() -> None:
    class CountingUsage(MemoryUsageStore):
        account_reads = 0

        def load_rollup(self, account_id: str) -> Any:
            self.account_reads += 1
            return super().load_rollup(account_id)

    world = World()
    world.usage = CountingUsage()
    world.ports = RulesPorts(world.usage, world.segments, world.publisher, world.metrics)
    for user in ("a", "b", "c"):
        activated(world, user, NOW - 3 * DAY, account="acme")
    cache = AccountFactsCache(world.usage)
    for user in ("a", "b", "c"):
        world.evaluate(user, NOW, accounts=cache)
    assert world.usage.account_reads == 1
    # The shipped rules read account traits only, so the sweep and stream skip the rollup.
    assert not RULES.reads_account_usage
    lean = AccountFactsCache(world.usage, with_rollup=RULES.reads_account_usage)
    assert lean.get("acme") is not None
    assert world.usage.account_reads == 1


def test_the_next_check_includes_the_end_of_a_fired_rules_cooldown_window() -> None:
    # A dormant user keeps matching rescue_dormant: it decides again when its window ends.
    world = World()
    activated(world, "u1", NOW - 90 * DAY)
    evaluation = evaluate(RULES, world.user("u1"), None, None, NOW)
    assert "rescue_dormant" in evaluation.fired
    window = 30 * 86400
    end = datetime.fromtimestamp((int(NOW.timestamp()) // window + 1) * window, tz=UTC)
    assert evaluation.next_check_at is not None
    assert evaluation.next_check_at <= end


# ---------------------------------------------------------------------------- sweep


def started_sweeping(world: World, at: datetime) -> None:
    """Sweeps run all along in production: the first one sets the watermark."""
    sweep(RULES, world.ports, at)


def test_the_sweep_evaluates_exactly_the_users_due_and_reads_only_them() -> None:
    # Given 50 users activated 31 days ago and evaluated yesterday: 5 have not been back since
    # and turn dormant today; the others came back yesterday
    world = World()
    quiet = [f"quiet{i}" for i in range(5)]
    users = quiet + [f"busy{i}" for i in range(45)]
    for user in users:
        activated(world, user, NOW - 31 * DAY)
        if user.startswith("busy"):
            world.track(user, ("project_created", NOW - DAY))
    for user in users:
        world.evaluate(user, NOW - DAY)
    started_sweeping(world, NOW - DAY)
    later = NOW + 2 * DAY
    due = {u for u, r in world.segments.records.items() if (r.value.next_check_at or NEVER) <= later}
    assert set(quiet) <= due < set(users)
    world.segments.reads = 0
    # When the sweep runs two days later
    result = sweep(RULES, world.ports, later)
    # Then it evaluated the due users only, and read only them
    assert result.failed == 0
    assert {o.user_id for o in result.outcomes} == due
    assert world.segments.reads == 2 * len(due)  # from the index, then their records
    for user in quiet:
        assert world.record(user).segments.segment == "dormant"
        assert (world.record(user).next_check_at or NEVER) > later
    assert {d.user for d in world.publisher.published if d.rule == "rescue_dormant"} == set(quiet)


def test_the_sweep_moves_the_watermark_and_the_next_run_starts_there() -> None:
    world = World()
    activated(world, "u1", NOW - 40 * DAY)
    world.evaluate("u1", NOW - 35 * DAY)
    started_sweeping(world, NOW - 35 * DAY)
    first = sweep(RULES, world.ports, NOW)
    assert first.evaluated == 1
    assert world.segments.watermark is not None
    assert world.segments.watermark.value == bucket_start(NOW - timedelta(minutes=5))
    second = sweep(RULES, world.ports, NOW + timedelta(minutes=15))
    assert second.started_from == first.watermark
    assert second.due == 0


def test_a_user_whose_evaluation_fails_is_deferred_and_does_not_hold_the_watermark() -> None:
    world = World()
    for user in ("u1", "u2"):
        activated(world, user, NOW - 40 * DAY)
        world.evaluate(user, NOW - 35 * DAY)
    started_sweeping(world, NOW - 35 * DAY)

    class Poisoned(MemoryDecisionPublisher):
        def publish(self, batch: DecisionBatch) -> None:
            if batch.user == "u1":
                raise PublishFailed("poison")
            super().publish(batch)

    world.ports = RulesPorts(world.usage, world.segments, Poisoned(), world.metrics)
    result = sweep(RULES, world.ports, NOW, options=SweepOptions(retry_after=2 * HOUR))
    assert (result.evaluated, result.failed) == (1, 1)
    assert result.complete
    assert world.record("u1").next_check_at == due_time(NOW + 2 * HOUR)
    assert result.watermark == bucket_start(NOW - timedelta(minutes=5))


def test_a_sweep_out_of_time_stops_and_the_next_run_resumes() -> None:
    world = World()
    for i in range(3):
        activated(world, f"u{i}", NOW - 40 * DAY)
        world.evaluate(f"u{i}", NOW - 35 * DAY)
    started_sweeping(world, NOW - 35 * DAY)
    seconds_left = iter([60.0, 0.0])
    stopped = sweep(
        RULES, world.ports, NOW, options=SweepOptions(page_size=1), time_left=lambda: next(seconds_left)
    )
    assert not stopped.complete
    assert stopped.evaluated == 1
    rest = sweep(RULES, world.ports, NOW + timedelta(minutes=15))
    assert rest.evaluated == 2
    assert rest.complete


# ---------------------------------------------------------------------------- stream images


def test_a_stream_image_decodes_with_binary_as_lambda_delivers_it_or_as_bytes() -> None:
    state = UserState(user_id="u1")
    blob = codec.encode(state)
    keys = {"pk": "USER#u1", "sk": "STATE"}
    as_lambda = user_from_stream(keys, {"v": 3, "state": base64.b64encode(blob).decode()})
    as_boto = user_from_stream(keys, {"v": 3, "state": blob})
    assert as_lambda is not None
    assert as_boto is not None
    assert as_lambda.value == as_boto.value == state
    assert as_lambda.version == 3


def test_items_that_are_not_a_users_state_are_ignored() -> None:
    blob = codec.encode(UserState(user_id="u1"))
    assert user_from_stream({"pk": "USER#u1", "sk": "SEGMENTS"}, {"v": 1, "seg": blob}) is None
    assert user_from_stream({"pk": "ACCOUNT#a", "sk": "STATE"}, {"v": 1, "state": blob}) is None
    assert user_from_stream({"pk": "USER#u1", "sk": "STATE"}, {}) is None


def test_an_undecodable_state_is_a_poison_record_whose_error_quotes_no_values() -> None:
    bad = codec.encode(Identify(userId="u1", traits={"email": "secret@example.com"}))
    with pytest.raises(UndecodableRecord) as caught:
        user_from_stream({"pk": "USER#u1", "sk": "STATE"}, {"v": 1, "state": bad})
    assert "secret@example.com" not in str(caught.value)
    assert caught.value.__cause__ is None
    with pytest.raises(UndecodableRecord):
        user_from_stream({"pk": "USER#u1", "sk": "STATE"}, {"v": 1, "state": "not base64!"})


# ---------------------------------------------------------------------------- SQS publisher


class FlakySqs:
    """send_message that is throttled the first time, as SQS may be."""

    def __init__(self, code: str = "ThrottlingException") -> None:
        self.calls: list[dict[str, Any]] = []
        self.code = code

    def send_message(self, **kwargs: Any) -> dict[str, Any]:
        from botocore.exceptions import ClientError

        self.calls.append(kwargs)
        if len(self.calls) == 1:
            raise ClientError({"Error": {"Code": self.code, "Message": "slow down"}}, "SendMessage")
        return {"MessageId": "m1"}


def one_batch(world: World) -> DecisionBatch:
    signed_up_without_setup(world, "u1", NOW - 2 * DAY)
    decisions = evaluate(RULES, world.user("u1"), None, None, NOW).decisions
    return DecisionBatch(user="u1", decided_at=NOW, decisions=decisions)


def test_the_sqs_publisher_sends_one_message_per_evaluation_and_retries_throttling() -> None:
    batch = one_batch(World())
    client = FlakySqs()
    SqsDecisionPublisher(client, "https://sqs/q").publish(batch)  # type: ignore[arg-type]
    assert len(client.calls) == 2
    sent = client.calls[1]
    assert DecisionBatch.model_validate_json(sent["MessageBody"]) == batch
    assert sent["MessageAttributes"]["decision_ids"]["StringValue"] == batch.decisions[0].decision_id


def test_the_sqs_publisher_does_not_retry_a_refusal() -> None:
    client = FlakySqs("InvalidMessageContents")
    with pytest.raises(PublishFailed, match="InvalidMessageContents"):
        SqsDecisionPublisher(client, "https://sqs/q").publish(one_batch(World()))  # type: ignore[arg-type]
    assert len(client.calls) == 1


# ---------------------------------------------------------------------------- account changes


def declining_in(world: World, user: str, account: str, mrr: int) -> None:
    """Activated 60 days ago, daily projects for 40 days, then a report a week: declining."""
    start = NOW - 60 * DAY
    events = [("signed_up", start), ("setup_completed", start), ("teammate_invited", start + DAY)]
    events += [("project_created", start + (1 + i) * DAY) for i in range(40)]
    events += [("report_exported", NOW - 12 * DAY), ("report_exported", NOW - 5 * DAY)]
    messages: list[Message] = [
        Track(userId=user, event=name, timestamp=at, messageId=f"{user}-{name}-{at.isoformat()}")
        for name, at in events
    ]
    messages.append(
        Group(userId=user, groupId=account, traits={"mrr": mrr}, timestamp=start, messageId=f"{user}-g")
    )
    result = ingest(list(enumerate(messages)), RULES.plan, world.usage, NOW)
    assert not result.errors, result.errors


def set_traits(world: World, account: str, **traits: object) -> tuple[dict[str, Any], dict[str, Any]]:
    """Write new trait values for the account as a group call would; the stream record's images."""
    old = world.usage.accounts[account]
    stamped = {k: Stamped(v=v, at=NOW, mid=f"crm-{k}") for k, v in traits.items()}
    new = old.value.model_copy(update={"traits": {**old.value.traits, **stamped}})
    world.usage.save_account(new, old.version, NOW)
    return (
        {"v": old.version + 1, "state": base64.b64encode(codec.encode(new)).decode()},
        {"v": old.version, "state": codec.encode(old.value)},
    )


ACME_TRAITS = {"pk": "ACCOUNT#acme", "sk": "TRAITS"}


def test_an_account_turning_high_value_escalates_its_declining_user() -> None:
    # Given a declining user of a small account, evaluated: rescued, but not escalated
    world = World()
    declining_in(world, "dee", "acme", mrr=100)
    declining_in(world, "ole", "other-co", mrr=100)
    first = world.evaluate("dee", NOW)
    assert first.segment == "declining"
    assert {d.rule for d in first.published} == {"rescue_declining"}
    cache = AccountFactsCache(world.usage, RULES.reads_account_usage)
    assert cache.get("acme") is not None  # the batch read the old traits already
    # When the account's mrr rises to 5000 (band high) and its TRAITS record is delivered
    new_image, old_image = set_traits(world, "acme", mrr=5000)
    change = account_from_stream(ACME_TRAITS, new_image, old_image)
    assert change == AccountChange("acme", frozenset({"mrr"}))
    outcome = evaluate_account(change.account_id, RULES, world.ports, NOW + HOUR, accounts=cache)
    # Then the account's users (only them) are evaluated with the new traits, and the declining
    # user is escalated to customer success (at_risk_account, and rescue_declining's escalation)
    assert (outcome.users, outcome.truncated, outcome.failed) == (1, False, ())
    assert [(o.user_id, sorted((d.rule, d.action) for d in o.published)) for o in outcome.outcomes] == [
        ("dee", [("at_risk_account", "escalate"), ("rescue_declining", "escalate")])
    ]
    assert [d.user for d in world.publisher.published if d.rule == "at_risk_account"] == ["dee"]
    assert "ole" not in world.segments.records


def test_unchanged_trait_values_evaluate_nobody() -> None:
    world = World()
    declining_in(world, "dee", "acme", mrr=100)
    # A newer stamp of the same value (a group call repeating the CRM's numbers)
    new_image, old_image = set_traits(world, "acme", mrr=100)
    assert account_from_stream(ACME_TRAITS, new_image, old_image) is None
    # A new account (INSERT, no old image) with traits is a change; other account items are not
    assert account_from_stream(ACME_TRAITS, new_image, None) == AccountChange("acme", frozenset({"mrr"}))
    assert account_from_stream({"pk": "ACCOUNT#acme", "sk": "WEEK#2026-W48#00"}, new_image, None) is None
    assert account_from_stream({"pk": "ACCOUNT#acme", "sk": "ROLLUP#00"}, new_image, None) is None
    assert account_from_stream({"pk": "USER#dee", "sk": "STATE"}, new_image, None) is None
    with pytest.raises(UndecodableRecord, match="ACCOUNT#acme: traits cannot be decoded"):
        account_from_stream(ACME_TRAITS, {"v": 2, "state": b"not zlib"}, old_image)


def test_the_fan_out_is_bounded_and_a_failing_user_fails_the_record_after_the_others(
    caplog: pytest.LogCaptureFixture,
) -> None:
    world = World()
    for user in ("u1", "u2", "u3"):
        declining_in(world, user, "acme", mrr=5000)
    assert world.usage.users_of_account("acme") == ["u1", "u2", "u3"]
    # More users than the limit: the first ones are evaluated, the cut is logged with the account
    outcome = evaluate_account("acme", RULES, world.ports, NOW, limit=2)
    assert (outcome.users, outcome.truncated) == (2, True)
    assert [o.user_id for o in outcome.outcomes] == ["u1", "u2"]
    warning = next(r for r in caplog.records if "too many users" in r.getMessage())
    assert warning.__dict__["account_id"] == "acme"
    # A user whose evaluation fails does not stop the others; the record is then reported
    world.segments.records.pop("u1")
    world.segments.records.pop("u2")
    world.publisher.fail = True
    with pytest.raises(AccountEvaluationFailed, match="acme: 3 of 3 users"):
        evaluate_account("acme", RULES, world.ports, NOW)
    world.publisher.fail = False
    retried = evaluate_account("acme", RULES, world.ports, NOW)
    assert [o.user_id for o in retried.outcomes] == ["u1", "u2", "u3"]


def test_an_out_of_range_trait_stored_on_an_account_blocks_none_of_its_users(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The case: an account's mrr of 1e19 and seats of 1e20 (stored before ingest bounded
    # them) made every evaluation of its users fail, for good. Now each user is evaluated with
    # those facts missing, and each evaluation reports the facts by name.
    world = World()
    for user in ("u1", "u2"):
        declining_in(world, user, "acme", mrr=5000)
    set_traits(world, "acme", mrr=1e19, seats=10**20)
    reported: list[UserOutcome] = []
    world.metrics.outcome = reported.append  # type: ignore[method-assign]

    outcome = evaluate_account("acme", RULES, world.ports, NOW)

    assert (outcome.users, outcome.failed) == (2, ())
    assert [(o.user_id, o.evaluated, o.segment) for o in outcome.outcomes] == [
        ("u1", True, "declining"),
        ("u2", True, "declining"),
    ]
    ignored = ("account_trait_number__mrr", "account_trait_number__seats")
    assert [o.ignored_facts for o in reported] == [ignored, ignored]
    # Scored as an account whose mrr is unknown: not high value, so no escalation to CS
    assert {d.rule for o in outcome.outcomes for d in o.published} == {"rescue_declining"}
    warnings = [r for r in caplog.records if r.getMessage() == "facts out of range answered as missing"]
    assert [(w.levelname, w.__dict__["facts"], w.__dict__["account_id"]) for w in warnings] == [
        ("WARNING", list(ignored), "acme"),
        ("WARNING", list(ignored), "acme"),
    ]
    assert all("u1" not in str(w.__dict__) and "1e+19" not in str(w.__dict__) for w in warnings)


# ---------------------------------------------------------------------------- deferred sends


def test_a_deferred_send_wakes_the_user_and_returns_under_its_id_while_the_rule_holds() -> None:
    # Given a user whose finish_setup email was decided, then deferred by dispatch for 10 hours
    world = World()
    signed_up_without_setup(world, "u1", NOW - 2 * DAY)
    world.evaluate("u1", NOW)
    decision = world.publisher.published[0]
    until = NOW + 10 * HOUR
    SegmentRechecks(world.segments).defer("u1", decision, until, NOW)
    SegmentRechecks(world.segments).defer("u1", decision, until, NOW)  # redelivered: no change
    assert world.record("u1").next_check_at == until
    # When the sweep evaluates the user then, and the rule still holds
    world.evaluate("u1", until)
    # Then the same decision goes back to dispatch, marked as returning, and the deferral is gone
    back = world.publisher.batches[-1]
    assert [d.decision_id for d in back.decisions] == [decision.decision_id]
    assert back.returning == [decision.decision_id]
    assert back.lapsed == []
    assert world.record("u1").deferred == {}


def test_a_deferred_send_whose_rule_no_longer_holds_is_reported_lapsed() -> None:
    world = World()
    signed_up_without_setup(world, "u1", NOW - 2 * DAY)
    world.evaluate("u1", NOW)
    decision = world.publisher.published[0]
    SegmentRechecks(world.segments).defer("u1", decision, NOW + 10 * HOUR, NOW)
    # The user activates (setup, a project, a teammate) before the deferral ends
    steps = ("setup_completed", "project_created", "teammate_invited")
    world.track("u1", *((step, NOW + (i + 1) * HOUR) for i, step in enumerate(steps)))
    world.evaluate("u1", NOW + 10 * HOUR)
    back = world.publisher.batches[-1]
    assert back.lapsed == [decision.decision_id]
    assert back.decisions == []
