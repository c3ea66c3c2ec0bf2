"""argparse types the commands share: whole numbers, ports and ISO 8601 times. Each refusal names
the value given and the form expected, and argparse prints it as `nudge <command>: error: ...`."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime


def count(text: str) -> int:
    """A whole number, 0 or more."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {value}")
    return value


def positive(text: str) -> int:
    """A whole number, 1 or more."""
    value = count(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def port(text: str) -> int:
    value = count(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"not a port: {value}")
    return value


def aware(value: datetime) -> datetime:
    # A time without an offset is UTC, as Segment reads timestamps.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def iso_time(text: str) -> datetime:
    """An ISO 8601 time, in UTC (UTC too when it has no offset)."""
    try:
        return aware(datetime.fromisoformat(text))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected an ISO 8601 time like 2026-10-01T00:00:00Z, got {text!r}"
        ) from None
