"""The fold's parts kept apart from its main loop: messageId digests (dedupe), declared event
properties (dimension, sum, last), and the trusted construction of state models.

Each changes only the fold's own copies; what it shares with the state folded from stays as it is.
"""

from __future__ import annotations

import hashlib
from binascii import a2b_base64, b2a_base64
from collections.abc import Iterable
from datetime import datetime
from typing import Any, TypeVar

from pydantic import BaseModel

from nudge.model.limits import DIMENSION_VALUES_KEPT, VALUE_CHARS_KEPT
from nudge.model.properties import PropertySpec, accepts, canonical
from nudge.model.state import PropertyStats, Stamped, SumStats, ValueStats, cap_values

DIGEST_BYTES = 8
_M = TypeVar("_M", bound=BaseModel)


def digest(key: str) -> bytes:
    return hashlib.blake2b(key.encode(), digest_size=DIGEST_BYTES).digest()


class Seen:
    """Digests of messageIds by UTC day received; days older than the window are dropped.

    The stored blobs are looked up as they are (one `bytes.find` over their concatenation, at
    8-byte boundaries) and only today's is packed anew, when this fold added to it: a fold costs
    what it adds, not what the window holds."""

    def __init__(self, stored: dict[int, str], today: int, window_days: int) -> None:
        self.today = today
        oldest = today - window_days
        self.stored = {day: blob for day, blob in stored.items() if day >= oldest}
        self.raw = {day: a2b_base64(blob) for day, blob in self.stored.items()}
        self.all = b"".join(self.raw.values())
        self.added: set[bytes] = set()

    def add(self, key: bytes) -> bool:
        """Record a digest; False when it was already seen."""
        if key in self.added:
            return False
        found = self.all.find(key)
        while found >= 0:
            if found % DIGEST_BYTES == 0:
                return False
            found = self.all.find(key, found + 1)
        self.added.add(key)
        return True

    def dump(self, max_seen: int) -> dict[int, str]:
        raw, stored = self.raw, dict(self.stored)
        if self.added:
            raw[self.today] = packed = _inserted(raw.get(self.today, b""), self.added)
            stored[self.today] = b2a_base64(packed, newline=False).decode()
        total = sum(len(blob) for blob in raw.values()) // DIGEST_BYTES
        for day in sorted(raw):
            if total <= max_seen or day == self.today:
                break
            total -= len(raw.pop(day)) // DIGEST_BYTES
            del stored[day]
        return {day: stored[day] for day in sorted(stored)}


def _inserted(raw: bytes, keys: Iterable[bytes]) -> bytes:
    """Sorted digests `raw` with `keys` (none of them in it) inserted in order, each found by
    bisection: a fold adds a few digests to a day that may hold thousands."""
    parts: list[bytes] = []
    start = 0
    for key in sorted(keys):
        low, high = start // DIGEST_BYTES, len(raw) // DIGEST_BYTES
        while low < high:
            middle = (low + high) // 2
            if raw[middle * DIGEST_BYTES : (middle + 1) * DIGEST_BYTES] < key:
                low = middle + 1
            else:
                high = middle
        parts += (raw[start : low * DIGEST_BYTES], key)
        start = low * DIGEST_BYTES
    parts.append(raw[start:])
    return b"".join(parts)


_setattr = object.__setattr__


def built(cls: type[_M], fields: dict[str, Any]) -> _M:
    """A model from values the fold holds valid already, as `model_construct` makes it but without
    its per-field default and alias lookups (the fold's hot path makes several per user): `fields`
    names every field, in the model's order (the order it serializes in)."""
    model = object.__new__(cls)
    _setattr(model, "__dict__", fields)
    _setattr(model, "__pydantic_fields_set__", set(fields))
    _setattr(model, "__pydantic_extra__", None)
    _setattr(model, "__pydantic_private__", None)
    return model


# A number beyond this is no amount a rule could mean: not summed (and the sum stays a small integer).
SUM_LIMIT = 10**15


def keep_properties(
    props: PropertyStats,
    kept: dict[str, PropertySpec],
    values: dict[str, Any],
    at: datetime,
    day: int | None,
    mid: str,
    owned: set[int],
) -> None:
    """One event's declared properties into its PropertyStats (whose dicts are private copies; the
    sum stats and value dailies in them are copied on first change, unless their id is in `owned`).
    A value of the wrong type, or text over VALUE_CHARS_KEPT, is not kept: ingest refused or
    flagged it already. `day` is None for an event older than the kept weeks (counted in totals,
    not per day)."""
    for prop, spec in kept.items():
        value = values.get(prop)
        if value is None or not accepts(spec.type, value):
            continue
        if isinstance(value, str) and len(value) > VALUE_CHARS_KEPT:
            continue
        if spec.dimension:
            key = canonical(value)
            dim = props.values.setdefault(prop, {})
            vstats = dim.get(key)
            if vstats is None:
                daily: dict[int, int] = {}
                vstats = ValueStats(0, at, at, daily)
            else:
                daily = vstats.daily
                if id(daily) not in owned:  # shared with the state folded from: copied once
                    daily = dict(daily)
            owned.add(id(daily))
            if day is not None:
                daily[day] = daily.get(day, 0) + 1
            dim[key] = ValueStats(vstats.count + 1, min(vstats.first, at), max(vstats.last, at), daily)
            if len(dim) > DIMENSION_VALUES_KEPT:
                props.values[prop] = cap_values(dim)
        if spec.sum and abs(value) < SUM_LIMIT:
            micros = round(value * 1_000_000)
            sums = props.sums.get(prop)
            if sums is None or id(sums) not in owned:
                sums = props.sums[prop] = built(
                    SumStats,
                    {"micros": 0, "daily": {}}
                    if sums is None
                    else {"micros": sums.micros, "daily": dict(sums.daily)},
                )
                owned.add(id(sums))
            fields = sums.__dict__  # the fold's own copy: changed in place, without pydantic's __setattr__
            fields["micros"] += micros
            if day is not None:
                fields["daily"][day] = fields["daily"].get(day, 0) + micros
        if spec.last:
            stamped = props.last.get(prop)
            if stamped is None or (at, mid) > (stamped.at, stamped.mid):
                props.last[prop] = built(Stamped, {"v": value, "at": at, "mid": mid})


def private_copy(props: PropertyStats | None) -> PropertyStats:
    """A copy whose dicts may change; the stats in them are shared until keep_properties copies them."""
    if props is None:
        return built(PropertyStats, {"values": {}, "sums": {}, "last": {}})
    return built(
        PropertyStats,
        {
            "values": {dim: dict(by_value) for dim, by_value in props.values.items()},
            "sums": dict(props.sums),
            "last": dict(props.last),
        },
    )


def trim_props(props: PropertyStats, first_day: int) -> PropertyStats | None:
    """`props` without the days before the kept weeks (None: nothing to drop)."""
    old = any(
        min(s.daily, default=first_day) < first_day for dim in props.values.values() for s in dim.values()
    )
    old = old or any(min(s.daily, default=first_day) < first_day for s in props.sums.values())
    if not old:
        return None
    values = {
        dim: {
            v: s._replace(daily={d: n for d, n in s.daily.items() if d >= first_day})
            for v, s in by_value.items()
        }
        for dim, by_value in props.values.items()
    }
    sums = {
        prop: s.model_copy(update={"daily": {d: n for d, n in s.daily.items() if d >= first_day}})
        for prop, s in props.sums.items()
    }
    return props.model_copy(update={"values": values, "sums": sums})
