"""The numbers Nudge accepts, keeps and compares.

- Every number in a message is finite: NaN, Infinity and -Infinity (which Python's json reads,
  though JSON has no such tokens) and literals beyond a double's range (1e400 reads as infinity)
  cannot be stored, serialized as JSON, nor compared by a rule.
- Every integer is within +-MAX_SAFE_INTEGER (2**53 - 1): the range RFC 8259 section 6 says JSON
  readers agree on; beyond it JavaScript, DynamoDB's SDKs and durable_rules round or refuse it.
- A trait that is a number (a user's or an account's, at any depth) is within that range whether
  it is integral or not: rules compare traits (`account: {trait: mrr, at_least: 2000}`), and a
  value no real trait takes (an mrr of 1e19) is a sender's bug, not a fact to act on.

The same bounds are what evaluation reads: a stored trait beyond them (kept before they existed)
is treated as missing by the facts that read it (nudge.conditions.facts), never compared.

Cost: checking a message walks it (about 1.5 us for an SDK's message). The ingest API reads bodies
with a NumberWatch, whose hooks see every number as it is parsed; within the request
(`request_scope`), when it saw none that could break the rules, as in ordinary traffic, no message
is walked.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

MAX_SAFE_INTEGER = 2**53 - 1
# The largest finite double: any float but NaN and the infinities is within it.
_FINITE = sys.float_info.max

Path = tuple[str | int, ...]

NOT_FINITE = (
    "is not a finite number (NaN, Infinity, or a literal beyond a double's range such as 1e400): "
    "send a number, or leave the field out"
)
BEYOND_SAFE_INTEGER = (
    f"is an integer beyond ±{MAX_SAFE_INTEGER:,} (2^53 - 1), which JSON readers round: send an id "
    "or a big count as a string"
)
TRAIT_OUT_OF_RANGE = (
    f"is beyond ±{MAX_SAFE_INTEGER:,}, the range of a numeric trait: send the real value "
    "(a rule compares it), or a string if it is not a quantity"
)


def problem(value: int | float, trait: bool = False) -> str | None:
    """What is wrong with one number, or None. `trait`: it is (part of) a trait."""
    if isinstance(value, bool):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return NOT_FINITE
    if -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
        return None
    if trait:
        return TRAIT_OUT_OF_RANGE
    return BEYOND_SAFE_INTEGER if isinstance(value, int) else None


def trait_number_in_range(value: Any) -> bool:
    """Whether a number (as a trait holds it) is one a rule may compare. Not a number: True."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return True
    return -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER  # False for NaN too


class NumberWatch:
    """`json.loads` hooks (parse_int, parse_float, parse_constant) that read numbers as json does
    and note whether any could break the rules above: an integer of 16 characters or more (2^53
    has 16 digits), a float beyond +-MAX_SAFE_INTEGER or not finite, NaN or Infinity. Exact where
    the walk is (it sees every number), so when it saw none, no message read need be walked; the
    hooks run once per number, and SDK messages hold a few.

    An integer of more than 4,300 digits, which Python refuses to read (a ValueError that is not a
    JSON error: once a 500), is read as the smallest integer past the safe range of its sign, so
    the message holding it is refused, naming the field, and the rest of its batch is kept."""

    def __init__(self) -> None:
        self.suspect = False

    def read_int(self, literal: str) -> int:
        if len(literal) > 15:
            self.suspect = True
            try:
                return int(literal)
            except ValueError:
                return -(MAX_SAFE_INTEGER + 1) if literal.startswith("-") else MAX_SAFE_INTEGER + 1
        return int(literal)

    def read_float(self, literal: str) -> float:
        value = float(literal)
        if not -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
            self.suspect = True
        return value

    def read_constant(self, name: str) -> float:
        self.suspect = True
        return float(name)  # NaN, Infinity, -Infinity, as json reads them


# Whether the messages validated now were read by a NumberWatch that saw nothing suspect; None
# outside a request_scope (every message is walked: the CLI, tests, any other caller).
_spared: ContextVar[bool | None] = ContextVar("nudge_numbers_spared", default=None)


@contextmanager
def request_scope() -> Iterator[None]:
    """For the length of one request: `spare_walks` may then spare its messages the walk."""
    token = _spared.set(False)
    try:
        yield
    finally:
        _spared.reset(token)


def spare_walks(watch: NumberWatch) -> None:
    """The messages about to be validated were read by `watch`: within a request_scope, they are
    not walked if it saw no number that could break the rules."""
    if _spared.get() is not None:
        _spared.set(not watch.suspect)


def unsafe_numbers(message: dict[str, Any]) -> list[tuple[Path, str]]:
    """(path, problem) for each number of a message (as JSON gave it) that breaks the rules above.
    Nothing to do when the parse it came from saw no suspect number (`spare_walks`); else the
    common case, all well, is one quick pass over the message (and its traits once more); the
    paths are only worked out when something is wrong."""
    if _spared.get():
        return []
    if _in_range(message, _FINITE) and _traits_in_range(message):
        return []
    found: list[tuple[Path, str]] = []
    context = message.get("context")
    for key, value in message.items():
        if key == "traits" and isinstance(context, dict) and context.get("traits") is value:
            continue  # the context's traits, made the message's own (an identify): named there
        if key == "context" and isinstance(value, dict):
            for name, item in value.items():
                _collect(item, (key, name), MAX_SAFE_INTEGER if name == "traits" else _FINITE, found)
        else:
            _collect(value, (key,), MAX_SAFE_INTEGER if key == "traits" else _FINITE, found)
    return found


def _traits_in_range(message: dict[str, Any]) -> bool:
    """Whether the message's traits (at its root, and in its context) hold no float beyond the
    traits' bound (everything else was checked already)."""
    traits = message.get("traits")
    if isinstance(traits, dict | list) and not _in_range(traits, MAX_SAFE_INTEGER):
        return False
    context = message.get("context")
    if isinstance(context, dict):
        traits = context.get("traits")
        if isinstance(traits, dict | list) and not _in_range(traits, MAX_SAFE_INTEGER):
            return False
    return True


def _in_range(value: dict[Any, Any] | list[Any], bound: float) -> bool:
    """Whether every number in `value` is in range, floats within `bound`: the hot path, one
    type test per value for the strings most messages are made of."""
    for item in value.values() if type(value) is dict else value:
        kind = type(item)
        if kind is str:
            continue
        if kind is dict or kind is list:
            if not _in_range(item, bound):
                return False
        elif kind is int:
            if item > MAX_SAFE_INTEGER or item < -MAX_SAFE_INTEGER:
                return False
        elif kind is float:
            if not -bound <= item <= bound:  # NaN compares false: caught here too
                return False
        elif item is not None and kind is not bool and not _number_clean(item, bound):
            return False
    return True


def _number_clean(value: Any, bound: float) -> bool:
    """A value of some other type: a number (a subclass of int or float) must be in range."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return True
    return problem(value, trait=bound == MAX_SAFE_INTEGER) is None


def _collect(value: Any, path: Path, bound: float, found: list[tuple[Path, str]]) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            _collect(item, (*path, key), bound, found)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _collect(item, (*path, index), bound, found)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        wrong = problem(value, trait=bound == MAX_SAFE_INTEGER)
        if wrong is not None:
            found.append((path, wrong))
