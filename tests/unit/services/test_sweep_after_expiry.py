"""The sweep meets users whose state is gone (expired by the state TTL, or erased): their segment
record goes too, instead of being written again (which would keep it a state TTL longer)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from nudge.adapters.memory import MemoryDecisionPublisher, MemorySegmentStore, MemoryUsageStore
from nudge.model.messages import Track
from nudge.rulebook.loader import load_rules
from nudge.rulebook.ruleset import RuleSet
from nudge.services.evaluate import RulesPorts, evaluate_user
from nudge.services.ingest import ingest
from nudge.services.sweep import sweep

RULES: RuleSet = load_rules(Path("rules"))
NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


class NoMetrics:
    def outcome(self, outcome: object) -> None:
        pass

    def swept(self, result: object) -> None:
        pass


def test_a_due_user_whose_state_is_gone_loses_its_record_and_the_others_are_evaluated() -> None:
    # Given two users signed up a week ago, evaluated then (each has a re-check scheduled)
    usage, segments = MemoryUsageStore(), MemorySegmentStore()
    ports = RulesPorts(usage, segments, MemoryDecisionPublisher(), NoMetrics())
    week_ago = NOW - timedelta(days=7)
    for user in ("gone", "here"):
        messages = [Track(userId=user, event="signed_up", timestamp=week_ago, messageId=f"{user}-s")]
        ingest(list(enumerate(messages)), RULES.plan, usage, week_ago)
        evaluate_user(usage.users[user].value, RULES, ports, week_ago, state_version=1)
    sweep(RULES, ports, week_ago)
    checks = {user: segments.records[user].value.next_check_at for user in ("gone", "here")}
    assert all(check is not None and check <= NOW + timedelta(days=30) for check in checks.values())
    # When one user's state expires, and the sweep runs once both are due
    del usage.users["gone"]
    result = sweep(RULES, ports, max(c for c in checks.values() if c is not None))
    # Then its record is deleted (not rewritten), and the other user is evaluated
    assert "gone" not in segments.records
    assert {o.user_id for o in result.outcomes} == {"here"}
    assert result.skipped == 1
