"""In-memory SoftBounces: the DynamoDB one's versioned semantics."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from nudge.model.errors import StateConflict
from nudge.model.versioned import Versioned


class MemorySoftBounces:
    def __init__(self) -> None:
        self.items: dict[str, tuple[int, list[tuple[str, datetime]], datetime]] = {}

    def load(self, key: str) -> Versioned[list[tuple[str, datetime]]]:
        if key not in self.items:
            return Versioned([], 0)
        version, bounces, _ = self.items[key]
        return Versioned(list(bounces), version)

    def save(
        self, key: str, bounces: Sequence[tuple[str, datetime]], version: int, expires_at: datetime
    ) -> None:
        current = self.items[key][0] if key in self.items else 0
        if current != version:
            raise StateConflict("soft bounces of an address changed meanwhile")
        self.items[key] = (version + 1, list(bounces), expires_at)
