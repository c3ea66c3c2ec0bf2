"""Identity merge: one person's usage from two profiles, as if it had been one from the start.

`merge_states(into, other, plan)` is pure and, like the fold, order-independent and idempotent:

- counts (per event, per day) add up; first/last seen, first/last of each event and feature and
  the last meaningful use are min/max; a feature's days of use are a union;
- traits, context and account membership: the newest stamp wins (Stamped.newer_than), per key;
- sessions: both profiles' intervals re-merged with the plan's session gap, by the same rule as
  `fold.add_to_sessions` (an interval within the gap of another joins it), so the result is the
  clusters of the union of the event times; active days and dedupe digests are unions;
- milestones and weekly figures are derived afresh, by the fold's own helpers.

`into` keeps its id and lists `other`'s (and whatever `other` had merged) in `merged`: merging an
id already listed returns `into` unchanged. Exactly: for histories A and B (disjoint messageIds)
folded at one `now`, `merge_states(fold(A), fold(B))` equals `fold(A + B)` but for `merged`.
A message counted under both ids (one messageId sent once anonymously and once with the userId)
would count twice; no SDK sends one message under two identities.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable
from datetime import datetime

from nudge.domain.bounds import cap_unplanned
from nudge.domain.fold import DIGEST_BYTES, milestones_of, weeks_of
from nudge.model.limits import MERGED_KEPT, UNPLANNED_EVENTS_KEPT
from nudge.model.state import Stamped, UserState
from nudge.rulebook.plan import TrackingPlan


def merge_states(into: UserState, other: UserState, plan: TrackingPlan) -> UserState:
    """`into` with `other`'s history merged in (neither is changed)."""
    if other.user_id == into.user_id or other.user_id in into.merged:
        return into
    events = dict(into.events)
    for name, stats in other.events.items():
        events[name] = events[name].merged(stats) if name in events else stats
    if len(events) > UNPLANNED_EVENTS_KEPT:
        cap_unplanned(events, plan)  # as the fold would, folding both histories as one
    features = dict(into.features)
    for name, fstats in other.features.items():
        features[name] = features[name].merged(fstats) if name in features else fstats
    account = into.account
    if other.account is not None and other.account.newer_than(account):
        account = other.account
    merged = [
        *into.merged,
        *(i for i in dict.fromkeys([other.user_id, *other.merged]) if i not in into.merged),
    ]
    new = into.model_copy(
        update={
            "first_seen": _earliest(into.first_seen, other.first_seen),
            "last_seen": _latest(into.last_seen, other.last_seen),
            "last_meaningful": _latest(into.last_meaningful, other.last_meaningful),
            "events": events,
            "features": features,
            "traits": _newest(into.traits, other.traits),
            "context": _newest(into.context, other.context),
            "account": account,
            "sessions": merge_sessions(into.sessions, other.sessions, int(plan.session_gap.total_seconds())),
            "active_days": sorted(set(into.active_days) | set(other.active_days)),
            "seen": merge_seen(into.seen, other.seen),
            "merged": merged[-MERGED_KEPT:],
            # The older of the two: the next fold trims what the other kept from further back.
            "kept_from": min(into.kept_from, other.kept_from),
        }
    )
    new.milestones = milestones_of(new, plan)
    new.weeks = weeks_of(new)
    return new


def merge_sessions(
    first: Iterable[tuple[int, int]], second: Iterable[tuple[int, int]], gap: int
) -> list[tuple[int, int]]:
    """Two sets of session intervals as one: sorted by start, an interval that starts within `gap`
    of the end of the one before joins it (the criterion `add_to_sessions` applies to one time)."""
    out: list[tuple[int, int]] = []
    for start, end in sorted([*first, *second]):
        if out and start - gap <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


def merge_seen(first: dict[int, str], second: dict[int, str]) -> dict[int, str]:
    """The dedupe digests of both, per day received (the fold trims them to its window after)."""
    days: dict[int, set[bytes]] = {}
    for stored in (first, second):
        for day, blob in stored.items():
            raw = base64.b64decode(blob)
            days.setdefault(day, set()).update(
                raw[i : i + DIGEST_BYTES] for i in range(0, len(raw), DIGEST_BYTES)
            )
    return {day: base64.b64encode(b"".join(sorted(keys))).decode() for day, keys in sorted(days.items())}


def _newest(kept: dict[str, Stamped], other: dict[str, Stamped]) -> dict[str, Stamped]:
    out = dict(kept)
    for key, stamped in other.items():
        if stamped.newer_than(out.get(key)):
            out[key] = stamped
    return out


def _earliest(a: datetime | None, b: datetime | None) -> datetime | None:
    return b if a is None else a if b is None else min(a, b)


def _latest(a: datetime | None, b: datetime | None) -> datetime | None:
    return b if a is None else a if b is None else max(a, b)
