"""How state blobs are stored, and the size of an item as DynamoDB counts it against its 400 KB
limit and bills it (writes by the kilobyte: a user item just over 1 KB costs twice one under it).

A blob is JSON deflated against a preset dictionary (`DICTIONARY`): a user's state is a few
hundred bytes to a few kilobytes, too little for deflate to learn its own repeated keys, so the
keys and shapes every state shares are given up front (about a fifth smaller than plain zlib on
the sample product's users, bench section 3). Layout: one format byte, then raw deflate
(no zlib header or checksum: DynamoDB keeps the bytes intact, and a corrupt blob still fails to
inflate or to validate).

Formats, told apart by the first byte (items written by an older Nudge stay readable):
- 0x78: zlib (RFC 1950) of the JSON, no dictionary: the layout before format 1;
- 0x01: format 1, raw deflate against `DICTIONARY`;
- 0x02: format 2, a user's state only (the item every ingest writes): raw deflate, against
  `DICTIONARY_2`, of the JSON with its times as epoch milliseconds (`nudge.model.state.Time`) and
  without its dedupe digests, a newline, and `{"<day>": <bytes>}` (the digests' length per day);
  then the digests themselves, raw: they are random, so deflate cannot shrink them, and as base64
  inside the JSON they cost a third more (bench section 3 has the breakdown).
A dictionary must never change once blobs use it: a better one is a new format byte.
What is written follows `write_format` (the StateFormat setting, for the deploys of an upgrade:
a Nudge reads the formats up to its own): 2 (the default) writes user states in format 2 and
every other blob in format 1; 1 writes format 1; 0 writes zlib, which any Nudge reads.
"""

from __future__ import annotations

import json
import zlib
from binascii import a2b_base64, b2a_base64
from typing import Any, TypeVar

from pydantic import BaseModel

from nudge.model.state import EPOCH_MS, UserState

M = TypeVar("M", bound=BaseModel)

FORMAT_ZLIB = 0x78  # the first byte of a zlib stream with a 32 KB window, as zlib.compress writes it
FORMAT_1 = 0x01
FORMAT_2 = 0x02
LEVEL = 6  # 9 saves under 1% here and costs more CPU

# Shapes and keys of UserState, SegmentRecord, DeliveryRecord and AccountState as pydantic dumps
# them, with values of the usual kinds (ISO timestamps, date ordinals, ids); deflate refers back
# into it from the first byte of a blob. The most common strings come last (nearest).
DICTIONARY = (
    b'{"segments":{"segment":null,"since":null,"history":[]},"decided":{},"state_version":0,'
    b'"deferred":{},"band":null,"account_id":null,"band_since":null,"journeys":{}}'
    b'{"sends":[{"at":"2026-","channel":"email","rule":"","journey":""}],"last_by_rule":{},'
    b'"unsubscribed":[],"adopted":[]}'
    b'{"account_id":"","traits":{"name":{"v":"","at":"20'
    b'{"user_id":"user-","first_seen":"2026-","last_seen":"2026-","last_meaningful":"2026-'
    b'"traits":{"email":{"v":"@example.com","at":"2026-01-01T00:00:00.000000Z","mid":"'
    b'"},"plan":{"v":"free","at":"2026-","mid":"'
    b'"},"timezone":{"v":"America/New_York","at":"2026-","mid":"'
    b'"},"locale":{"v":"en-US","at":"2026-","mid":"'
    b'"},"consent":{"v":{"email":true,"push":true,"sms":false},"at":"2026-","mid":"'
    b'"},"created_at":{"v":"2026-","at":"2026-","mid":"'
    b'"},"push_token":{"v":"","at":"2026-","mid":"'
    b'"},"phone":{"v":"+1","at":"2026-","mid":"'
    b'"},"name":{"v":"","at":"2026-","mid":"'
    b'"}},"context":{"timezone":{"v":"Europe/","at":"2026-","mid":"'
    b'"},"locale":{"v":"en-GB","at":"2026-","mid":"'
    b'"}},"account":{"v":"acct-","at":"2026-","mid":"'
    b'"},"features":{"setup":{"first":"2026-","last":"2026-","count":1,"days":[7'
    b']},"milestones":{"activated":"2026-'
    b'"events":{"signed_up":{"count":1,"first":"2026-","last":"2026-","daily":{"7":1},"props":null},'
    b'"login":{"count":1,"first":"2026-","last":"2026-","daily":{"7":1},"props":null},'
    b'"page_viewed":{"count":1,"first":"2026-","last":"2026-","daily":{"7":1},'
    b'"props":{"values":{"name":{"Dashboard":[1,"2026-","2026-",{"7":1}]}},"sums":{},"last":{}}},'
    b'"sessions":[[17,17]],"active_days":[7],"weeks":{"2026-W01":{"sessions":1,"active_days":1}},'
    b'"kept_from":7,"seen":{"7":""},"merged":[],"merged_into":null}'
    b'.000000Z","last":"2026-01-01T00:00:00.000000Z","daily":{"7'
)


# Format 2's: UserState's keys and shapes with times as epoch milliseconds (2026-01-01 is
# 1767225600000) and date ordinals (739617 is 2026-01-01); no `seen` (its digests follow the
# deflate stream). The most common strings last (nearest).
DICTIONARY_2 = (
    b'{"user_id":"user-","first_seen":1767225600000,"last_seen":17672,"last_meaningful":17672,'
    b'"traits":{"email":{"v":"@example.com","at":17672,"mid":"'
    b'"},"plan":{"v":"free","at":17672,"mid":"'
    b'"},"timezone":{"v":"America/New_York","at":17672,"mid":"'
    b'"},"locale":{"v":"en-US","at":17672,"mid":"'
    b'"},"consent":{"v":{"email":true,"push":true,"sms":false},"at":17672,"mid":"'
    b'"},"created_at":{"v":"2026-01-01T00:00:00.000Z","at":17672,"mid":"'
    b'"},"push_token":{"v":"","at":17672,"mid":"'
    b'"},"phone":{"v":"+1","at":17672,"mid":"'
    b'"},"name":{"v":"","at":17672,"mid":"'
    b'"}},"context":{"timezone":{"v":"Europe/","at":17672,"mid":"'
    b'"},"locale":{"v":"en-GB","at":17672,"mid":"'
    b'"}},"account":{"v":"acct-","at":17672,"mid":"'
    b'"},"features":{"setup":{"first":17672,"last":17672,"count":1,"days":[7396'
    b']},"milestones":{"activated":17672'
    b'"weeks":{"2026-W01":{"sessions":1,"active_days":1}},"kept_from":7396,"merged":[],"merged_into":null}'
    b'"events":{"signed_up":{"count":1,"first":17672,"last":17672,"daily":{"7396":1},"props":null},'
    b'"login":{"count":1,"first":17672,"last":17672,"daily":{"7396":1},"props":null},'
    b'"page_viewed":{"count":1,"first":17672,"last":17672,"daily":{"7396":1},'
    b'"props":{"values":{"name":{"Dashboard":[1,17672,17672,{"7396":1}]}},"sums":{},"last":{}}},'
    b'"sessions":[[176722,176722]],"active_days":[7396'
)

_writing = {"format": FORMAT_2}
_FORMATS = {0: FORMAT_ZLIB, 1: FORMAT_1, 2: FORMAT_2}


def write_format(state_format: int) -> None:
    """Write blobs as zlib (0: readable by a Nudge from before format 1), format 1 (1: readable
    since format 1) or, for user states, format 2 (2), from now on in this process (set once at
    cold start from settings.state_format)."""
    if state_format not in _FORMATS:
        raise ValueError(f"state format {state_format} is not one Nudge writes: use 0 (zlib), 1 or 2")
    _writing["format"] = _FORMATS[state_format]


def encode(model: BaseModel) -> bytes:
    if _writing["format"] == FORMAT_ZLIB:
        return zlib.compress(model.model_dump_json().encode(), LEVEL)
    if _writing["format"] == FORMAT_2 and isinstance(model, UserState):
        return _encode_user(model)
    return bytes((FORMAT_1,)) + _deflate(model.model_dump_json().encode(), DICTIONARY)


def decode(blob: bytes, model: type[M]) -> M:
    if blob[:1] == bytes((FORMAT_2,)):
        if not issubclass(model, UserState):
            raise ValueError(f"stored state is format 2, a user's state, not a {model.__name__}")
        return model.model_validate(_decode_user(blob))
    return model.model_validate_json(inflate(blob))


def inflate(blob: bytes) -> bytes:
    """The JSON of a stored blob, whichever format wrote it."""
    if blob[:1] == bytes((FORMAT_1,)):
        text, _ = _inflate(blob[1:], DICTIONARY, "format 1")
        return text
    if blob[:1] == bytes((FORMAT_2,)):
        return _decode_user(blob).model_dump_json().encode()
    if blob[:1] == bytes((FORMAT_ZLIB,)):
        return zlib.decompress(blob)
    raise ValueError(
        f"stored state starts with byte {blob[:1].hex() or 'nothing'}, which no Nudge format uses "
        "(0x01: format 1, 0x02: format 2, 0x78: zlib): the item was not written by Nudge"
    )


def _deflate(text: bytes, dictionary: bytes) -> bytes:
    deflater = zlib.compressobj(LEVEL, zlib.DEFLATED, -zlib.MAX_WBITS, zdict=dictionary)
    return deflater.compress(text) + deflater.flush()


def _inflate(data: bytes, dictionary: bytes, name: str) -> tuple[bytes, bytes]:
    """The inflated text, and the bytes after the deflate stream."""
    inflater = zlib.decompressobj(-zlib.MAX_WBITS, zdict=dictionary)
    text = inflater.decompress(data) + inflater.flush()
    if not inflater.eof:
        raise ValueError(f"stored state is truncated ({name}): the item was not written by Nudge")
    return text, inflater.unused_data


def _encode_user(state: UserState) -> bytes:
    raw = {day: a2b_base64(digests) for day, digests in state.seen.items()}
    text = state.model_dump_json(exclude={"seen"}, context={EPOCH_MS: True})
    lengths = ",".join(f'"{day}":{len(digests)}' for day, digests in raw.items())
    deflated = _deflate(f"{text}\n{{{lengths}}}".encode(), DICTIONARY_2)
    return bytes((FORMAT_2,)) + deflated + b"".join(raw.values())


def _decode_user(blob: bytes) -> UserState:
    text, digests = _inflate(blob[1:], DICTIONARY_2, "format 2")
    body, _, lengths = text.rpartition(b"\n")
    state = UserState.model_validate_json(body)
    seen: dict[int, str] = {}
    start = 0
    for day, length in json.loads(lengths).items():
        seen[int(day)] = b2a_base64(digests[start : start + length], newline=False).decode()
        start += length
    if start != len(digests):
        raise ValueError(
            "stored state's dedupe digests do not add up (format 2): the item was not written by Nudge"
        )
    state.seen = seen
    return state


def number_bytes(text: str) -> int:
    """DynamoDB's size of a number: 1 byte per two significant digits, plus 1."""
    digits = text.lstrip("-").replace(".", "").split("e")[0].split("E")[0].strip("0") or "0"
    return (len(digits) + 1) // 2 + 1


def value_bytes(value: dict[str, Any]) -> int:
    """The size of one AttributeValue in boto3's low-level form ({"S": ...}, {"B": ...}, ...)."""
    (kind, inner), *_ = value.items()
    if kind == "S":
        return len(inner.encode())
    if kind == "N":
        return number_bytes(inner)
    if kind == "B":
        return len(inner)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "SS":
        return sum(len(s.encode()) for s in inner)
    if kind == "NS":
        return sum(number_bytes(n) for n in inner)
    if kind == "BS":
        return sum(len(b) for b in inner)
    if kind == "M":
        return 3 + sum(len(k.encode()) + value_bytes(v) + 1 for k, v in inner.items())
    if kind == "L":
        return 3 + sum(value_bytes(v) + 1 for v in inner)
    raise ValueError(f"unknown attribute type {kind}")


def item_bytes(item: dict[str, Any]) -> int:
    """An item's size as DynamoDB counts it: each attribute's name (UTF-8) and value."""
    return sum(len(name.encode()) + value_bytes(value) for name, value in item.items())
