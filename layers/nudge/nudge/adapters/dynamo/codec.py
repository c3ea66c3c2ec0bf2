"""State is stored as zlib-compressed JSON: a user's state is mostly repeated keys and numbers,
which compress 3-5x, and DynamoDB bills writes by the kilobyte. And the size of an item, as
DynamoDB counts it against its 400 KB limit and bills it."""

from __future__ import annotations

import zlib
from typing import Any, TypeVar

from pydantic import BaseModel

M = TypeVar("M", bound=BaseModel)


def encode(model: BaseModel) -> bytes:
    return zlib.compress(model.model_dump_json().encode(), 6)


def decode(blob: bytes, model: type[M]) -> M:
    return model.model_validate_json(zlib.decompress(blob))


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
