"""`nudge rules lint | test | backtest | explain | schema`: the marketer's tools for rules/.

    lint      every problem in every rule file and test file as file:line: message; exit 1
    test      the cases in rules/tests/*.yaml: given events and a time, expect a segment and rules
    backtest  replay an NDJSON history with a simulated clock through every guardrail: per rule and
              ISO week, fired, sent, held out and suppressed by reason
    explain   why one user (of an NDJSON history, or live: --local, --table, --stack) is or is not in
              each segment and rule; live, also the ledger's verdicts and what is next
    schema    JSON Schemas of the rule files, so editors complete and check them (rules/schema/)
    snapshot  the checked rule set, written beside the files for the Lambdas' cold start (sam build)

Marketers run these before deploying, so none of them ever shows a Python traceback: problems in
their files come out as file:line: message, and a crash of Nudge itself as one line that says so.
Every command replays usage through the same code the Lambdas run (the ingest use case into the
in-memory stores, `evaluate`; for backtest the evaluate service and its sweep), so what they show
is what production would do.

This module holds the arguments of every command, the guard around each, and the loading of a
rules folder they share (problems printed once, sorted by file and line); lint is only that. Each
other command's work and printing is in its own module: test.py, explain.py, backtest.py and
schema.py; condition_lines.py draws a condition test by test (test, explain), history.py reads an
NDJSON history (explain, backtest).
"""

from __future__ import annotations

import argparse
import sys
import traceback
from collections.abc import Callable, Iterable
from pathlib import Path

# Re-exported: the time a case is judged at unless it says otherwise, as callers of the CLI know it.
from nudge.domain.journey_changes import changes
from nudge.rulebook.cases import DEFAULT_CASE_AT as DEFAULT_CASE_AT
from nudge.rulebook.cases import LoadedCase, load_cases
from nudge.rulebook.loader import load_rules
from nudge.rulebook.ruleset import RuleSet
from nudge.rulebook.snapshot import SNAPSHOT_FILE, write_snapshot
from nudge.rulebook.yamlfile import RuleFileError, RuleProblem
from nudge.tools.args import iso_time
from nudge.tools.journey_state import StateFileError, read_state
from nudge.tools.rules.backtest import backtest_history
from nudge.tools.rules.explain import explain_user
from nudge.tools.rules.explain_live import explain_live_user
from nudge.tools.rules.schema import run_schema
from nudge.tools.rules.test import run_cases

Run = Callable[[argparse.Namespace], int]

DEFAULT_RULES = Path("rules")
SCHEMA_DIR = "schema"


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    rules = subparsers.add_parser(
        "rules",
        help="Check, test, backtest and explain the marketer rule files (rules/).",
        description="Tools for the rule files under rules/: run `nudge rules lint` and `nudge rules test` "
        "before every deploy.",
    )
    sub = rules.add_subparsers(dest="rules_command", required=True, metavar="COMMAND")

    lint = sub.add_parser(
        "lint",
        help="Check every rule file and test file; print each problem as file:line: message.",
        description="Load and cross-check the tracking plan, milestones, segments, scoring, triggers, "
        "templates and the test cases in tests/. Prints every problem as file:line: message and "
        "exits 1 when there is any; exits 0 and prints a one-line summary when all is well.",
    )
    lint.add_argument("dir", nargs="?", type=Path, default=DEFAULT_RULES, help="rules folder (default rules)")
    lint.add_argument(
        "--state",
        type=Path,
        default=None,
        metavar="FILE",
        help="a snapshot of live journey instances (JSON lines, from `nudge journeys snapshot`): also list "
        "how many of them each journey change ends (step removed, journey removed)",
    )
    lint.set_defaults(run=_guarded("lint", run_lint))

    test = sub.add_parser(
        "test",
        help="Run the cases in DIR/tests/*.yaml: given events and a time, expect segments and rules.",
        description="Each case gives one user's events (at times like -3d relative to the case's "
        "`at`), traits and account, and says what must hold: the segment, the rules that must and "
        "must not fire, score bands. Prints PASS or FAIL per case, with why on failure; exits 1 "
        "if any case fails.",
    )
    test.add_argument("dir", nargs="?", type=Path, default=DEFAULT_RULES, help="rules folder (default rules)")
    test.add_argument("-k", dest="match", default=None, metavar="TEXT", help="only cases whose name has TEXT")
    test.set_defaults(run=_guarded("test", run_test))

    backtest = sub.add_parser(
        "backtest",
        help="Replay an NDJSON history with a simulated clock: what each rule would fire and send.",
        description="Replay the Segment messages of FILE day by day through ingest, evaluating at each "
        "day's end the users who changed that day and the users due a time-based re-check, and "
        "judging every decision with the guardrails dispatch applies (caps, cooldowns, priority, "
        "quiet hours, consent, control group and holdouts, open escalations) against an in-memory "
        "ledger. Prints, per rule, how many decisions it would make and how many would be sent, held "
        "out, deferred, cancelled or suppressed (by reason), and the segment sizes and transitions. "
        "--weekly breaks both down per ISO week.",
    )
    backtest.add_argument("--events", type=Path, required=True, metavar="FILE", help="NDJSON (.gz ok)")
    backtest.add_argument(
        "--rules", type=Path, default=DEFAULT_RULES, metavar="DIR", help="rules folder (default rules)"
    )
    backtest.add_argument("--weekly", action="store_true", help="break fires and segments down per ISO week")
    backtest.add_argument(
        "--fires-csv",
        type=Path,
        default=None,
        metavar="FILE",
        help="also write every decision (who, when, outcome, reason)",
    )
    backtest.set_defaults(run=_guarded("backtest", run_backtest))

    explain = sub.add_parser(
        "explain",
        help="Why a user is or is not in each segment and rule, with each test's value.",
        description="Fold USER's messages from FILE (up to --at), or read USER's state live (a running "
        "`nudge serve`, or the deployed tables), then show for each segment, score signal and trigger "
        "whether it holds, and each test with the user's value. Live, also the segment record, every "
        "decision in the ledger with its verdict (sent, held out, deferred, suppressed and why) and "
        "what is next and when.",
    )
    explain.add_argument("user", metavar="USER", help="the user id (userId, or anon:<anonymousId>)")
    source = explain.add_mutually_exclusive_group(required=True)
    source.add_argument("--events", type=Path, metavar="FILE", help="an NDJSON history (.gz ok)")
    source.add_argument(
        "--local", metavar="URL", help="a running local stack, e.g. http://127.0.0.1:8080 (its clock's time)"
    )
    source.add_argument(
        "--table",
        metavar="NAME",
        help="the deployed usage table (AWS credentials and region from the environment); with "
        "--ledger-table for the decisions",
    )
    source.add_argument(
        "--stack", metavar="NAME", help="the deployed stack: its outputs name the usage and ledger tables"
    )
    explain.add_argument(
        "--ledger-table", metavar="NAME", default=None, help="with --table: the ledger table"
    )
    explain.add_argument(
        "--rules", type=Path, default=DEFAULT_RULES, metavar="DIR", help="rules folder (default rules)"
    )
    explain.add_argument(
        "--at",
        type=iso_time,
        default=None,
        metavar="ISO",
        help="judge at this time (default: the file's end; live: now, or the local stack's clock)",
    )
    explain.add_argument("--json", action="store_true", help="print the explanation as JSON")
    explain.set_defaults(run=_guarded("explain", run_explain))

    schema = sub.add_parser(
        "schema",
        help="Write JSON Schemas for the rule files (editor completion and checks).",
        description="Write one JSON Schema per rule file into DIR. Each shipped rule file's first line "
        "(# yaml-language-server: $schema=schema/<file>.schema.json) points editors at them.",
    )
    schema.add_argument(
        "--out", type=Path, default=DEFAULT_RULES / SCHEMA_DIR, metavar="DIR", help="default rules/schema"
    )
    schema.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 if the files in DIR are out of date"
    )
    schema.set_defaults(run=_guarded("schema", run_schema))

    snapshot = sub.add_parser(
        "snapshot",
        help=f"Write DIR/{SNAPSHOT_FILE}: the checked rule set, for the Lambdas' cold start.",
        description=f"Load and check DIR as lint does, then write DIR/{SNAPSHOT_FILE}: the rule set, "
        "which a Lambda loads without parsing and checking the files again, as long as the files "
        "and Nudge's code are the very ones it was written from (else it loads the files). The rules "
        "layer's build (sam build) runs it on the files it packs; you never need to.",
    )
    snapshot.add_argument("dir", type=Path, help="the rules folder to load and write into")
    snapshot.set_defaults(run=_guarded("snapshot", run_snapshot))


def _guarded(command: str, run: Run) -> Run:
    """Run a command; a crash of Nudge itself becomes one line saying so, never a traceback."""

    def guarded(args: argparse.Namespace) -> int:
        try:
            return run(args)
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130
        except Exception as exc:
            frame = traceback.extract_tb(exc.__traceback__)[-1]
            print(
                f"nudge rules {command}: internal error, not a problem in your files: "
                f"{type(exc).__name__}: {exc} (at {Path(frame.filename).name}:{frame.lineno}); "
                "please report it",
                file=sys.stderr,
            )
            return 1

    return guarded


# ---------------------------------------------------------------------------------------------
# Loading, shared by every command


def load_checked(rules_dir: Path) -> tuple[RuleSet | None, list[RuleProblem]]:
    """The rule set, or the problems that stop it loading (a missing folder included)."""
    if not rules_dir.exists():
        return None, [
            RuleProblem(str(rules_dir), 0, "no such folder; give the folder that holds tracking-plan.yaml")
        ]
    if not rules_dir.is_dir():
        return None, [RuleProblem(str(rules_dir), 0, "is a file, not a folder; give the rules folder")]
    try:
        return load_rules(rules_dir), []
    except RuleFileError as exc:
        return None, exc.problems


def print_problems(problems: Iterable[RuleProblem]) -> int:
    """Print problems once each, by file and line; return how many."""
    unique = sorted(set(problems), key=lambda p: (p.file, p.line, p.message))
    for problem in unique:
        print(problem if problem.line else f"{problem.file}: {problem.message}")  # a folder has no line
    files = len({p.file for p in unique})
    print(
        f"{len(unique)} problem{'s' * (len(unique) != 1)} in {files} file{'s' * (files != 1)}",
        file=sys.stderr,
    )
    return len(unique)


def load_or_report(rules_dir: Path) -> RuleSet | None:
    """The rule set; None when it does not load, its problems printed."""
    rules, problems = load_checked(rules_dir)
    if problems:
        print_problems(problems)
    return rules


def load_folder(rules_dir: Path) -> tuple[RuleSet, list[LoadedCase]] | None:
    """The rule set and its test cases; None when either has a problem, every problem printed."""
    rules, problems = load_checked(rules_dir)
    cases: list[LoadedCase] = []
    if rules_dir.is_dir():
        cases, case_problems = load_cases(rules_dir, rules)
        problems += case_problems
    if problems:
        print_problems(problems)
        return None
    assert rules is not None
    return rules, cases


# ---------------------------------------------------------------------------------------------
# The commands: lint here, the others' work in their modules once the rules have loaded


def _versions(rules: RuleSet) -> str:
    """ " (1 in other locales: fr)" for the summary line, when templates have locale versions."""
    tags = sorted({tag for by_tag in rules.versions.values() for tag in by_tag})
    count = sum(len(by_tag) for by_tag in rules.versions.values())
    return f" ({count} in other locales: {', '.join(tags)})" if count else ""


def run_lint(args: argparse.Namespace) -> int:
    rules_dir: Path = args.dir
    loaded = load_folder(rules_dir)
    if loaded is None:
        return 1
    rules, cases = loaded
    print(
        f"{rules_dir}: OK - {len(rules.plan.events)} events, {len(rules.plan.milestones)} milestones, "
        f"{len(rules.segments)} segments, {len(rules.user_score.signals) + len(rules.account_score.signals)} "
        f"score signals, {len(rules.triggers)} triggers, {len(rules.journeys)} journeys, "
        f"{len(rules.templates)} templates"
        f"{_versions(rules)}, "
        f"{len(cases)} test cases"
    )
    return 0 if args.state is None else lint_state(rules, args.state)


def lint_state(rules: RuleSet, path: Path) -> int:
    """What deploying these rules does to the instances in flight of the snapshot at `path`."""
    try:
        instances = list(read_state(path))
    except StateFileError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"{path}: cannot read: {exc.strerror}", file=sys.stderr)
        return 1
    live = [(u, i) for u, i in instances if i.live]
    users = len({u for u, _ in instances})
    print(f"{path}: {len(live)} live journey instances of {users} users")
    found = changes(rules.journey_by_id, live)
    for change in found:
        what = f"step {change.step!r} removed" if change.step else "journey removed"
        print(
            f"  {change.journey}: {what}: {change.instances} live instances ({change.users} users) "
            f"will exit with reason {change.reason} at their next evaluation"
        )
    if not found:
        print("  no live instance is on a removed journey or step")
    return 0


def run_test(args: argparse.Namespace) -> int:
    loaded = load_folder(args.dir)
    return 1 if loaded is None else run_cases(args.dir, *loaded, args.match)


def run_explain(args: argparse.Namespace) -> int:
    if args.ledger_table and not args.table:
        print("nudge rules explain: --ledger-table goes with --table", file=sys.stderr)
        return 2
    rules = load_or_report(args.rules)
    if rules is None:
        return 1
    return explain_user(args, rules) if args.events else explain_live_user(args, rules)


def run_backtest(args: argparse.Namespace) -> int:
    rules = load_or_report(args.rules)
    return 1 if rules is None else backtest_history(args, rules)


def run_snapshot(args: argparse.Namespace) -> int:
    rules = load_or_report(args.dir)
    if rules is None:
        return 1
    print(f"{write_snapshot(rules, args.dir)}: the checked rule set, for the Lambdas' cold start")
    return 0
