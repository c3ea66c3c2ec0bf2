"""State is stored as zlib-compressed JSON: a user's state is mostly repeated keys and numbers,
which compress 3-5x, and DynamoDB bills writes by the kilobyte."""

from __future__ import annotations

import zlib
from typing import TypeVar

from pydantic import BaseModel

M = TypeVar("M", bound=BaseModel)


def encode(model: BaseModel) -> bytes:
    return zlib.compress(model.model_dump_json().encode(), 6)


def decode(blob: bytes, model: type[M]) -> M:
    return model.model_validate_json(zlib.decompress(blob))
