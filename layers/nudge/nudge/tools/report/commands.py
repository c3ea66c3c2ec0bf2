"""`nudge report`: write the HTML report, from the deployed tables or a running local stack."""

from __future__ import annotations

import argparse
import sys
import urllib.error
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3

from nudge.adapters.dynamo.snapshot import snapshot_from_tables
from nudge.bootstrap.ruleset import load_rules_or_explain
from nudge.domain.report import build
from nudge.settings import get_settings
from nudge.tools.report.html import render

DEFAULT_OUT = Path("nudge-report.html")


def register(sub: Any) -> None:
    report = sub.add_parser(
        "report",
        help="write the HTML report (segments, transitions, funnel, messages, lift, segment quality)",
        description="One self-contained HTML file, from the tables named by NUDGE_USAGE_TABLE and "
        "NUDGE_LEDGER_TABLE (AWS credentials from the environment), or from a running `nudge serve`.",
    )
    report.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help=f"where to write it (default {DEFAULT_OUT})"
    )
    report.add_argument("--local", metavar="URL", help="a running local stack, e.g. http://127.0.0.1:8080")
    report.add_argument(
        "--rules", type=Path, default=None, help="the rules directory (default: NUDGE_RULES_DIR)"
    )
    report.set_defaults(run=run_report)


def run_report(args: argparse.Namespace) -> int:
    try:
        html = _from_local(args.local) if args.local else _from_tables(args.rules)
    except (OSError, urllib.error.URLError, ValueError) as exc:
        print(f"nudge report: {exc}", file=sys.stderr)
        return 1
    try:
        args.out.write_text(html, encoding="utf-8")
    except OSError as exc:
        print(f"nudge report: cannot write {args.out}: {exc.strerror}", file=sys.stderr)
        return 1
    print(f"wrote {args.out.resolve()}")
    return 0


def _from_local(url: str) -> str:
    with urllib.request.urlopen(f"{url.rstrip('/')}/_local/report", timeout=600) as response:  # noqa: S310 - a local URL the user gave
        return str(response.read().decode("utf-8"))


def _from_tables(rules_dir: Path | None) -> str:

    settings = get_settings()
    rules = load_rules_or_explain(rules_dir or settings.rules_dir)
    snapshot = snapshot_from_tables(boto3.client("dynamodb"), settings.usage_table, settings.ledger_table)
    source = f"tables {settings.usage_table} and {settings.ledger_table}"
    return render(build(rules, snapshot, datetime.now(UTC), source))
