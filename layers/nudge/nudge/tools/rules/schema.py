"""`nudge rules schema`: write the rule files' JSON Schemas (`nudge.rulebook.schema`) into a folder,
or (--check) say which files there are out of date."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from nudge.rulebook.schema import rule_schemas


def schema_text(schema: dict[str, Any]) -> str:
    """A schema as its file holds it."""
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


def run_schema(args: argparse.Namespace) -> int:
    out: Path = args.out
    schemas = rule_schemas()
    if args.check:
        stale = [
            name
            for name, schema in schemas.items()
            if not (out / name).is_file() or (out / name).read_text(encoding="utf-8") != schema_text(schema)
        ]
        for name in stale:
            print(f"{out / name}: out of date; run `nudge rules schema --out {out}`")
        if not stale:
            print(f"{out}: {len(schemas)} schemas up to date")
        return 1 if stale else 0
    try:
        out.mkdir(parents=True, exist_ok=True)
        for name, schema in schemas.items():
            (out / name).write_text(schema_text(schema), encoding="utf-8")
    except OSError as exc:
        print(f"{out}: cannot write: {exc.strerror}", file=sys.stderr)
        return 1
    for name in schemas:
        print(f"wrote {out / name}")
    return 0
