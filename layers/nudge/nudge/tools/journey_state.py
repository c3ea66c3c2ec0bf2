"""A snapshot of journey instances, as JSON lines: what `nudge rules lint --state FILE` reads and
`nudge journeys snapshot` writes.

One line per user with journey instances, as the segment record keeps them
(nudge.model.segments.SegmentRecord.journeys, fields of nudge.model.journeys.JourneyInstance):

    {"user": "ann", "journeys": {"declining_rescue": {"journey": "declining_rescue", "step": "pause",
     "step_since": "2026-11-02T09:00:00Z", "entered_at": "2026-11-02T09:00:00Z", ...}}}

Blank lines and lines starting with # are skipped. Holds user ids and journey positions only: no
address, phone number or trait.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError
from pydantic import ValidationError

from nudge.adapters.dynamo.snapshot import scan_journeys
from nudge.model.journeys import JourneyInstance
from nudge.tools.local_source import SourceError, local_dynamo


class StateFileError(ValueError):
    """A snapshot line that cannot be read: the message names the file and line, and the fix."""


def state_line(user: str, journeys: dict[str, JourneyInstance]) -> str:
    body = {k: i.model_dump(mode="json", exclude_defaults=True) for k, i in sorted(journeys.items())}
    return json.dumps({"user": user, "journeys": body}, separators=(",", ":"), sort_keys=True)


def write_state(records: Iterable[tuple[str, dict[str, JourneyInstance]]], out: Any) -> int:
    """Writes one line per user with instances; returns how many instances were written."""
    count = 0
    for user, journeys in records:
        if journeys:
            out.write(state_line(user, journeys) + "\n")
            count += len(journeys)
    return count


def read_state(path: Path) -> Iterator[tuple[str, JourneyInstance]]:
    """(user, instance) for every instance of the file, refusing a bad line by file:line."""
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            text = line.strip()
            if not text or text.startswith("#"):
                continue
            where = f"{path}:{number}"
            try:
                row = json.loads(text)
            except json.JSONDecodeError as exc:
                raise StateFileError(
                    f"{where}: not JSON ({exc.msg}); each line is one user's object"
                ) from exc
            if not isinstance(row, dict) or not isinstance(row.get("user"), str):
                raise StateFileError(
                    f'{where}: each line needs "user" (a string) and "journeys" (an object of instances); '
                    "make the file with `nudge journeys snapshot`"
                )
            journeys = row.get("journeys") or {}
            if not isinstance(journeys, dict):
                raise StateFileError(f'{where}: "journeys" must be an object of instance key -> instance')
            for key, body in journeys.items():
                try:
                    yield row["user"], JourneyInstance.model_validate(body)
                except ValidationError as exc:
                    problem = exc.errors()[0]
                    field = ".".join(str(p) for p in problem["loc"]) or "instance"
                    raise StateFileError(f"{where}: instance {key!r}: {field}: {problem['msg']}") from exc


def run_snapshot(args: Any) -> int:
    """`nudge journeys snapshot --local URL | --table NAME [--out FILE]`."""
    try:
        if args.local:
            client, where = local_dynamo(args.local)
            table = where["usage_table"]
        else:
            client, table = boto3.client("dynamodb"), args.table
        records = scan_journeys(client, table)
        if args.out is None:
            count = write_state(records, sys.stdout)
        else:
            with args.out.open("w", encoding="utf-8") as out:
                count = write_state(records, out)
    except SourceError as exc:
        print(f"nudge journeys snapshot: {exc}", file=sys.stderr)
        return 1
    except (ClientError, BotoCoreError) as exc:
        print(f"nudge journeys snapshot: cannot read {table}: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"nudge journeys snapshot: cannot write {args.out}: {exc.strerror}", file=sys.stderr)
        return 1
    if args.out is not None:
        print(f"wrote {count} journey instances to {args.out}", file=sys.stderr)
    return 0
