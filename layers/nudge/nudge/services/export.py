"""Export (right of access): what Nudge holds on one user, as one JSON-ready document, read through the
same stores erasure deletes from, so the two always cover the same items.

- usage: the usage state (traits, counts, milestones, sessions, account membership, kept context);
- segments: the segment record (lifecycle segment and its history, pending deferrals);
- delivery: the delivery record (recent sends, last send per rule, unsubscribes);
- decisions: every ledger entry of the user (sent, suppressed, held out, deferred...);
- account: the account the user belongs to and its traits, when they belong to one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from nudge.ports import Ledger, SegmentStore, UsageStore


@dataclass(frozen=True)
class UserExport:
    user_id: str
    found: bool
    usage: dict[str, Any] | None
    segments: dict[str, Any] | None
    delivery: dict[str, Any] | None
    decisions: list[dict[str, Any]]
    account: dict[str, Any] | None


def export_user(user_id: str, *, usage: UsageStore, segments: SegmentStore, ledger: Ledger) -> UserExport:
    state = usage.load_users([user_id]).get(user_id)
    loaded_record = segments.load([user_id]).get(user_id)
    # The segment store answers a fresh record (version 0) for a user it holds nothing on.
    record = loaded_record if loaded_record is not None and loaded_record.version else None
    account_id = state.value.account_id if state is not None else None
    held = ledger.load(user_id, None, [])
    kept = held.record.value
    # Unsubscribes are ADDed outside the record's version: a record may hold only those.
    delivery = kept.model_dump(mode="json") if held.record.version or kept.unsubscribed else None
    entries = sorted(ledger.entries_of(user_id), key=lambda e: (e.recorded_at, e.decision.decision_id))
    account: dict[str, Any] | None = None
    if account_id:
        loaded = usage.load_account(account_id)
        traits = {k: s.v for k, s in loaded.value.traits.items()} if loaded is not None else {}
        account = {"account_id": account_id, "traits": traits}
    return UserExport(
        user_id=user_id,
        found=bool(state or record or delivery or entries),
        usage=state.value.model_dump(mode="json") if state is not None else None,
        segments=record.value.model_dump(mode="json") if record is not None else None,
        delivery=delivery,
        decisions=[e.model_dump(mode="json") for e in entries],
        account=account,
    )
