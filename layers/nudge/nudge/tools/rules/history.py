"""An NDJSON history as `nudge rules explain` and `backtest` read it, and the times they print.

A file that cannot be read, or a line that is not JSON, is one line on stderr and exit 1; a
message that does not validate is skipped (ingest would refuse it outright) and said briefly.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter, ValidationError

from nudge.model.messages import Message
from nudge.tools.samples.ndjson import NdjsonError, read_ndjson

_MESSAGE: TypeAdapter[Message] = TypeAdapter(Message)


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def read_history(path: Path) -> list[dict[str, Any]] | None:
    """The file's raw messages; None (and why, on stderr) when it cannot be read as NDJSON."""
    try:
        return list(read_ndjson(path))
    except (NdjsonError, OSError) as exc:
        _cannot_read(path, exc)
        return None


def read_messages(path: Path) -> tuple[list[Message], list[str]] | None:
    """The file's valid messages and skipped lines (as `parse_messages`), validated as they are
    read; None (and why, on stderr) when it cannot be read as NDJSON."""
    try:
        return parse_messages(read_ndjson(path), str(path))
    except (NdjsonError, OSError) as exc:
        _cannot_read(path, exc)
        return None


def _cannot_read(path: Path, exc: NdjsonError | OSError) -> None:
    if isinstance(exc, NdjsonError):
        print(exc, file=sys.stderr)  # already file:line: reason
    else:
        print(f"{path}: cannot read: {exc.strerror}", file=sys.stderr)


def parse_messages(raw: Iterable[dict[str, Any]], name: str) -> tuple[list[Message], list[str]]:
    """Valid messages, and `file:line: reason` for each one ingest would refuse outright."""
    messages: list[Message] = []
    skipped: list[str] = []
    for number, item in enumerate(raw, start=1):
        try:
            messages.append(_MESSAGE.validate_python(item))
        except ValidationError as exc:
            first = exc.errors()[0]
            skipped.append(f"{name}:{number}: {'.'.join(map(str, first['loc']))}: {first['msg']}")
    return messages, skipped


def report_skipped(skipped: Sequence[str], shown: int = 5) -> None:
    """Invalid lines are skipped, as ingest would refuse them; say so, briefly."""
    for line in skipped[:shown]:
        print(f"skipped {line}", file=sys.stderr)
    if len(skipped) > shown:
        print(f"... and {len(skipped) - shown} more invalid messages skipped", file=sys.stderr)
