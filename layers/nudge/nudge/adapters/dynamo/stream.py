"""The usage table's stream records decoded: a user's state and version, or an account whose trait
values changed. A record that cannot be decoded raises UndecodableRecord (a poison record)."""

from __future__ import annotations

import base64
import binascii
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from nudge.adapters.dynamo import codec
from nudge.adapters.dynamo.rollups import DELTA_ATTRIBUTE, decode_delta
from nudge.model.segments import SegmentRecord
from nudge.model.state import AccountState, RollupDelta, UserState
from nudge.model.versioned import Versioned


class UndecodableRecord(ValueError):
    """A stream record whose user state cannot be read: a poison record for the on-failure queue."""


def user_from_stream(keys: Mapping[str, Any], image: Mapping[str, Any]) -> Versioned[UserState] | None:
    """The user state and version in a stream record's NewImage, or None if it is not a user's state.

    Accepts images as Powertools and boto3's TypeDeserializer give them; `state` (B) may be bytes
    or, as Lambda delivers binary attributes in stream events, a base64 string.
    """
    pk, sk = str(keys.get("pk", "")), str(keys.get("sk", ""))
    if sk != "STATE" or not pk.startswith("USER#") or not image:
        return None
    try:
        blob = image["state"]
        raw = base64.b64decode(blob, validate=True) if isinstance(blob, str) else bytes(blob)
        state = codec.decode(raw, UserState)
        version = int(image["v"])
    except (KeyError, TypeError, ValueError, zlib.error, binascii.Error) as exc:
        # `from None`: a pydantic ValidationError (a ValueError) quotes the decoded values
        # (traits: emails, phones) and would carry them into the log; the error's type and the
        # key are enough to find the item.
        raise UndecodableRecord(f"{pk}: state cannot be decoded ({type(exc).__name__})") from None
    return Versioned(state, version)


def has_rollup_delta(keys: Mapping[str, Any], image: Mapping[str, Any] | None) -> bool:
    """A user's STATE write that stored a rollup delta: what RollupFunction's FilterCriteria passes."""
    pk, sk = str(keys.get("pk", "")), str(keys.get("sk", ""))
    return sk == "STATE" and pk.startswith("USER#") and image is not None and DELTA_ATTRIBUTE in image


def rollup_from_stream(keys: Mapping[str, Any], image: Mapping[str, Any] | None) -> RollupDelta | None:
    """The rollup delta a user's write stored (`rd` in a STATE record's NewImage), or None: not a
    user's state, or a write that changed no rollup. UndecodableRecord if `rd` is not Nudge's."""
    if image is None or not has_rollup_delta(keys, image):
        return None
    pk = str(keys.get("pk", ""))
    try:
        return decode_delta(str(image[DELTA_ATTRIBUTE]))
    except ValueError:
        raise UndecodableRecord(f"{pk}: rollup delta cannot be decoded") from None


@dataclass(frozen=True)
class AccountChange:
    """An account whose trait values changed, from a stream record's Old and New images."""

    account_id: str
    changed: frozenset[str]


def account_from_stream(
    keys: Mapping[str, Any], new_image: Mapping[str, Any] | None, old_image: Mapping[str, Any] | None
) -> AccountChange | None:
    """The account whose traits a stream record changed, or None: not an account's TRAITS item, or
    the trait values are the same in both images (a newer stamp of an unchanged value)."""
    pk, sk = str(keys.get("pk", "")), str(keys.get("sk", ""))
    if sk != "TRAITS" or not pk.startswith("ACCOUNT#") or not new_image:
        return None
    new = _account_traits(pk, new_image)
    old = _account_traits(pk, old_image) if old_image else {}
    changed = frozenset(k for k in new.keys() | old.keys() if new.get(k, _ABSENT) != old.get(k, _ABSENT))
    if not changed:
        return None
    return AccountChange(pk.removeprefix("ACCOUNT#"), changed)


_ABSENT = object()


def _account_traits(pk: str, image: Mapping[str, Any]) -> dict[str, Any]:
    try:
        blob = image["state"]
        raw = base64.b64decode(blob, validate=True) if isinstance(blob, str) else bytes(blob)
        return codec.decode(raw, AccountState).trait_values()
    except (KeyError, TypeError, ValueError, zlib.error, binascii.Error) as exc:
        raise UndecodableRecord(f"{pk}: traits cannot be decoded ({type(exc).__name__})") from None


def segments_from_stream(
    keys: Mapping[str, Any], image: Mapping[str, Any] | None
) -> Versioned[SegmentRecord] | None:
    """A user's segment record and version in a stream image (USER#<id>/SEGMENTS), or None when
    the record is another item's or the image is absent (an INSERT's old image)."""
    pk, sk = str(keys.get("pk", "")), str(keys.get("sk", ""))
    if sk != "SEGMENTS" or not pk.startswith("USER#") or not image:
        return None
    try:
        blob = image["seg"]
        raw = base64.b64decode(blob, validate=True) if isinstance(blob, str) else bytes(blob)
        return Versioned(codec.decode(raw, SegmentRecord), int(image["v"]))
    except (KeyError, TypeError, ValueError, zlib.error, binascii.Error) as exc:
        raise UndecodableRecord(f"{pk}: segment record cannot be decoded ({type(exc).__name__})") from None
