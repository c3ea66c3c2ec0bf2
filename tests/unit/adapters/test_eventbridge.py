"""The EventBridge publisher: ten changes per PutEvents, only the entries EventBridge refused sent
again (with the one backoff), and an error when some never get through."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from nudge.adapters.eventbridge import EventBridgeChanges
from nudge.backoff import Backoff
from nudge.model.changes import Change
from nudge.ports import ChangesNotPublished

AT = datetime(2025, 3, 4, 12, 0, tzinfo=UTC)


class FakeEvents:
    """put_events answering an ErrorCode for each entry whose change id is in `refuse` (once each,
    or always for those in `always`)."""

    def __init__(self, refuse: frozenset[str] = frozenset(), always: frozenset[str] = frozenset()) -> None:
        self.calls: list[list[dict[str, Any]]] = []
        self.refuse = set(refuse)
        self.always = set(always)

    def put_events(self, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        self.calls.append(Entries)
        results = []
        for entry in Entries:
            cid = json.loads(entry["Detail"])["change_id"]
            if cid in self.always or cid in self.refuse:
                self.refuse.discard(cid)
                results.append({"ErrorCode": "ThrottlingException", "ErrorMessage": "slow down"})
            else:
                results.append({"EventId": f"e-{cid}"})
        return {"FailedEntryCount": sum(1 for r in results if "ErrorCode" in r), "Entries": results}


def change(n: int) -> Change:
    return Change(detail_type="Segment Entered", at=AT, detail={"change_id": f"c{n}", "user_id": f"u{n}"})


def publisher(fake: FakeEvents, sleeps: list[float]) -> EventBridgeChanges:
    return EventBridgeChanges(
        fake, "nudge-changes", Backoff(attempts=3, sleep=sleeps.append, rng=lambda: 1.0)
    )


def test_changes_go_ten_per_call_to_the_bus_with_source_and_detail_type() -> None:
    fake = FakeEvents()
    publisher(fake, []).publish([change(n) for n in range(23)])
    assert [len(c) for c in fake.calls] == [10, 10, 3]
    first = fake.calls[0][0]
    assert (first["Source"], first["DetailType"], first["EventBusName"]) == (
        "nudge",
        "Segment Entered",
        "nudge-changes",
    )


def test_only_the_refused_entries_are_sent_again_after_a_backoff() -> None:
    fake, sleeps = FakeEvents(refuse={"c2"}), []
    publisher(fake, sleeps).publish([change(n) for n in range(4)])
    assert [[json.loads(e["Detail"])["change_id"] for e in c] for c in fake.calls] == [
        ["c0", "c1", "c2", "c3"],
        ["c2"],
    ]
    assert len(sleeps) == 1


def test_changes_still_refused_after_every_attempt_raise_so_the_record_is_retried() -> None:
    fake = FakeEvents(always={"c1"})
    with pytest.raises(ChangesNotPublished, match="1 changes"):
        publisher(fake, []).publish([change(0), change(1)])
    assert len(fake.calls) == 3
