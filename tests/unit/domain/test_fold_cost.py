"""The fast fold (issue 17): it makes its models without validation, keeps dedupe digests as stored
bytes, counts weeks by bisection and takes times in UTC; each of those gives what the plain way
gives, and a fold costs what its messages touch (counted in objects made, never in seconds)."""

from __future__ import annotations

import struct
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from nudge.adapters.dynamo.codec import decode, encode
from nudge.domain.fold import _weeks, _weeks_counted, fold
from nudge.domain.fold_parts import DIGEST_BYTES, _inserted
from nudge.model.messages import Message
from nudge.model.state import FeatureStats, PropertyStats, SumStats, UserState, WeekStats
from tests.unit.domain.test_fold import NOW, PLAN, histories, track

_EPOCH_ORDINAL = datetime(1970, 1, 1).toordinal()


def _models(value: Any) -> list[BaseModel]:
    """Every pydantic model inside a state (itself included)."""
    if isinstance(value, BaseModel):
        return [value, *(m for v in value.__dict__.values() for m in _models(v))]
    if isinstance(value, dict):
        return [m for v in value.values() for m in _models(v)]
    if isinstance(value, list | tuple):
        return [m for v in value for m in _models(v)]
    return []


@settings(max_examples=100, deadline=None)
@given(histories(retries=True))
def test_every_model_the_fold_makes_holds_every_field_and_validates_to_itself(
    messages: list[Message],
) -> None:
    # A field added to a state model must be added where the fold makes that model too: else the
    # model would lack it (and fail to serialize) instead of getting a default.
    state = fold(None, "u1", messages, PLAN, NOW)
    for model in _models(state):
        assert model.__dict__.keys() == type(model).model_fields.keys(), type(model).__name__
        assert type(model).model_validate(model.model_dump()) == model
    assert decode(encode(state), UserState) == state


def test_the_models_made_for_properties_features_and_weeks_are_complete_too() -> None:
    at = NOW - timedelta(days=2)
    paid = track("invoice_paid", at, "p1")
    paid.properties = {"revenue": 19.99, "plan": "team"}
    state = fold(
        None, "u1", [paid, track("report_exported", at, "r1"), track("project_created", at, "c1")], PLAN, NOW
    )
    kinds = {type(model) for model in _models(state)}
    assert kinds >= {PropertyStats, SumStats, FeatureStats, WeekStats}
    for model in _models(state):
        assert model.__dict__.keys() == type(model).model_fields.keys(), type(model).__name__


@settings(max_examples=100, deadline=None)
@given(histories(retries=True), st.integers(min_value=0, max_value=79))
def test_folding_onto_a_state_read_back_from_storage_equals_folding_at_once(
    messages: list[Message], cut: int
) -> None:
    # The stored state's times come back with pydantic's own tzinfo, the fold's in UTC: the same
    # instants, whichever the fold compares.
    first = decode(encode(fold(None, "u1", messages[:cut], PLAN, NOW)), UserState)
    assert fold(first, "u1", messages[cut:], PLAN, NOW) == fold(None, "u1", messages, PLAN, NOW)


@settings(max_examples=100, deadline=None)
@given(histories(), st.integers(min_value=-14, max_value=14))
def test_a_time_sent_with_another_offset_folds_as_the_same_instant(
    messages: list[Message], hours: int
) -> None:
    zone = timezone(timedelta(hours=hours))
    shifted = [
        m.model_copy(update={"timestamp": m.timestamp.astimezone(zone)}) for m in messages if m.timestamp
    ]
    assert fold(None, "u1", shifted, PLAN, NOW) == fold(None, "u1", messages, PLAN, NOW)


def test_what_a_fold_does_not_touch_is_shared_with_the_state_it_was_given() -> None:
    # Counted in objects, not seconds: one event adds one EventStats; the others, the weeks it does
    # not change and the dedupe digests of earlier days are the very same objects.
    earlier = [
        track(e, NOW - timedelta(days=d), f"{e}{d}") for d in (1, 2, 9) for e in ("login", "project_created")
    ]
    state = fold(None, "u1", earlier, PLAN, NOW - timedelta(days=1))
    new = fold(state, "u1", [track("login", NOW - timedelta(minutes=5), "now")], PLAN, NOW)
    assert new.event_counts == {"login": 4, "project_created": 3}
    assert new.events["project_created"] is state.events["project_created"]
    assert new.events["login"] is not state.events["login"]
    unchanged_weeks = [w for w in state.weeks if new.weeks[w] == state.weeks[w]]
    assert unchanged_weeks
    assert all(new.weeks[w] is state.weeks[w] for w in unchanged_weeks)
    # the digests of the day before stay the stored text; today's day is added
    assert list(new.seen) == [*state.seen, NOW.toordinal()]
    assert all(new.seen[day] is state.seen[day] for day in state.seen)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.binary(min_size=DIGEST_BYTES, max_size=DIGEST_BYTES), unique=True, max_size=60),
    st.data(),
)
def test_digests_inserted_by_bisection_are_the_sorted_union(
    digests: list[bytes], data: st.DataObject
) -> None:
    kept = data.draw(st.lists(st.sampled_from(digests), unique=True)) if digests else []
    added = [d for d in digests if d not in kept]
    raw = b"".join(sorted(kept))
    assert _inserted(raw, set(added)) == b"".join(sorted(digests))
    # ...which is what packing the digests as sorted big-endian integers gives, as stored before
    values = sorted(int.from_bytes(d, "big") for d in digests)
    assert _inserted(raw, set(added)) == struct.pack(f">{len(values)}Q", *values)


@st.composite
def day_histories(draw: st.DrawFn) -> tuple[list[int], list[tuple[int, int]]]:
    start = datetime(2025, 1, 1, tzinfo=UTC).toordinal() + draw(st.integers(min_value=-3, max_value=3))
    span = draw(st.sampled_from([20, 84, 600]))  # within the kept weeks, or past _WEEKS_BISECTED
    days = sorted(set(draw(st.lists(st.integers(min_value=start, max_value=start + span), max_size=40))))
    times = sorted(
        set(draw(st.lists(st.integers(min_value=0, max_value=span * 86400), max_size=40))),
    )
    base = (start - _EPOCH_ORDINAL) * 86400
    sessions = [(base + t, base + t + 60) for t in times[::2]]
    return days, sessions


@settings(max_examples=300, deadline=None)
@given(day_histories())
def test_weeks_found_by_bisection_are_the_ones_counting_finds(
    history: tuple[list[int], list[tuple[int, int]]],
) -> None:
    days, sessions = history
    previous = _weeks_counted(days[: len(days) // 2], sessions[: len(sessions) // 2], {})
    assert _weeks(days, sessions, previous) == _weeks_counted(days, sessions, {})
    assert list(_weeks(days, sessions, {})) == list(_weeks_counted(days, sessions, {}))  # the same order
