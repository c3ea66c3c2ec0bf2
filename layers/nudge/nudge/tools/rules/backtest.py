"""`nudge rules backtest`: replay an NDJSON history with a simulated clock and print, per rule and
ISO week, how often each rule would fire and what every guardrail would make of it (sent, held out,
deferred, cancelled, suppressed by reason), and the segment sizes and transitions.

The replay is the backtest use case (`nudge.services.backtest`: ingest, evaluate, sweep, day by
day), run here over the in-memory stores; this module reads the file and prints the tables.
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from nudge.adapters.memory import (
    MemoryDecisionPublisher,
    MemoryLedger,
    MemoryRouter,
    MemorySegmentStore,
    MemoryUsageStore,
)
from nudge.domain.journey_report import journey_instances, journey_tally
from nudge.model.messages import Message
from nudge.observability import quiet_logs
from nudge.rulebook.ruleset import RuleSet
from nudge.services import backtest as service
from nudge.services.backtest import BacktestResult, BacktestStores, Fire
from nudge.tools.rules.history import iso, read_messages, report_skipped


def backtest(
    rules: RuleSet, messages: Sequence[Message], progress: Callable[[int, int], None] | None = None
) -> BacktestResult:
    """The backtest use case over fresh in-memory stores, without the services' logs."""
    stores = BacktestStores(
        MemoryUsageStore(), MemorySegmentStore(), MemoryDecisionPublisher(), MemoryLedger(), MemoryRouter()
    )
    with quiet_logs():
        return service.backtest(rules, messages, stores, progress)


def backtest_history(args: argparse.Namespace, rules: RuleSet) -> int:
    """Backtest the history args.events; print the tables and, with --fires-csv, every fire."""
    began = time.perf_counter()
    read = read_messages(args.events)
    if read is None:
        return 1
    messages, skipped = read
    report_skipped(skipped)
    if not any(m.timestamp is not None for m in messages):
        print(f"{args.events}: no messages with a timestamp to replay", file=sys.stderr)
        return 1
    with _progress() as progress:
        result = backtest(rules, messages, progress)
    elapsed = time.perf_counter() - began
    print_backtest(rules, result, weekly=args.weekly, elapsed=elapsed, source=str(args.events))
    if args.fires_csv is not None:
        write_fires_csv(args.fires_csv, result.fires)
        print(f"wrote {len(result.fires)} fires to {args.fires_csv}")
    return 0


class _progress:
    """A progress bar on stderr while replaying, only when stderr is a terminal."""

    def __enter__(self) -> Callable[[int, int], None] | None:
        if not sys.stderr.isatty():
            self._bar: Any = None
            return None
        self._bar = Progress(transient=True)
        self._bar.start()
        task = self._bar.add_task("replaying days", total=None)

        def advance(done: int, total: int) -> None:
            self._bar.update(task, completed=done, total=total)

        return advance

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()


def write_fires_csv(path: Path, fires: Iterable[Fire]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as stream:
        writer = csv.writer(stream)
        writer.writerow(
            [
                "at",
                "week",
                "rule",
                "action",
                "channel",
                "user",
                "account",
                "segment",
                "outcome",
                "reason",
                "settled_at",
            ]
        )
        for fire in fires:
            writer.writerow(
                [
                    iso(fire.at),
                    fire.week,
                    fire.rule,
                    fire.action,
                    fire.channel,
                    fire.user,
                    fire.account or "",
                    fire.segment or "",
                    fire.outcome,
                    fire.reason,
                    iso(fire.settled_at) if fire.settled_at else "",
                ]
            )


def _rule_labels(rules: RuleSet) -> list[str]:
    labels: list[str] = []
    for trigger in rules.triggers:
        labels.append(trigger.id)
        if trigger.escalate_when is not None and trigger.spec.action != "escalate":
            labels.append(f"{trigger.id} (escalate)")
    return labels


def print_backtest(
    rules: RuleSet, result: BacktestResult, *, weekly: bool, elapsed: float, source: str
) -> None:
    # Piped to a file or a pager, the tables need not fit 80 columns: let them be as wide as they are.
    console = Console(highlight=False, soft_wrap=False, width=None if sys.stdout.isatty() else 240)
    console.print(
        f"Backtest of {source}: {result.messages:,} messages, {result.users:,} users, "
        f"{result.accounts:,} accounts, "
        f"{result.first_day} to {result.last_day} ({len(result.weeks)} ISO weeks); "
        f"{result.evaluations:,} evaluations in {elapsed:.0f}s"
    )
    if result.refused:
        console.print(f"{len(result.refused):,} messages refused by ingest (e.g. {result.refused[0]})")
    labels = _rule_labels(rules)
    by_rule: dict[str, list[Fire]] = defaultdict(list)
    for fire in result.fires:
        by_rule[fire.rule].append(fire)

    totals = Table(
        title="Decisions over the whole period, through every guardrail: fired, then sent, held out, "
        "deferred (still waiting at the end), cancelled, or suppressed and why"
    )
    for column in (
        "rule",
        "action",
        "fired",
        "sent",
        "held out",
        "deferred",
        "cancelled",
        "suppressed",
        "sent to",
    ):
        totals.add_column(
            column, justify="left" if column in ("rule", "action", "suppressed", "sent to") else "right"
        )
    for label in labels:
        fires = by_rule.get(label, [])
        action = (
            fires[0].action
            if fires
            else ("escalate" if label.endswith("(escalate)") else _action(rules, label))
        )
        counts = _outcomes(fires)
        users = list(dict.fromkeys(f.user for f in fires if f.sent))
        sent_to = f"{len(users)} users" + (f" (e.g. {', '.join(users[:3])})" if users else "")
        totals.add_row(
            label,
            action,
            str(len(fires)),
            str(counts["send"]),
            str(counts["held_out"]),
            str(counts["deferred"]),
            str(counts["cancelled"]),
            _reasons(fires),
            sent_to,
        )
    console.print(totals)
    print_journeys(console, rules, result)

    segment_ids = [s.id for s in rules.segments]
    entered = Counter[str]()
    for counts in result.entries.values():
        entered.update(counts)
    final = result.final_sizes()
    sizes = Table(title=f"Segments at the end ({result.last_day}) and entries over the period")
    for column in ("segment", "users", "entries"):
        sizes.add_column(column, justify="left" if column == "segment" else "right")
    for segment in segment_ids:
        sizes.add_row(segment, str(final.get(segment, 0)), str(entered.get(segment, 0)))
    console.print(sizes)

    moves = Table(title="Most frequent segment transitions")
    for column in ("from", "to", "users"):
        moves.add_column(column, justify="right" if column == "users" else "left")
    for (before, after), count in result.transitions.most_common(12):
        moves.add_row(before, after, str(count))
    console.print(moves)

    if weekly:
        per_week = Table(title="Per rule and ISO week: fired, sent, held out, and suppressed by reason")
        for column in ("week", "rule", "fired", "sent", "held out", "suppressed"):
            per_week.add_column(
                column, justify="right" if column in ("fired", "sent", "held out") else "left"
            )
        cells: dict[tuple[str, str], list[Fire]] = defaultdict(list)
        for fire in result.fires:
            cells[(fire.week, fire.rule)].append(fire)
        for week in result.weeks:
            for label in labels:
                fires = cells.get((week, label), [])
                if fires:
                    counts = _outcomes(fires)
                    per_week.add_row(
                        week,
                        label,
                        str(len(fires)),
                        str(counts["send"]),
                        str(counts["held_out"]),
                        _reasons(fires),
                    )
        console.print(per_week)

        seg_week = Table(title="Segment sizes at each ISO week's end (+ users who entered that week)")
        seg_week.add_column("week")
        for segment in segment_ids:
            seg_week.add_column(segment, justify="right", overflow="fold")
        for week in result.weeks:
            counts, came = result.sizes[week], result.entries.get(week, Counter())
            seg_week.add_row(week, *(f"{counts.get(s, 0)} (+{came.get(s, 0)})" for s in segment_ids))
        console.print(seg_week)


def print_journeys(console: Console, rules: RuleSet, result: BacktestResult) -> None:
    """Per journey anyone entered: entered, held out, each step reached (and still there at the end),
    converted and the other endings, then the same per ISO week. Its sends went through every
    guardrail: the decisions table above has them under the journey's id."""
    for journey in rules.journeys:
        mine = journey_instances(result.journeys, journey.id)
        if not mine:
            continue
        tally = journey_tally(journey, mine)
        ended = ", ".join(f"{reason} {count}" for reason, count in tally.ended.items()) or "-"
        console.print(
            f"Journey {journey.id}: {tally.entered} entered ({tally.held_out} held out), "
            f"{tally.converted} converted, ended otherwise: {ended}"
        )
        steps = Table(title=f"Journey {journey.id}: instances at each step")
        for column in ("step", "kind", "reached", "there at the end"):
            steps.add_column(column, justify="left" if column in ("step", "kind") else "right")
        for step_id, step in journey.steps.items():
            steps.add_row(step_id, step.kind, str(tally.reached[step_id]), str(tally.at_step.get(step_id, 0)))
        console.print(steps)
        weeks = Table(title=f"Journey {journey.id} per ISO week: entered, converted, ended otherwise")
        for column in ("week", "entered", "converted", "ended otherwise"):
            weeks.add_column(column, justify="left" if column in ("week", "ended otherwise") else "right")
        for row in tally.weeks:
            other = ", ".join(f"{reason} {count}" for reason, count in row.ended.items()) or "-"
            weeks.add_row(row.week, str(row.entered), str(row.converted), other)
        console.print(weeks)


def _outcomes(fires: Iterable[Fire]) -> Counter[str]:
    return Counter(f.outcome for f in fires)


def _reasons(fires: Iterable[Fire]) -> str:
    """Suppressed decisions by reason, most frequent first: "cooldown 3, cap_email_day 1"."""
    reasons = Counter(f.reason for f in fires if f.outcome == "suppressed")
    return ", ".join(f"{reason} {count}" for reason, count in reasons.most_common()) or "-"


def _action(rules: RuleSet, rule: str) -> str:
    return next(
        (" > ".join(t.spec.channels) or str(t.spec.action) for t in rules.triggers if t.id == rule), ""
    )
