"""NDJSON files of Segment messages: one JSON object a line. A name ending in .gz is gzip-compressed."""

from __future__ import annotations

import gzip
import json
import os
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any, Literal


class NdjsonError(ValueError):
    """A line that is not a JSON object; the message reads `file:line: reason`."""

    def __init__(self, path: str, line: int, reason: str) -> None:
        super().__init__(f"{path}:{line}: {reason}")
        self.path = path
        self.line = line
        self.reason = reason


def dump_ndjson(stream: IO[str], messages: Iterable[Mapping[str, Any]]) -> int:
    """Write each message as one compact JSON line; return how many were written."""
    count = 0
    dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
    for message in messages:
        stream.write(dumps(message))
        stream.write("\n")
        count += 1
    return count


def write_ndjson(path: str | Path, messages: Iterable[Mapping[str, Any]]) -> int:
    """Write messages to `path` and return the count.

    The file is written beside its destination and renamed into place, so a failure half-way
    (or a generator that raises) never leaves a truncated file that looks complete.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    # mkstemp makes the file private; give it the mode of the file it replaces, or a plain 0644.
    os.chmod(tmp, target.stat().st_mode & 0o777 if target.exists() else 0o644)
    try:
        with _open(tmp, "w", gz=target.suffix == ".gz") as stream:
            count = dump_ndjson(stream, messages)
        tmp.replace(target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return count


def read_ndjson(path: str | Path) -> Iterator[dict[str, Any]]:
    """Yield the JSON object on each line; blank lines are skipped; a bad line raises NdjsonError."""
    target = Path(path)
    with _open(target, "r", gz=target.suffix == ".gz") as stream:
        yield from iter_ndjson(stream, str(path))


def iter_ndjson(stream: Iterable[str], name: str = "<stdin>") -> Iterator[dict[str, Any]]:
    """Parse an already open text stream; `name` is used in error messages."""
    for number, line in enumerate(stream, start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            raise NdjsonError(name, number, f"invalid JSON: {exc.msg} (column {exc.colno})") from None
        if not isinstance(value, dict):
            raise NdjsonError(name, number, f"expected a JSON object, got {_kind(value)}")
        yield value


def _open(path: Path, mode: Literal["r", "w"], *, gz: bool) -> IO[str]:
    if gz:
        if mode == "r":
            return gzip.open(path, "rt", encoding="utf-8", newline="\n")
        return gzip.open(path, "wt", encoding="utf-8", newline="\n")
    return path.open(mode, encoding="utf-8", newline="\n")


def _kind(value: Any) -> str:
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    return "a number"
