"""Whether a journey's decision is one the saved instance made (nudge.domain.journey_sends.on_saved_path):
saved, superseded (another path of the instance was saved), or pending (the save has not landed)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from nudge.domain.journey_sends import on_saved_path
from nudge.model.decisions import Decision
from nudge.model.journeys import Decided, JourneyInstance
from nudge.model.limits import JOURNEY_DECISIONS_KEPT

AT = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


def decision(decision_id: str, run: int = 0, seq: int | None = 3) -> Decision:
    return Decision(
        decision_id=decision_id,
        user="ann",
        account=None,
        rule="invite_nudge",
        kind="upgrade",
        action="email",
        channel="email",
        template="upgrade_offer",
        priority=50,
        reason="",
        facts={},
        decided_at=AT,
        step="thanks",
        instance="invite_nudge",
        journey="invite_nudge",
        run=run,
        seq=seq,
    )


def instance(
    run: int = 0, seq: int = 4, decided: tuple[Decided, ...] | None = (), live: bool = True
) -> JourneyInstance:
    return JourneyInstance(
        journey="invite_nudge",
        run=run,
        seq=seq,
        step="pause" if live else None,
        step_since=AT,
        entered_at=AT,
        exited_at=None if live else AT,
        reason=None if live else "converted",
        decided=decided,
    )


def test_a_decision_the_saved_instance_made_is_saved() -> None:
    assert on_saved_path(instance(decided=(Decided(0, 3, "mine"),)), decision("mine")) == "saved"


def test_another_path_saved_past_the_decisions_step_supersedes_it() -> None:
    assert on_saved_path(instance(decided=(Decided(0, 3, "theirs"),)), decision("mine")) == "superseded"
    assert on_saved_path(instance(decided=()), decision("mine")) == "superseded"  # no send on that path
    # An instance that ended on the saved path (at the same step visit) is past it too
    assert on_saved_path(instance(seq=3, live=False), decision("mine")) == "superseded"
    # So is a later run of the key
    assert on_saved_path(instance(run=1, seq=0), decision("mine")) == "superseded"


@pytest.mark.parametrize(
    ("saved", "wanted"),
    [
        (None, decision("mine")),
        (instance(seq=3), decision("mine")),
        (instance(seq=2), decision("mine")),
        (instance(run=0, seq=9), decision("mine", run=1, seq=0)),
    ],
    ids=["no instance yet", "at the decision's step", "before it", "an earlier run"],
)
def test_a_save_that_has_not_reached_the_decision_is_pending(
    saved: JourneyInstance | None, wanted: Decision
) -> None:
    assert on_saved_path(saved, wanted) == "pending"


def test_what_cannot_be_told_is_sent_as_before() -> None:
    # Decided before decisions carried their step visit, or an instance saved before it kept them
    assert on_saved_path(instance(), decision("mine", seq=None)) == "saved"
    assert on_saved_path(instance(decided=None), decision("mine")) == "saved"
    # Older than every decision the instance remembers (it keeps the newest)
    newer = tuple(Decided(0, 10 + i, f"d{i}") for i in range(JOURNEY_DECISIONS_KEPT))
    assert on_saved_path(instance(seq=30, decided=newer), decision("mine")) == "saved"
    # ...but not when the instance has room left: then it would remember it
    assert on_saved_path(instance(seq=30, decided=newer[1:]), decision("mine")) == "superseded"
