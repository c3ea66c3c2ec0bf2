"""Changes out: one versioned write of a user's segment record (old and new, from the table's
stream) -> the segment entries and exits, band changes and journey conversions it made -> the
event bus."""

from __future__ import annotations

from nudge.domain.changes import changes_between
from nudge.model.changes import Change
from nudge.model.segments import SegmentRecord
from nudge.model.versioned import Versioned
from nudge.ports import ChangePublisher


def announce(
    user_id: str,
    old: Versioned[SegmentRecord] | None,
    new: Versioned[SegmentRecord],
    publisher: ChangePublisher,
) -> list[Change]:
    """Publish what changed between the two versions (nothing when nothing did); what was published."""
    if old is not None and old.version >= new.version:
        return []  # not a newer write (a replay out of order): its changes were announced from it
    changes = changes_between(user_id, old.value if old else None, new.value, new.version)
    if changes:
        publisher.publish(changes)
    return changes
