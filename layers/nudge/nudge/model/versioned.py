"""A stored value with the version it was read at: what every conditional write compares."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Versioned(Generic[T]):
    """A stored value and the version it was read at; version 0 means 'not stored yet'."""

    value: T
    version: int
