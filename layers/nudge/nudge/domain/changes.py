"""Segment, score-band and journey changes, pure: a user's segment record before and after one
versioned write -> the changes to announce (nudge.model.changes).

    segment A -> B      Segment Exited (A, next B), then Segment Entered (B, previous A)
    none -> B           Segment Entered (the user's first segment)
    band x -> y         Score Band Changed (both known: a record written before bands were kept
                        has none, and its first band is no change)
    converted_at set    Journey Converted, once per instance (journey, key, run) whose conversion
                        this write recorded; in instance key order

Derived from the record's own versions (the stream's old and new images), so a write that changed
nothing announces nothing, and each change is announced from exactly one write.
"""

from __future__ import annotations

from nudge.model.changes import Change, change_id, journey_converted
from nudge.model.segments import SegmentRecord


def changes_between(
    user_id: str, old: SegmentRecord | None, new: SegmentRecord, version: int
) -> list[Change]:
    before = old.segments.segment if old else None
    after = new.segments.segment
    at = new.segments.since
    account = new.account_id
    origin = f"segments:v{version}"
    found: list[Change] = []
    if before != after and at is not None:
        if before:
            found.append(
                Change(
                    detail_type="Segment Exited",
                    at=at,
                    detail={
                        "change_id": change_id(user_id, origin, "Segment Exited"),
                        "user_id": user_id,
                        "account_id": account,
                        "segment": before,
                        "next_segment": after,
                        "at": at.isoformat(),
                    },
                )
            )
        if after:
            found.append(
                Change(
                    detail_type="Segment Entered",
                    at=at,
                    detail={
                        "change_id": change_id(user_id, origin, "Segment Entered"),
                        "user_id": user_id,
                        "account_id": account,
                        "segment": after,
                        "previous_segment": before,
                        "at": at.isoformat(),
                    },
                )
            )
    old_band = old.band if old else None
    if old_band and new.band and old_band != new.band and new.band_since is not None:
        found.append(
            Change(
                detail_type="Score Band Changed",
                at=new.band_since,
                detail={
                    "change_id": change_id(user_id, origin, "Score Band Changed"),
                    "user_id": user_id,
                    "account_id": account,
                    "from_band": old_band,
                    "to_band": new.band,
                    "at": new.band_since.isoformat(),
                },
            )
        )
    return found + _conversions(user_id, old, new)


def _conversions(user_id: str, old: SegmentRecord | None, new: SegmentRecord) -> list[Change]:
    before = old.journeys if old else {}
    found: list[Change] = []
    for key, instance in sorted(new.journeys.items()):
        if instance.converted_at is None:
            continue
        was = before.get(key)
        if was is not None and was.run == instance.run and was.converted_at is not None:
            continue  # announced from the write that converted it
        found.append(
            journey_converted(
                user_id,
                new.account_id,
                instance.journey,
                f"{key}#{instance.run}",
                instance.goal,
                instance.entered_at,
                instance.converted_at,
                instance.variant,
            )
        )
    return found
