"""Segment and band changes between two versions of a user's segment record."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from nudge.domain.changes import changes_between
from nudge.model.changes import Change, journey_converted
from nudge.model.decisions import SegmentState
from nudge.model.journeys import JourneyInstance
from nudge.model.segments import SegmentRecord
from nudge.model.versioned import Versioned
from nudge.services.changes import announce

T0 = datetime(2025, 3, 4, 12, 0, tzinfo=UTC)
T1 = T0 + timedelta(days=9)


def record(
    segment: str | None, since: datetime | None, band: str | None = "mid", band_since: datetime | None = T0
) -> SegmentRecord:
    return SegmentRecord(
        segments=SegmentState(segment=segment, since=since),
        band=band,
        band_since=band_since,
        account_id="acme",
    )


class Recorder:
    def __init__(self) -> None:
        self.published: list[list[Change]] = []

    def publish(self, changes: Sequence[Change]) -> None:
        self.published.append(list(changes))


def test_a_move_between_segments_is_an_exit_then_an_entry_naming_each_other() -> None:
    changes = changes_between("u1", record("habitual", T0), record("declining", T1), 7)
    assert [(c.detail_type, c.detail["segment"]) for c in changes] == [
        ("Segment Exited", "habitual"),
        ("Segment Entered", "declining"),
    ]
    assert changes[0].detail["next_segment"] == "declining"
    assert changes[1].detail["previous_segment"] == "habitual"
    assert {c.detail["account_id"] for c in changes} == {"acme"}
    assert {c.at for c in changes} == {T1}


def test_a_first_segment_is_an_entry_and_the_first_band_is_no_change() -> None:
    changes = changes_between("u1", None, record("not_activated", T0), 1)
    assert [(c.detail_type, c.detail["previous_segment"]) for c in changes] == [("Segment Entered", None)]


def test_a_band_change_is_announced_once_both_bands_are_known() -> None:
    before = record("habitual", T0, band="high")
    after = record("habitual", T0, band="low", band_since=T1)
    [change] = changes_between("u1", before, after, 8)
    assert (change.detail_type, change.detail["from_band"], change.detail["to_band"], change.at) == (
        "Score Band Changed",
        "high",
        "low",
        T1,
    )
    assert changes_between("u1", record("habitual", T0, band=None), after, 8) == []


def test_nothing_changed_announces_nothing_and_the_same_write_makes_the_same_ids() -> None:
    same = record("habitual", T0)
    assert changes_between("u1", same, same, 3) == []
    first = changes_between("u1", record("habitual", T0), record("power", T1), 4)
    again = changes_between("u1", record("habitual", T0), record("power", T1), 4)
    later = changes_between("u1", record("habitual", T0), record("power", T1), 5)
    assert [c.change_id for c in first] == [c.change_id for c in again]
    assert not {c.change_id for c in first} & {c.change_id for c in later}


def test_announce_publishes_a_newer_version_only() -> None:
    recorder = Recorder()
    old, new = Versioned(record("habitual", T0), 4), Versioned(record("power", T1), 5)
    assert len(announce("u1", old, new, recorder)) == 2
    assert announce("u1", new, old, recorder) == []
    assert announce("u1", new, Versioned(record("habitual", T0), 5), recorder) == []
    assert len(recorder.published) == 1


def test_a_journey_conversion_has_its_documented_detail() -> None:
    change = journey_converted("u1", "acme", "rescue", "inst-1", "event:any", T0, T1, "holdout")
    assert change.detail_type == "Journey Converted"
    assert set(change.detail) == {
        "change_id",
        "user_id",
        "account_id",
        "journey",
        "goal",
        "variant",
        "entered_at",
        "at",
    }


def instance(run: int = 0, converted_at: datetime | None = None, variant: str = "") -> JourneyInstance:
    live = JourneyInstance(
        journey="rescue", run=run, step="pause", step_since=T0, entered_at=T0, variant=variant
    )
    if converted_at is None:
        return live
    ended = {"step": None, "exited_at": converted_at, "converted_at": converted_at, "reason": "converted"}
    return live.model_copy(update={**ended, "goal": "event:any"})


def with_journeys(**instances: JourneyInstance) -> SegmentRecord:
    return record("habitual", T0).model_copy(update={"journeys": instances})


def test_a_journey_conversion_is_announced_by_the_write_that_recorded_it_only() -> None:
    # Given a write that converts an instance (and leaves another one live)
    before = with_journeys(rescue=instance(), upgrade=instance())
    after = with_journeys(rescue=instance(converted_at=T1, variant="holdout"), upgrade=instance())
    # Then that write announces one Journey Converted, naming the goal, the variant and when
    [change] = changes_between("u1", before, after, 6)
    assert change.detail_type == "Journey Converted"
    assert change.at == T1
    assert {k: change.detail[k] for k in ("user_id", "account_id", "journey", "goal", "variant")} == {
        "user_id": "u1",
        "account_id": "acme",
        "journey": "rescue",
        "goal": "event:any",
        "variant": "holdout",
    }
    assert (change.detail["entered_at"], change.detail["at"]) == (T0.isoformat(), T1.isoformat())
    # And no later write announces it again; the same write handled again makes the same id
    later = after.model_copy(update={"band": "low", "band_since": T1})
    assert [c.detail_type for c in changes_between("u1", after, later, 7)] == ["Score Band Changed"]
    assert changes_between("u1", before, after, 6)[0].change_id == change.change_id


def test_each_run_of_a_journey_converting_is_its_own_conversion() -> None:
    first = with_journeys(rescue=instance(converted_at=T1))
    second = with_journeys(rescue=instance(run=1, converted_at=T1 + timedelta(days=40)))
    [again] = changes_between("u1", first, second, 9)
    # converted by the record's first write (which also enters its first segment)
    [once] = [c for c in changes_between("u1", None, first, 1) if c.detail_type == "Journey Converted"]
    assert again.change_id != once.change_id
    assert again.at == T1 + timedelta(days=40)
