"""Export (right of access): what Nudge holds on one user, as one JSON-ready document, read through the
same stores erasure deletes from, so the two always cover the same items.

- usage: the usage state (traits, counts, milestones, sessions, account membership, kept context);
- segments: the segment record (lifecycle segment and its history, pending deferrals);
- delivery: the delivery record (recent sends, last send per rule, unsubscribes);
- decisions: every ledger entry of the user (sent, suppressed, held out, deferred...);
- account: the account the user belongs to and its traits, when they belong to one;
- in_app: the person's in-app messages still stored, with their status and survey answers;
- merged: the same (but account) for each id merged into the person (anonymous devices, userIds
  aliased into them, and theirs in turn), labelled with its id: erasure deletes those too.

The ids are erasure's (`erasure.chain_of`, `erasure.ids_of`): asked an id merged away (its state a
pointer), the export is of the person it was merged into, the whole of them as erasure would
delete, and `merged_into` names that person, so the admin knows which profile answered.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from nudge.ports import Inbox, Ledger, SegmentStore, UsageStore
from nudge.services.erasure import chain_of, ids_of


@dataclass(frozen=True)
class HeldOn:
    """What is stored under one id."""

    user_id: str
    usage: dict[str, Any] | None
    segments: dict[str, Any] | None
    delivery: dict[str, Any] | None
    decisions: list[dict[str, Any]]
    account_id: str | None

    @property
    def found(self) -> bool:
        return bool(self.usage or self.segments or self.delivery or self.decisions)

    def as_json(self) -> dict[str, Any]:
        return {
            "user_id": self.user_id,
            "usage": self.usage,
            "segments": self.segments,
            "delivery": self.delivery,
            "decisions": self.decisions,
        }


@dataclass(frozen=True)
class UserExport:
    user_id: str  # the id asked for
    found: bool
    usage: dict[str, Any] | None
    segments: dict[str, Any] | None
    delivery: dict[str, Any] | None
    decisions: list[dict[str, Any]]
    account: dict[str, Any] | None
    # The person the asked id was merged into (whose data this is), or None when it was not.
    merged_into: str | None = None
    # Each id merged into the person, in erasure's order: {user_id, usage, segments, delivery, decisions}.
    merged: tuple[dict[str, Any], ...] = ()
    # The person's in-app messages, expired ones the table's TTL has not removed yet included.
    in_app: tuple[dict[str, Any], ...] = ()


# Listing "live at the epoch" lists every message stored; this many at most (an inbox is bounded by
# the decisions its rules can make within the longest expiry).
_EVERY = datetime.fromtimestamp(0, UTC)
_EXPORTED_MESSAGES = 10_000


def export_user(
    user_id: str,
    *,
    usage: UsageStore,
    segments: SegmentStore,
    ledger: Ledger,
    inbox: Inbox | None = None,
) -> UserExport:
    chain = chain_of(user_id, usage)
    person = chain[-1]
    ids = ids_of(chain, usage)
    held = {i: _held_on(i, usage=usage, segments=segments, ledger=ledger) for i in ids}
    own = held[person]
    messages = inbox.list(person, _EVERY, _EXPORTED_MESSAGES) if inbox is not None else []
    account: dict[str, Any] | None = None
    if own.account_id:
        loaded = usage.load_account(own.account_id)
        traits = {k: s.v for k, s in loaded.value.traits.items()} if loaded is not None else {}
        account = {"account_id": own.account_id, "traits": traits}
    return UserExport(
        user_id=user_id,
        found=any(h.found for h in held.values()) or bool(messages),
        usage=own.usage,
        segments=own.segments,
        delivery=own.delivery,
        decisions=own.decisions,
        account=account,
        merged_into=person if person != user_id else None,
        merged=tuple(held[i].as_json() for i in ids if i != person),
        in_app=tuple(m.model_dump(mode="json") for m in messages),
    )


def _held_on(user_id: str, *, usage: UsageStore, segments: SegmentStore, ledger: Ledger) -> HeldOn:
    state = usage.load_users([user_id]).get(user_id)
    loaded_record = segments.load([user_id]).get(user_id)
    # The segment store answers a fresh record (version 0) for a user it holds nothing on.
    record = loaded_record if loaded_record is not None and loaded_record.version else None
    held = ledger.load(user_id, None, [])
    kept = held.record.value
    # Unsubscribes are ADDed outside the record's version: a record may hold only those.
    delivery = kept.model_dump(mode="json") if held.record.version or kept.unsubscribed else None
    entries = sorted(ledger.entries_of(user_id), key=lambda e: (e.recorded_at, e.decision.decision_id))
    return HeldOn(
        user_id=user_id,
        usage=state.value.model_dump(mode="json") if state is not None else None,
        segments=record.value.model_dump(mode="json") if record is not None else None,
        delivery=delivery,
        decisions=[e.model_dump(mode="json") for e in entries],
        account_id=state.value.account_id if state is not None else None,
    )
