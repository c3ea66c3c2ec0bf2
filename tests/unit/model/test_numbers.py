"""The scan of a body's text that spares walking its messages never spares one that needs it."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from nudge.model.numbers import MAX_SAFE_INTEGER, judged_by_text, may_hold_unsafe_numbers, unsafe_numbers

EDGES = [
    MAX_SAFE_INTEGER,
    MAX_SAFE_INTEGER + 1,
    -MAX_SAFE_INTEGER - 1,
    float(MAX_SAFE_INTEGER),
    float(MAX_SAFE_INTEGER + 1),
    999_999_999_999_999.9,
    1e15,
    1e16,
    1e19,
    1.7976931348623157e308,
    5e-324,
    1e-7,
    0.0,
    -0.0,
]
NUMBERS = (
    st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()
    | st.sampled_from(EDGES)
    | st.integers(min_value=-1000, max_value=1000)
)
TEXTS = st.text(alphabet='ab1e:,[]{}" 9.-', max_size=8)
VALUES = st.recursive(
    NUMBERS | TEXTS | st.booleans() | st.none(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXTS, inner, max_size=4),
    max_leaves=12,
)


@st.composite
def messages(draw: st.DrawFn) -> dict[str, Any]:
    message: dict[str, Any] = {"type": "track", "userId": "u1", "event": "e"}
    for key in ("properties", "traits", "context", "integrations", "extra"):
        if draw(st.booleans()):
            message[key] = draw(VALUES)
    if draw(st.booleans()):
        message["context"] = {"traits": draw(VALUES), "screen": draw(VALUES)}
    return message


@settings(max_examples=500, deadline=None)
@given(messages(), st.sampled_from([None, 2]), st.sampled_from([(",", ":"), (", ", ": ")]))
def test_a_message_with_a_number_out_of_range_is_always_suspected_from_its_text(
    message: dict[str, Any], indent: int | None, separators: tuple[str, str]
) -> None:
    text = json.dumps({"batch": [message]}, indent=indent, separators=separators)
    if unsafe_numbers(message):
        assert may_hold_unsafe_numbers(text)


def test_messages_are_not_walked_when_their_text_holds_no_suspect_number() -> None:
    clean = '{"batch": [{"properties": {"n": 12, "x": 1.25, "id": "90200e95-7565"}}]}'
    suspect = '{"batch": [{"properties": {"n": 9007199254740992}}]}'
    assert not may_hold_unsafe_numbers(clean)
    assert may_hold_unsafe_numbers(suspect)
    bad = {"properties": {"n": float("nan")}}
    # A message judged by a clean text is not walked: the scan stands for it...
    with judged_by_text(clean):
        assert unsafe_numbers(bad) == []
    # ...by a suspect text, or outside any request, it is
    with judged_by_text(suspect):
        assert [path for path, _ in unsafe_numbers(bad)] == [("properties", "n")]
    assert [path for path, _ in unsafe_numbers(bad)] == [("properties", "n")]
