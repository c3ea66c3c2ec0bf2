"""`nudge sample`: write a generated product history as NDJSON Segment messages."""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import UTC, datetime, timedelta

from nudge import clock
from nudge.tools.args import aware, positive
from nudge.tools.samples.generator import build_history
from nudge.tools.samples.ndjson import dump_ndjson, write_ndjson


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "sample",
        help="Generate a realistic usage history of the sample product (NDJSON Segment messages).",
        description=(
            "Generate a seeded, time-ordered history of the sample B2B SaaS as Segment track, identify "
            "and group messages, one JSON object a line. The same arguments always give the same file."
        ),
    )
    parser.add_argument("--users", type=positive, default=1000, help="users (default 1000)")
    parser.add_argument("--accounts", type=positive, default=100, help="accounts (default 100)")
    parser.add_argument(
        "--days", type=positive, default=90, help="length of the history in days (default 90)"
    )
    parser.add_argument("--seed", type=int, default=7, help="random seed (default 7)")
    parser.add_argument(
        "--start",
        type=_start,
        default=None,
        metavar="ISO8601|now",
        help="first moment of the history, e.g. 2026-10-01T00:00:00Z; default: midnight UTC --days days ago, "
        "so the history ends at today's midnight",
    )
    parser.add_argument(
        "--out", default="-", metavar="FILE", help="output file (.gz compresses); - for stdout (default)"
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    start: datetime = args.start or _midnight(clock.now()) - timedelta(days=args.days)
    began = time.perf_counter()
    history = build_history(
        users=args.users, accounts=args.accounts, days=args.days, seed=args.seed, start=start
    )
    if args.out == "-":
        try:
            count = dump_ndjson(sys.stdout, history.messages())
            sys.stdout.flush()
        except BrokenPipeError:
            # The reader stopped early (`nudge sample | head`): not a failure. Point stdout at
            # devnull so the interpreter's final flush doesn't raise again (Python docs' recipe).
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 0
    else:
        count = write_ndjson(args.out, history.messages())
    personas = ", ".join(f"{persona} {n}" for persona, n in history.persona_counts().items())
    print(
        f"{count:,} messages, {len(history.users):,} users, {len(history.accounts):,} accounts, "
        f"{args.days} days from {start.isoformat().replace('+00:00', 'Z')} (seed {args.seed}) "
        f"in {time.perf_counter() - began:.1f}s -> {args.out}; personas: {personas}",
        file=sys.stderr,
    )
    return 0


def _start(text: str) -> datetime:
    if text == "now":
        return clock.now().astimezone(UTC).replace(microsecond=0)
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected an ISO 8601 time like 2026-10-01T00:00:00Z, or now; got {text!r}"
        ) from None
    return aware(value)


def _midnight(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
