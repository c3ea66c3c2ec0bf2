"""A ledger entry written to DynamoDB and read back keeps which channel was chosen and why."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from nudge.adapters.dynamo.ledger import entry_item, entry_of
from nudge.model.decisions import Decision
from nudge.model.ledger import LedgerEntry

NOW = datetime(2025, 3, 4, 20, 0, tzinfo=UTC)


def test_the_channel_choice_survives_the_round_trip() -> None:
    decision = Decision(
        decision_id="d1",
        user="u1",
        account=None,
        rule="rescue_declining",
        kind="rescue",
        action="push",
        channel="email",
        channels=["push", "email"],
        template="declining_nudge",
        priority=70,
        reason="test",
        facts={},
        decided_at=NOW,
    )
    entry = LedgerEntry(
        decision=decision,
        outcome="send",
        status="queued",
        channel_why="push: no_address; email: chosen",
        recorded_at=NOW,
        updated_at=NOW,
    )
    item = entry_item(entry, timedelta(days=400))
    assert item["channel"] == {"S": "email"}
    assert entry_of(item) == entry
