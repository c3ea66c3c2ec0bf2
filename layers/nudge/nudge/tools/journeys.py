"""`nudge journeys list | show ID | snapshot`: the journeys of a rules folder, one drawn as a text diagram
(its entry, goal and exits, then each step with the edges out of it), from the same Journey the
engine runs (nudge.tools.journey_text), and the live instances written for `nudge rules lint --state`
(nudge.tools.journey_state)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from nudge.tools.journey_state import run_snapshot
from nudge.tools.journey_text import diagram, entry_text
from nudge.tools.rules.commands import DEFAULT_RULES, load_or_report


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    journeys = subparsers.add_parser(
        "journeys",
        help="List the journeys of a rules folder, or draw one.",
        description="The journeys of rules/journeys/: `list` names them, `show ID` draws one as text, "
        "`snapshot` writes the live instances for `nudge rules lint --state`.",
    )
    sub = journeys.add_subparsers(dest="journeys_command", metavar="{list,show,snapshot}", required=True)
    listing = sub.add_parser("list", help="Every journey: id, kind, entry, steps.")
    listing.add_argument(
        "--rules", type=Path, default=DEFAULT_RULES, metavar="DIR", help="rules folder (default rules)"
    )
    listing.set_defaults(run=run_list)
    show = sub.add_parser("show", help="Draw one journey: entry, goal, exits, each step and where it leads.")
    show.add_argument("id", help="the journey's id")
    show.add_argument(
        "--rules", type=Path, default=DEFAULT_RULES, metavar="DIR", help="rules folder (default rules)"
    )
    show.set_defaults(run=run_show)
    snapshot = sub.add_parser(
        "snapshot",
        help="Write every user's journey instances as JSON lines (for `nudge rules lint --state`).",
        description="Scan the usage table's segment records (a running `nudge serve`, or the deployed "
        "table; AWS credentials from the environment) and write one line per user with journey "
        'instances: {"user": ..., "journeys": {key: instance}}. User ids and journey positions only.',
    )
    where = snapshot.add_mutually_exclusive_group(required=True)
    where.add_argument("--local", metavar="URL", help="a running local stack, e.g. http://127.0.0.1:8080")
    where.add_argument("--table", metavar="NAME", help="the deployed usage table")
    snapshot.add_argument("--out", type=Path, default=None, metavar="FILE", help="default: standard output")
    snapshot.set_defaults(run=run_snapshot)


def run_list(args: argparse.Namespace) -> int:
    rules = load_or_report(args.rules)
    if rules is None:
        return 1
    if not rules.journeys:
        print(f"no journeys in {args.rules / 'journeys'}")
    for journey in rules.journeys:
        print(f"{journey.id:24} {journey.spec.kind:11} {entry_text(journey):40} {len(journey.steps)} steps")
    return 0


def run_show(args: argparse.Namespace) -> int:
    rules = load_or_report(args.rules)
    if rules is None:
        return 1
    journey = rules.journey_by_id.get(args.id)
    if journey is None:
        known = ", ".join(sorted(rules.journey_by_id)) or "none"
        print(f"no journey '{args.id}' in {args.rules / 'journeys'} (journeys: {known})", file=sys.stderr)
        return 1
    print("\n".join(diagram(journey)))
    return 0
