"""Fewer `due` index moves, no decision later: a re-check still ahead is kept when the next one is
later (the sweep looks early once), and a week closing re-checks a user only when one of their
weekly tests flips then. Proved against an oracle that never reads `next_check_at`: the same users,
events and dispatch, evaluated every few hours instead of when the sweep finds them due."""

from __future__ import annotations

import shutil
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from nudge.adapters.memory import (
    MemoryDecisionPublisher,
    MemoryLedger,
    MemoryRouter,
    MemorySegmentStore,
    MemoryUsageStore,
)
from nudge.domain.evaluate import evaluate
from nudge.model.messages import Batch, InvalidMessage, Message, Track
from nudge.model.queue import DecisionBatch
from nudge.model.segments import SegmentRecord, due_time, kept_check
from nudge.rulebook.loader import load_rules
from nudge.rulebook.ruleset import RuleSet
from nudge.services.dispatch import DispatchPorts, dispatch
from nudge.services.evaluate import RulesPorts, SegmentRechecks, evaluate_user
from nudge.services.ingest import ingest
from nudge.services.sweep import sweep
from nudge.tools.samples.generator import generate
from tests.shipped import ROOT, RULES, SHIPPED, without_holdouts

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


# ---------------------------------------------------------------------------- the rule


def test_a_later_check_keeps_the_one_still_ahead() -> None:
    ahead, later = NOW + DAY, NOW + 3 * DAY
    assert kept_check(ahead, later, NOW) == ahead


@pytest.mark.parametrize(
    ("scheduled", "wanted", "stored"),
    [
        (NOW + 3 * DAY, NOW + DAY, NOW + DAY),  # earlier: moved at once (never later)
        (NOW - HOUR, NOW + DAY, NOW + DAY),  # the scheduled one has come (the sweep's own look)
        (NOW, NOW + DAY, NOW + DAY),  # due this very second: this evaluation is its look
        (None, NOW + DAY, NOW + DAY),  # a first check
        (NOW + DAY, None, None),  # nothing left to check: leaves the index at once
    ],
)
def test_any_other_check_is_stored_as_wanted(
    scheduled: datetime | None, wanted: datetime | None, stored: datetime | None
) -> None:
    assert kept_check(scheduled, wanted, NOW) == stored


# ---------------------------------------------------------------------------- index moves


class CountingSegments(MemorySegmentStore):
    """The fake store, counting what DynamoDB would bill on the `due` index: an entry moved (its
    key changed: 2 WRU), added or removed (1 WRU)."""

    def __init__(self) -> None:
        super().__init__()
        self.index_writes = 0
        self.moves = 0

    def save(self, user_id: str, record: SegmentRecord, version: int, now: datetime) -> None:
        current = self.records.get(user_id)
        before = current.value.next_check_at if current else None
        super().save(user_id, record, version, now)
        after = due_time(record.next_check_at)
        if before != after:
            self.moves += 1 if (before and after) else 0
            self.index_writes += 2 if (before and after) else 1


def ingest_at(usage: MemoryUsageStore, rules: RuleSet, at: datetime, *messages: Message) -> None:
    result = ingest(list(enumerate(messages)), rules.plan, usage, at)
    assert not result.errors, result.errors


def test_a_session_that_leaves_an_earlier_check_ahead_does_not_move_the_index_entry() -> None:
    # Given a user who activated three days ago, evaluated as the sweep does: a re-check is ahead
    usage, segments = MemoryUsageStore(), CountingSegments()
    ports = RulesPorts(usage, segments, MemoryDecisionPublisher())
    start = NOW - 3 * DAY
    steps = ["signed_up", "setup_completed", "project_created", "teammate_invited"]
    ingest_at(
        usage,
        RULES,
        start + HOUR,
        *(Track(userId="u1", event=e, timestamp=start, messageId=f"m-{e}") for e in steps),
    )
    at = start + HOUR
    while at <= NOW:
        evaluate_user(usage.users["u1"].value, RULES, ports, at, state_version=usage.users["u1"].version)
        at = segments.records["u1"].value.next_check_at or NOW + DAY
    scheduled = segments.records["u1"].value.next_check_at
    assert scheduled is not None
    # When they come back before it, with a session that pushes their next check later
    at = NOW + HOUR
    ingest_at(usage, RULES, at, Track(userId="u1", event="report_exported", timestamp=at, messageId="m-2"))
    user = usage.users["u1"]
    wanted = evaluate(RULES, user.value, None, segments.records["u1"].value.segments, at).next_check_at
    assert wanted is not None
    assert wanted > scheduled > at
    index_writes = segments.index_writes
    evaluate_user(user.value, RULES, ports, at, state_version=user.version)
    # Then the index entry stays where it was: the sweep looks then, once
    assert segments.records["u1"].value.next_check_at == scheduled
    assert segments.index_writes == index_writes


# ---------------------------------------------------------------------------- never later


@dataclass
class World:
    """One pipeline in memory: ingest, evaluate, dispatch (with deferrals), and what it decided
    and routed, with when."""

    rules: RuleSet
    usage: MemoryUsageStore = field(default_factory=MemoryUsageStore)
    segments: CountingSegments = field(default_factory=CountingSegments)
    publisher: MemoryDecisionPublisher = field(default_factory=MemoryDecisionPublisher)
    router: MemoryRouter = field(default_factory=MemoryRouter)
    ledger: MemoryLedger = field(default_factory=MemoryLedger)
    decided: dict[str, datetime] = field(default_factory=dict)
    routed: dict[str, datetime] = field(default_factory=dict)
    evaluations: int = 0

    def __post_init__(self) -> None:
        self.ports = RulesPorts(self.usage, self.segments, self.publisher)
        self.dispatch_ports = DispatchPorts(
            self.ledger, self.usage, self.router, SegmentRechecks(self.segments)
        )

    def evaluate(self, user_id: str, at: datetime) -> None:
        stored = self.usage.users[user_id]
        self.evaluations += 1
        evaluate_user(stored.value, self.rules, self.ports, at, state_version=stored.version)
        self.settle(at)

    def settle(self, at: datetime) -> None:
        """Dispatch what was published, at once; note what was decided and routed, first time."""
        while self.publisher.batches:
            batch: DecisionBatch = self.publisher.batches.pop(0)
            for decision in batch.decisions:
                self.decided.setdefault(decision.decision_id, at)
            dispatch(batch, self.rules, self.dispatch_ports, at)
        for delivery in self.router.routed:
            self.routed.setdefault(delivery.decision_id, at)

    def ingest(self, at: datetime, messages: list[Message]) -> set[str]:
        before = {k: v.version for k, v in self.usage.users.items()}
        ingest_at(self.usage, self.rules, at, *messages)
        return {k for k, v in self.usage.users.items() if before.get(k) != v.version}


def history(users: int, days: int, seed: int) -> Iterator[tuple[datetime, list[Message]]]:
    """The sample product's history (generated), in SDK-sized flushes: each hour's messages are
    posted together at the end of that hour."""
    start = datetime(2026, 1, 5, tzinfo=UTC)
    messages = list(generate(users=users, accounts=max(1, users // 4), days=days, seed=seed, start=start))
    parsed = [m for m in Batch.model_validate({"batch": messages}).batch if not isinstance(m, InvalidMessage)]
    by_hour: dict[datetime, list[Message]] = {}
    for message in parsed:
        assert message.timestamp is not None
        hour = message.timestamp.replace(minute=0, second=0, microsecond=0) + HOUR
        by_hour.setdefault(hour, []).append(message)
    yield from sorted(by_hour.items(), key=lambda item: item[0])


def run(
    world: World, flushes: list[tuple[datetime, list[Message]]], until: datetime, step: timedelta | None
) -> None:
    """Post each flush and evaluate the users it changed (the stream); between flushes either the
    sweep runs at every instant a user comes due (step None: what Nudge does), or every user is
    evaluated every `step` (the oracle: it never reads next_check_at)."""
    clock = flushes[0][0]

    def advance_to(end: datetime) -> None:
        nonlocal clock
        if step is None:
            while True:
                due = [
                    r.value.next_check_at for r in world.segments.records.values() if r.value.next_check_at
                ]
                soonest = min(due, default=None)
                if soonest is None or soonest > end:
                    break
                sweep(world.rules, world.ports, soonest)
                world.settle(soonest)
            return
        while clock + step <= end:
            clock += step
            for user_id in list(world.segments.records):
                world.evaluate(user_id, clock)

    for at, messages in flushes:
        advance_to(at)
        for user_id in sorted(world.ingest(at, messages)):
            if world.usage.users[user_id].value.addressable:
                world.evaluate(user_id, at)
    advance_to(until)


def guarded(tmp_path: Path) -> RuleSet:
    """The shipped journeys under tight guardrails, with no holdout: quiet hours from 22:00 to 12:00,
    email waiting them out too, and one message a week in all, so sends are deferred (quiet hours) and journey sends held by the
    cap are retried (`blocked: retry`, within `retry_within`). The hours left to send in (12:00 to
    22:00) are longer than the oracle's step, so its looks fall in them as Nudge's do."""
    folder = tmp_path / "rules"
    shutil.copytree(ROOT / "rules", folder)
    guardrails = folder / "guardrails.yaml"
    text = guardrails.read_text(encoding="utf-8")
    for old, new in (
        ("  channels: [push, sms]", "  channels: [email, push, sms]"),
        ('  start: "21:00"\n  end: "08:00"', '  start: "22:00"\n  end: "12:00"'),
        ("    - {max: 2, per: day}\n    - {max: 5, per: 7d}", "    - {max: 1, per: 7d}"),
    ):
        assert old in text, old
        text = text.replace(old, new)
    guardrails.write_text(text, encoding="utf-8")
    return without_holdouts(load_rules(folder))


class Verdicts:
    """Dispatch's verdicts, counted by outcome and reason (what the history exercised)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.seen: Counter[str] = Counter()
        real = dispatch

        def counted(batch: DecisionBatch, rules: RuleSet, ports: DispatchPorts, now: datetime) -> Any:
            result = real(batch, rules, ports, now)
            self.seen.update(f"{v.outcome}:{v.reason}" for v in result.verdicts)
            return result

        monkeypatch.setattr(sys.modules[__name__], "dispatch", counted)


@pytest.mark.parametrize("kind", ["triggers", "journeys", "guarded journeys"])
def test_no_decision_or_send_is_later_than_an_evaluation_every_six_hours_would_make_it(
    kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the sample product's history of a few users (dormant and declining users, journeys with
    # waits; under tight guardrails, quiet-hours deferrals and journey retries), run twice: as Nudge
    # runs it (stream + sweep at each user's due re-check), and as an oracle evaluating every user
    # every six hours
    rules = {"triggers": RULES, "journeys": SHIPPED}.get(kind) or guarded(tmp_path)
    verdicts = Verdicts(monkeypatch)
    step = 6 * HOUR
    flushes = list(history(users=6, days=42, seed=11))
    until = flushes[-1][0] + 35 * DAY
    nudge, oracle = World(rules), World(rules)
    run(nudge, flushes, until, None)
    run(oracle, flushes, until, step)
    # Then they decide and route the same things, never later than the oracle (whose look can
    # only be up to six hours late), and never earlier than six hours before it
    assert oracle.decided, "the history decides nothing: the test would prove nothing"
    assert any(at not in {f[0] for f in flushes} for at in oracle.decided.values())  # some by time
    assert set(nudge.decided) == set(oracle.decided)
    assert set(nudge.routed) == set(oracle.routed)
    for ours, theirs in ((nudge.decided, oracle.decided), (nudge.routed, oracle.routed)):
        late = {k: (ours[k], theirs[k]) for k in theirs if not theirs[k] - step < ours[k] <= theirs[k]}
        assert not late, late
    # And Nudge looked far less often than every six hours
    assert nudge.evaluations < oracle.evaluations / 2
    if kind == "guarded journeys":  # the history did defer for quiet hours and retry capped sends
        assert any(v.startswith("deferred:quiet") for v in verdicts.seen), verdicts.seen
        assert any(v.startswith("deferred:retry") for v in verdicts.seen), verdicts.seen


def test_the_index_moves_less_than_when_every_session_moved_it(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given the same history run with today's rule (a later check always moved) and with the kept one
    flushes = list(history(users=6, days=42, seed=11))
    until = flushes[-1][0] + 35 * DAY
    kept = World(SHIPPED)
    run(kept, flushes, until, None)
    monkeypatch.setattr("nudge.services.evaluate.kept_check", lambda scheduled, wanted, now: wanted)
    moved = World(SHIPPED)
    run(moved, flushes, until, None)
    # Then the same decisions at the same instants, for fewer index writes
    assert kept.decided == moved.decided
    assert kept.routed == moved.routed
    assert kept.segments.index_writes < moved.segments.index_writes
