"""Channel choice, pure: of the channels a rule names in order of preference, the one to use.

    choose(candidates, traits, blocked, quiet) -> Choice(channel, reason, why)

A rule names its channels in order (`channel: [push, email]`, or `preferred`: every channel).
The user's own preference (the `preferred_channel` trait, one channel or a list) goes first when
the rule names it; the rest keep the rule's order. The first channel the user can receive is used:
one with an address (or device), no suppression, consent, no unsubscribe (`blocked` says, per
channel, which check fails, or "" when none does), and outside the user's quiet hours (`quiet`:
the channels whose quiet hours hold now). When every receivable channel is quiet, the first of them
is chosen and the quiet hours are dealt with as for a single channel (deferred or dropped). When
none is receivable, the first channel is chosen with its reason: a rule naming one channel is
judged exactly as before.

`why` says it for the ledger, one `channel: verdict` per channel looked at, in order:
"push: no_address; email: chosen" or "email: chosen (preferred_channel)".
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

PREFERENCE_TRAIT = "preferred_channel"


@dataclass(frozen=True)
class Choice:
    channel: str
    reason: str  # "" when the channel can be used; else why not (the first channel's reason)
    why: str  # for the ledger: every channel looked at and its verdict, in order


def preference(traits: Mapping[str, Any]) -> list[str]:
    """The user's own order of channels from the `preferred_channel` trait (a name or a list)."""
    value = traits.get(PREFERENCE_TRAIT)
    if isinstance(value, str):
        return [value.strip().lower()]
    if isinstance(value, list | tuple):
        return [v.strip().lower() for v in value if isinstance(v, str)]
    return []


def ordered(candidates: Sequence[str], traits: Mapping[str, Any]) -> tuple[list[str], bool]:
    """The rule's channels with the user's preferred ones first; True when that moved anything."""
    wanted = [c for c in preference(traits) if c in candidates]
    order = list(dict.fromkeys([*wanted, *candidates]))
    return order, order != list(dict.fromkeys(candidates))


def choose(
    candidates: Sequence[str],
    traits: Mapping[str, Any],
    blocked: Callable[[str], str],
    quiet: Collection[str] = (),
) -> Choice:
    if not candidates:
        raise ValueError("a message decision names at least one channel")
    order, moved = ordered(candidates, traits)
    looked: list[str] = []
    first_quiet: str | None = None
    for channel in order:
        reason = blocked(channel)
        if reason:
            looked.append(f"{channel}: {reason}")
            continue
        if channel in quiet:
            looked.append(f"{channel}: quiet_hours")
            first_quiet = first_quiet or channel
            continue
        return Choice(channel, "", _why(order, looked, channel, moved))
    if first_quiet is not None:
        # Every receivable channel is in its quiet hours: the first of them waits (or drops).
        return Choice(first_quiet, "", _why(order, looked, first_quiet, moved))
    first = order[0]
    return Choice(first, blocked(first), "; ".join(looked) if len(order) > 1 else "")


def _why(order: list[str], looked: list[str], chosen: str, moved: bool) -> str:
    if len(order) == 1 or (not looked and not moved):
        return ""  # the rule's only or first choice: nothing to explain
    mark = " (preferred_channel)" if moved and chosen == order[0] else ""
    return "; ".join([*looked, f"{chosen}: chosen{mark}"])
