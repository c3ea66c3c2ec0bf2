"""What of one person's messages their stored state has room for (nudge.model.limits).

Ingest writes each person's state once per request. Before that write two bounds are judged,
message by message in the order of the request, so a message that would pass one gets its own
error and the person's other messages, and the other people of the request, are still written:

- the traits a person keeps (`refused_for_traits`: how many distinct names);
- the item that holds the state (`fitting`): when the store refuses the state as too large
  (ItemTooLarge, Nudge's bound or DynamoDB's own), the messages that pushed it over are found by
  galloping and bisection (the fold of a split is the fold of the whole, so prefixes fold
  incrementally) and left out, and the rest is written. This is the slow path: it runs only after
  a refusal, and measures at most PROBES states.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from nudge.domain.bounds import TraitNames
from nudge.model.limits import MAX_ITEM_BYTES
from nudge.model.messages import Identify, Message
from nudge.model.state import UserState
from nudge.services.identity import Issue

Fold = Callable[[UserState, Sequence[tuple[int, Message]]], UserState]
Fits = Callable[[UserState], bool]

# How many candidate states the slow path may measure (an encode each, ~10 ms near the bound):
# messages not judged within it are refused alike (REST), so a batch of thousands of messages for a
# user at the bound costs a bounded time, not a search per message.
PROBES = 24

OVER = (
    "not kept: it would take this user's stored state past {limit:,} bytes (MAX_ITEM_BYTES; "
    "DynamoDB stores at most 400 KB per item). The user holds too much: send fewer or smaller "
    "traits, fewer distinct event names and property values; their other messages were kept"
)
FULL = (
    "not kept: this user's stored state is already at its size bound ({limit:,} bytes, "
    "MAX_ITEM_BYTES) and this message would add to it"
)
REST = (
    "not kept: this user's stored state reached its size bound ({limit:,} bytes, MAX_ITEM_BYTES) "
    "with the messages before it in this request; send fewer or smaller messages for this user"
)
ACCOUNT_FULL = (
    "accepted, but the account's traits were not changed: its stored traits are at their size bound "
    "({limit:,} bytes, MAX_ITEM_BYTES); the user joined the account"
)
MERGE_OVER = (
    "not linked and not kept: merging the profile this {role} names would take the user's stored "
    "state past {limit:,} bytes (MAX_ITEM_BYTES); the user's other messages were kept"
)


def refused_for_traits(state: UserState, messages: Sequence[tuple[int, Message]]) -> list[Issue]:
    """The identify messages that would give the user more distinct traits than they may keep,
    judged in order from the stored (and merged) state; the others count towards the bound."""
    names = TraitNames(state.traits, "user")
    refused: list[Issue] = []
    for index, message in messages:
        if isinstance(message, Identify):
            problem = names.admit(message.traits.model_dump(exclude_unset=True))
            if problem is not None:
                refused.append(Issue(index, "traits", problem))
    return refused


def fitting(
    base: UserState, messages: Sequence[tuple[int, Message]], fold: Fold, fits: Fits
) -> tuple[UserState, list[int], list[int]]:
    """`base` (which fits) folded with as many of `messages` as keep it within the bound, in order:
    each message that would push it over is left out. The state, the indexes left out, and those
    not judged (PROBES ran out)."""
    probes = 0

    def measured(state: UserState) -> bool:
        nonlocal probes
        probes += 1
        return fits(state)

    state, rest = base, list(messages)
    left_out: list[int] = []
    while rest and probes < PROBES:
        whole = fold(state, rest)
        if measured(whole):
            return whole, left_out, []
        # The prefix of `lo` messages fits on `state` (as `lo_state`), that of `hi` does not.
        # Galloping first (1, 2, 4... messages): near the bound the next message is often the one.
        lo, hi, lo_state = 0, len(rest), state
        size = 1
        while size < hi and probes < PROBES:
            trial = fold(lo_state, rest[lo:size])
            if not measured(trial):
                hi = size
                break
            lo, lo_state, size = size, trial, 2 * size
        while hi - lo > 1 and probes < PROBES:
            mid = (lo + hi) // 2
            trial = fold(lo_state, rest[lo:mid])
            if measured(trial):
                lo, lo_state = mid, trial
            else:
                hi = mid
        if hi - lo > 1:
            return lo_state, left_out, [index for index, _ in rest[lo:]]
        left_out.append(rest[lo][0])
        state, rest = lo_state, rest[lo + 1 :]
    return state, left_out, [index for index, _ in rest]


def over_issue(index: int, limit: int = MAX_ITEM_BYTES) -> Issue:
    return Issue(index, "message", OVER.format(limit=limit))


def rest_issue(index: int, limit: int = MAX_ITEM_BYTES) -> Issue:
    return Issue(index, "message", REST.format(limit=limit))


def full_issue(index: int, limit: int = MAX_ITEM_BYTES) -> Issue:
    return Issue(index, "message", FULL.format(limit=limit))


def merge_issues(
    messages: Sequence[tuple[int, Message]], absorbed: Sequence[str], limit: int = MAX_ITEM_BYTES
) -> list[Issue]:
    """Errors for the messages that link one of `absorbed` (the profiles merging in)."""
    issues: list[Issue] = []
    for index, message in messages:
        roles = sorted({role for source, _target, role in message.links() if source in absorbed})
        if roles:
            issues.append(Issue(index, roles[0], MERGE_OVER.format(role=roles[0], limit=limit)))
    return issues
