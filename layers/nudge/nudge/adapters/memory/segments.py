"""The fake SegmentStore: DynamoSegmentStore's semantics, readable as a specification."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from datetime import datetime

from nudge.model.errors import StateConflict
from nudge.model.segments import DuePage, SegmentRecord, bucket_start, due_time
from nudge.model.versioned import Versioned


class MemorySegmentStore:
    """In-memory SegmentStore for unit tests: the same semantics, readable as a specification.

    `reads` counts records handed out by `due` and `load`, `writes` counts saves, so tests can
    check that work grows with the users due."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.records: dict[str, Versioned[SegmentRecord]] = {}
        self.watermark: Versioned[datetime] | None = None
        self.reads = 0
        self.writes = 0

    def load(self, user_ids: Sequence[str]) -> dict[str, Versioned[SegmentRecord]]:
        with self._lock:
            self.reads += len(user_ids)
            return {
                uid: _copy(self.records.get(uid) or Versioned(SegmentRecord(), 0))
                for uid in dict.fromkeys(user_ids)
            }

    def save(self, user_id: str, record: SegmentRecord, version: int, now: datetime) -> None:
        with self._lock:
            current = self.records.get(user_id)
            if (current.version if current else 0) != version:
                raise StateConflict(user_id)
            stored = record.model_copy(deep=True)
            stored.next_check_at = due_time(record.next_check_at)
            self.records[user_id] = Versioned(stored, version + 1)
            self.writes += 1

    def defer(self, user_id: str, at: datetime) -> None:
        with self._lock:
            current = self.records.get(user_id)
            if current is None:
                raise StateConflict(user_id)
            current.value.next_check_at = due_time(at)

    def due(self, since: datetime, now: datetime, page_size: int = 100) -> Iterator[DuePage]:
        with self._lock:
            start = bucket_start(since)
            due = sorted(
                (record.value.next_check_at, uid)
                for uid, record in self.records.items()
                if record.value.next_check_at is not None and start <= record.value.next_check_at <= now
            )
        by_bucket: dict[datetime, list[str]] = {}
        for at, uid in due:
            by_bucket.setdefault(bucket_start(at), []).append(uid)
        for day, ids in sorted(by_bucket.items()):
            for begin in range(0, len(ids), page_size):
                page = ids[begin : begin + page_size]
                self.reads += len(page)
                yield DuePage(day, page)

    def load_watermark(self) -> Versioned[datetime] | None:
        return self.watermark

    def save_watermark(self, through: datetime, version: int, now: datetime) -> None:
        with self._lock:
            if (self.watermark.version if self.watermark else 0) != version:
                raise StateConflict("watermark")
            self.watermark = Versioned(through, version + 1)

    def erase(self, user_id: str) -> int:
        with self._lock:
            return 1 if self.records.pop(user_id, None) is not None else 0


def _copy(record: Versioned[SegmentRecord]) -> Versioned[SegmentRecord]:
    # Callers mutate what they load (they build the next record from it); the fake must not share.
    copied = record.value.model_copy(deep=True)
    copied.next_check_at = record.value.next_check_at
    return Versioned(copied, record.version)
