"""Where handlers get `now`. Lambdas use the wall clock; the local stack and tests install another
one for a while with `installed`, which puts the previous one back, so no test leaves its clock
behind for the next."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

Source = Callable[[], datetime]


def wall_clock() -> datetime:
    return datetime.now(UTC)


_source: Source = wall_clock


def now() -> datetime:
    return _source()


def current() -> Source:
    """The source `now()` answers from: `installed(current())` puts it back after a block, whatever
    the block installed and never took out."""
    return _source


@contextmanager
def installed(source: Source) -> Iterator[None]:
    """`now()` answers from `source` inside the block; the clock before it comes back after."""
    global _source
    previous, _source = _source, source
    try:
        yield
    finally:
        _source = previous
