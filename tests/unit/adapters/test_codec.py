"""State blobs (nudge.adapters.dynamo.codec): formats 1 and 2 round-trip any state, items written
in the layouts before them stay readable, the dictionaries never change under stored blobs, and
what is not a Nudge blob fails with a reason."""

from __future__ import annotations

import hashlib
import zlib
from binascii import b2a_base64
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nudge import bootstrap
from nudge.adapters.dynamo import codec
from nudge.domain.fold import FoldWindow, fold
from nudge.domain.fold_parts import digest
from nudge.model.delivery import DeliveryRecord, Sent
from nudge.model.messages import Group, Identify, Track
from nudge.model.segments import SegmentRecord
from nudge.model.state import AccountState, Stamped, UserState
from nudge.rulebook.plan import TrackingPlan, load_plan

PLAN: TrackingPlan = load_plan(Path("rules"))
NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
AT = datetime(2026, 12, 1, 9, 30, 5, 123456, tzinfo=UTC)

# A format-1 blob as this Nudge writes it for STATE below: pins the format and the dictionary (a
# stored blob must decode for as long as the table keeps it).
STATE = UserState(
    user_id="u-\u00e9",
    traits={"name": Stamped(v="Zo\u00eb \x01", at=datetime(2026, 1, 2, 3, 4, 5, 6000, tzinfo=UTC), mid="m1")},
    active_days=[739280],
    kept_from=739201,
)
STORED = (
    b"\x01C)Vu\x0f\xafD+U!\xd5\x05R\x91\x8a$\x80\\\x9eB\x84\xe1\xc9\r5\x91\xa3'\xd4Z\\\xa5}T\xfe\xe1\xd5\n1"
    b"\xa5@G\xa2f~\x90?\x8cB\x0c\x8c\xad\x0cL\xac\x0cL\x81\xfe0C)vs\r\xd1\xb2;r\x8e\x84V\xb4\x88x"
    b"\xc3\x8c0cK#\x0b\x03\xa4XC\x8b\x0c\xa0\xb4\x81!<F\x08\xc6\x05\x00"
)
DICTIONARY_SHA256 = "3edc96baea1e27fd194973770402c5fe26097d7316d688b9921872d5decd6a9d"

# A format-2 blob as this Nudge writes it for STATE_2: times exact to the millisecond, to the
# microsecond and at another offset, and two dedupe digests.
STATE_2 = UserState(
    user_id="u-\u00e9",
    first_seen=datetime(2026, 1, 2, 3, 4, 5, 6000, tzinfo=UTC),
    last_seen=datetime(2026, 1, 2, 3, 4, 5, 6001, tzinfo=UTC),
    traits={"name": Stamped(v="Zo\u00eb \x01", at=datetime(2026, 1, 2, 3, 4, 5, 6000, tzinfo=UTC), mid="m1")},
    milestones={"activated": datetime(2026, 1, 2, 5, 0, tzinfo=timezone(timedelta(hours=2)))},
    active_days=[739618],
    kept_from=739601,
    seen={739618: b2a_base64(b"".join(sorted([digest("a"), digest("b")])), newline=False).decode()},
)
STORED_2 = (
    b"\x02\xabF.\xfbt\x0f\xaf\xc4R\xf4\x19\x1b\x19\x1b\x98\x98\x1a\x18\x98\xa1\x14}\x88\x9ck\x14b`le`be`\n"
    b"\xcc\xb9\xc0B\xd2\x10\x94y1\x8aDP\xf8\xe9 \xa2\x1a5\t\xe3K\x87(\x16\x99B\x8a\x08m\x03# \t.\xff\xe0E,"
    b"rF\x8e\xca?\xbcZ!\xa6\x14X\x90 \xe7{$\x8f@2R\xae!Z\xeeF\xce\x84\x10\x07#\x05'\xd6\xf03\xb4\x00\n\xc32"
    b"\tf\xda70$\x94\xfa\xb9 \xb1jh\x01t\xa3Y-\x00@\xf8\x9e9[fB/\x84r\xc2\xe3M\x85Ou"
)
DICTIONARY_2_SHA256 = "a75cc2741747d5da7fbf407295f870f3a984df5db2b559a6e1b656edabe2caf3"

JSON_VALUES = st.recursive(
    # JSON has no infinity (traits come from JSON bodies): pydantic writes it as null either way.
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)


def test_a_blob_written_in_format_1_still_decodes() -> None:
    assert codec.decode(STORED, UserState) == STATE
    assert hashlib.sha256(codec.DICTIONARY).hexdigest() == DICTIONARY_SHA256, (
        "codec.DICTIONARY changed: stored blobs would no longer inflate; add a new format byte instead"
    )


def test_a_blob_written_in_format_2_still_decodes() -> None:
    assert codec.decode(STORED_2, UserState) == STATE_2
    assert codec.encode(STATE_2) == STORED_2
    assert hashlib.sha256(codec.DICTIONARY_2).hexdigest() == DICTIONARY_2_SHA256, (
        "codec.DICTIONARY_2 changed: stored blobs would no longer inflate; add a new format byte instead"
    )


def test_format_2_keeps_dedupe_digests_raw_after_the_deflated_json() -> None:
    # The digests (random bytes) are the blob's last 16 bytes, as they are: not deflated, not base64
    assert codec.encode(STATE_2).endswith(b"".join(sorted([digest("a"), digest("b")])))
    assert codec.inflate(STORED_2) == STATE_2.model_dump_json().encode()


def test_format_2_is_for_user_states_and_other_blobs_stay_format_1() -> None:
    assert codec.encode(AccountState(account_id="a1"))[:1] == b"\x01"
    with pytest.raises(ValueError, match="format 2, a user's state, not a AccountState"):
        codec.decode(STORED_2, AccountState)


def test_an_item_in_the_layout_before_format_1_still_decodes() -> None:
    old = zlib.compress(STATE.model_dump_json().encode(), 6)  # what the previous codec wrote
    assert old[0] == codec.FORMAT_ZLIB
    assert codec.decode(old, UserState) == STATE
    assert codec.encode(STATE)[0] == codec.FORMAT_2


@settings(max_examples=200, deadline=None)
@given(
    user_id=st.text(min_size=1, max_size=40),
    traits=st.dictionaries(st.text(min_size=1, max_size=12), JSON_VALUES, max_size=5),
    days=st.lists(st.integers(min_value=0, max_value=800_000), max_size=10),
    micros=st.integers(min_value=0, max_value=10**12),
    millis=st.integers(min_value=-(10**12), max_value=10**12),
    offset=st.integers(min_value=-14 * 60, max_value=14 * 60),
    seen=st.dictionaries(
        st.integers(min_value=0, max_value=800_000), st.lists(st.text(), max_size=4), max_size=3
    ),
)
def test_any_state_round_trips(
    user_id: str,
    traits: dict[str, object],
    days: list[int],
    micros: int,
    millis: int,
    offset: int,
    seen: dict[int, list[str]],
) -> None:
    at = AT + timedelta(microseconds=micros)
    exact = (AT + timedelta(milliseconds=millis)).astimezone(timezone(timedelta(minutes=offset)))
    state = UserState(
        user_id=user_id,
        first_seen=at,
        last_seen=exact,
        milestones={"m": exact.astimezone(UTC)},
        traits={k: Stamped(v=v, at=at, mid=k) for k, v in traits.items()},
        active_days=days,
        seen={
            day: b2a_base64(b"".join(sorted(map(digest, ids))), newline=False).decode()
            for day, ids in seen.items()
        },
    )
    for state_format in (2, 1, 0):
        codec.write_format(state_format)
        try:
            decoded = codec.decode(codec.encode(state), UserState)
        finally:
            codec.write_format(2)
        assert decoded == state
        assert decoded.model_dump_json() == state.model_dump_json()  # the same instants, offsets and all


def test_a_folded_state_round_trips_and_is_smaller_than_plain_zlib() -> None:
    messages = [
        Identify.model_validate(
            {
                "userId": "u1",
                "traits": {"email": "u1@example.com", "plan": "team"},
                "timestamp": AT,
                "messageId": "i",
            }
        ),
        Group(userId="u1", groupId="acct-1", timestamp=AT, messageId="g"),
        *[
            Track(userId="u1", event=event, timestamp=AT + timedelta(hours=i), messageId=f"m{i}")
            for i, event in enumerate(["signed_up", "setup_completed", "project_created", "login"] * 5)
        ],
    ]
    state = fold(None, "u1", messages, PLAN, NOW, FoldWindow())
    blob = codec.encode(state)
    assert codec.decode(blob, UserState) == state
    codec.write_format(1)
    try:
        format_1 = codec.encode(state)
    finally:
        codec.write_format(2)
    assert len(blob) < len(format_1) < len(zlib.compress(state.model_dump_json().encode(), 6))


@pytest.mark.parametrize(
    "model",
    [
        SegmentRecord(),
        AccountState(account_id="a1"),
        UserState(user_id="u1"),
        DeliveryRecord(sends=[Sent(at=AT, channel="email", rule="r", journey="")], unsubscribed={"sms"}),
    ],
)
def test_every_stored_kind_round_trips(
    model: SegmentRecord | AccountState | UserState | DeliveryRecord,
) -> None:
    assert codec.decode(codec.encode(model), type(model)) == model


@pytest.mark.parametrize(
    ("blob", "reason"),
    [(b"not zlib at all", "no Nudge format"), (b"", "no Nudge format"), (STORED[:20], "truncated")],
)
def test_what_nudge_did_not_write_fails_with_a_reason(blob: bytes, reason: str) -> None:
    with pytest.raises((ValueError, zlib.error), match=reason):
        codec.decode(blob, UserState)


def test_state_format_0_writes_what_a_nudge_from_before_format_1_reads(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a function configured with StateFormat 0 (the first deploy of an upgrade)
    monkeypatch.setenv("NUDGE_STATE_FORMAT", "0")
    bootstrap.reset()
    try:
        bootstrap.configured()
        blob = codec.encode(STATE)
        # Then its blobs are plain zlib: the code before format 1 decoded exactly this way
        assert UserState.model_validate_json(zlib.decompress(blob)) == STATE
        assert codec.decode(blob, UserState) == STATE
    finally:
        monkeypatch.delenv("NUDGE_STATE_FORMAT")
        bootstrap.reset()
        bootstrap.configured()
    # And with the default (2) a user's blob is format 2 again
    assert codec.encode(STATE)[:1] == b"\x02"


def test_a_state_format_nudge_does_not_write_is_refused() -> None:
    with pytest.raises(ValueError, match=r"use 0 \(zlib\), 1 or 2"):
        codec.write_format(3)
