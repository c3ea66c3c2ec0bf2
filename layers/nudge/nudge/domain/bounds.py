"""Traits judged against their bounds (nudge.model.limits), one message at a time; and the one
bound the fold applies by dropping the oldest (`cap_unplanned`).

Rules and templates read traits by name, so none may be dropped to make room: a message that would
pass a bound is refused, with an error naming the bound, the limit and the fix, and nothing of it
is kept; the other messages of the request are not held up. Two kinds of check:

- `trait_problems`: what a message's traits are on their own (a name too long, a value too large);
- `TraitNames`: how many distinct names a user (or account) keeps, message after message in the
  order of the request, starting from the stored state.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any, Literal

from nudge.model.limits import (
    TRAIT_NAME_CHARS,
    TRAIT_VALUE_BYTES,
    TRAITS_PER_ACCOUNT,
    TRAITS_PER_USER,
    UNPLANNED_EVENTS_KEPT,
)
from nudge.model.state import EventStats
from nudge.rulebook.plan import TrackingPlan

Owner = Literal["user", "account"]
# How much of a refused trait name an error quotes: enough to find it, never a whole hostile key.
_QUOTED = 40


def trait_problems(traits: dict[str, Any]) -> list[tuple[str, str]]:
    """(field, message) for each trait whose name or value is over its bound."""
    problems: list[tuple[str, str]] = []
    for name, value in traits.items():
        if len(name) > TRAIT_NAME_CHARS:
            problems.append(
                (
                    "traits",
                    f"trait name '{_quote(name)}' is {len(name)} characters; trait names are at most "
                    f"{TRAIT_NAME_CHARS} (TRAIT_NAME_CHARS): use a shorter name",
                )
            )
            continue
        size = _json_bytes(value)
        if size > TRAIT_VALUE_BYTES:
            problems.append(
                (
                    f"traits.{name}",
                    f"trait '{name}' is {size:,} bytes as JSON; a trait value is at most "
                    f"{TRAIT_VALUE_BYTES:,} (TRAIT_VALUE_BYTES): keep large data in your own store and "
                    "send its id or URL",
                )
            )
    return problems


class TraitNames:
    """The distinct trait names a user or account keeps, and whether a message may add more."""

    def __init__(self, kept: Iterable[str], owner: Owner) -> None:
        self.names = set(kept)
        self.owner = owner
        self.cap = TRAITS_PER_USER if owner == "user" else TRAITS_PER_ACCOUNT

    def admit(self, names: Iterable[str]) -> str | None:
        """None, and the names counted from now on; or why the message is refused (nothing counted)."""
        new = set(names) - self.names
        if not new or len(self.names) + len(new) <= self.cap:
            self.names |= new
            return None
        bound = "TRAITS_PER_USER" if self.owner == "user" else "TRAITS_PER_ACCOUNT"
        return (
            f"{len(new)} new trait name(s) would give this {self.owner} {len(self.names) + len(new)} "
            f"traits; at most {self.cap} are kept ({bound}): set values of the traits it has, or keep "
            "such data in your own store"
        )


def cap_unplanned(events: dict[str, EventStats], plan: TrackingPlan) -> None:
    """Keep (in place) the UNPLANNED_EVENTS_KEPT events outside the plan seen most recently (ties
    by name), so which are kept does not depend on arrival order. No rule reads an unplanned event
    (lint knows planned events only), so dropping one loses nothing a rule reads; one seen again
    starts counting afresh."""
    unplanned = [name for name in events if name not in plan.events]
    if len(unplanned) <= UNPLANNED_EVENTS_KEPT:
        return
    unplanned.sort(key=lambda name: (events[name].last, name), reverse=True)
    for name in unplanned[UNPLANNED_EVENTS_KEPT:]:
        del events[name]


def _json_bytes(value: Any) -> int:
    # Compact, as the state stores it; non-JSON values (datetimes from a typed trait) as text.
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str).encode())


def _quote(name: str) -> str:
    return name if len(name) <= _QUOTED else name[:_QUOTED] + "…"
