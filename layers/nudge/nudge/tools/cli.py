"""The `nudge` command. Each area adds its own subcommands through a `register(subparsers)` function."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from nudge.tools import escalations as cs_commands
from nudge.tools import journeys as journey_commands
from nudge.tools import keys as key_commands
from nudge.tools import rollups as rollup_commands
from nudge.tools.local import commands as local_commands
from nudge.tools.report import commands as report_commands
from nudge.tools.rules import commands as rules_commands
from nudge.tools.samples import commands as sample_commands

Command = Callable[[argparse.Namespace], int]


def build_parser() -> argparse.ArgumentParser:

    parser = argparse.ArgumentParser(prog="nudge", description="Usage-triggered lifecycle messaging.")
    sub = parser.add_subparsers(dest="command", required=True)
    local_commands.register(sub)
    sample_commands.register(sub)
    rules_commands.register(sub)
    cs_commands.register(sub)
    report_commands.register(sub)
    key_commands.register(sub)
    journey_commands.register(sub)
    rollup_commands.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    run: Command = args.run
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
