"""Where handlers get `now`. Lambdas use the wall clock; the local stack installs a simulated one."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

_source: Callable[[], datetime] = lambda: datetime.now(UTC)  # noqa: E731


def now() -> datetime:
    return _source()


def install(source: Callable[[], datetime]) -> None:
    global _source
    _source = source
