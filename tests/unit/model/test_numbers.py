"""Watching a body's numbers as it is read spares walking its messages, and never spares one that
needs it."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from nudge.entrypoints.http.body import load_json
from nudge.model.numbers import MAX_SAFE_INTEGER, NumberWatch, request_scope, unsafe_numbers

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


def _watched(text: str) -> tuple[Any, bool]:
    watch = NumberWatch()
    value = json.loads(
        text, parse_int=watch.read_int, parse_float=watch.read_float, parse_constant=watch.read_constant
    )
    return value, watch.suspect


@settings(max_examples=500, deadline=None)
@given(messages(), st.sampled_from([None, 2]))
def test_a_message_with_a_number_out_of_range_is_always_suspected_when_read(
    message: dict[str, Any], indent: int | None
) -> None:
    text = json.dumps({"batch": [message]}, indent=indent)
    value, suspect = _watched(text)
    [read] = value["batch"]
    assert json.dumps(read) == json.dumps(message)  # read as json reads it
    if unsafe_numbers(read):
        assert suspect


def test_messages_are_not_walked_in_a_request_whose_body_held_no_suspect_number() -> None:
    bad = {"properties": {"n": float("nan")}}
    assert not _watched('{"n": 12, "x": 1.25, "y": 900719925474099, "id": "9007199254740992"}')[1]
    # Within a request, messages read from a body without a suspect number are not walked...
    with request_scope():
        load_json('{"batch": [{"properties": {"n": 12}}]}')
        assert unsafe_numbers(bad) == []
    # ...from a body with one they are, and so they are outside any request (the CLI, tests)
    with request_scope():
        load_json('{"batch": [{"properties": {"n": NaN}}]}')
        assert [path for path, _ in unsafe_numbers(bad)] == [("properties", "n")]
    load_json('{"batch": [{"properties": {"n": 12}}]}')
    assert [path for path, _ in unsafe_numbers(bad)] == [("properties", "n")]
