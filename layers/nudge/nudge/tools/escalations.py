"""`nudge escalations [list] | handle`: the accounts escalated to customer success.

    nudge escalations [list] [--all] [--json]                 open escalations, newest first
    nudge escalations handle ACCOUNT_ID --by NAME [--note T]  mark one handled (marketing resumes)

They read the AWS tables named by NUDGE_LEDGER_TABLE and NUDGE_USAGE_TABLE (region and
credentials as boto3 finds them), or with `--local URL` a running `nudge serve` over HTTP. Either
way the rows come from nudge.services.escalations. Output names accounts and CS owners, never users.

Heavy imports (boto3, rich) wait until a command runs, and rich only for the table: the Lambda
layer ships this package without it.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote, urlsplit

from botocore.exceptions import BotoCoreError
from rich.console import Console
from rich.table import Table
from rich.text import Text

from nudge import clock
from nudge.bootstrap.cs import aws_repository
from nudge.domain.cs_view import EscalationsView, format_age
from nudge.model.errors import StoreUnavailable
from nudge.rulebook.loader import load_rules
from nudge.rulebook.yamlfile import RuleFileError
from nudge.services.escalations import (
    HandledEscalation,
    NoOpenEscalation,
    handle_escalation,
    open_escalations,
)
from nudge.settings import Settings

if TYPE_CHECKING:
    from rich.text import Text

    from nudge.domain.cs_view import EscalationRow, EscalationsView
    from nudge.rulebook.ruleset import RuleSet
    from nudge.services.escalations import CaseRepository, HandledEscalation
    from nudge.settings import Settings

T = TypeVar("T")

EXIT_NO_OPEN = 1
EXIT_UNAVAILABLE = 2
HTTP_TIMEOUT_SECONDS = 60


class SourceUnavailable(Exception):
    """The tables (or the local stack) could not be read; the message says why, in one line."""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    escalations = subparsers.add_parser(
        "escalations",
        help="List the accounts escalated to customer success; mark one handled.",
        description=(
            "Open escalations (an at-risk account handed to customer success), newest first, with "
            "what an agent needs: the account (name, plan, MRR, seats, CS owner), its health score "
            "and band, the rule that escalated it, why (its facts) and the next step, when it was "
            "opened, and four weeks of active users and sessions. While an escalation is open the "
            "guardrails hold back marketing to the account's users; `handle` ends that. Reads the "
            "tables named by NUDGE_LEDGER_TABLE and NUDGE_USAGE_TABLE in the AWS region of the "
            "environment, or a running `nudge serve` with --local URL."
        ),
    )
    _list_options(escalations, suppress=False)
    _source_options(escalations, suppress=False)
    escalations.set_defaults(run=run_list)
    sub = escalations.add_subparsers(dest="escalations_command", metavar="{list,handle}")

    listing = sub.add_parser("list", help="The open escalations (the default).")
    _list_options(listing, suppress=True)
    _source_options(listing, suppress=True)
    listing.set_defaults(run=run_list)

    handle = sub.add_parser(
        "handle",
        help="Mark an account's open escalation handled (marketing to its users resumes).",
        description=(
            "Mark the account's open escalation handled by NAME, with an optional note kept beside "
            "it. From then on the guardrails no longer hold back marketing to the account's users, "
            "and a new escalation may open. Exits 1 when the account has no open escalation."
        ),
    )
    handle.add_argument("account_id", metavar="ACCOUNT_ID")
    handle.add_argument("--by", required=True, metavar="NAME", help="who handled it (the agent)")
    handle.add_argument("--note", default="", metavar="TEXT", help="what was done, kept with it")
    handle.add_argument("--json", action="store_true", help="print what was done as JSON")
    _source_options(handle, suppress=True)
    handle.set_defaults(run=run_handle)


def _list_options(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    # The same options before and after `list`; the subcommand's copies default to SUPPRESS so
    # they never overwrite what was given before it.
    default: Any = argparse.SUPPRESS if suppress else False
    parser.add_argument(
        "--all",
        action="store_true",
        default=default,
        help="also the handled ones (who, when, note) and those that closed by themselves",
    )
    parser.add_argument("--json", action="store_true", default=default, help="print JSON, not a table")


def _source_options(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    parser.add_argument(
        "--local",
        metavar="URL",
        default=argparse.SUPPRESS if suppress else None,
        help="read a running `nudge serve` (e.g. http://127.0.0.1:8080) instead of AWS",
    )
    parser.add_argument(
        "--rules",
        type=Path,
        metavar="DIR",
        default=argparse.SUPPRESS if suppress else None,
        help="rules directory (default: $NUDGE_RULES_DIR or rules/); not used with --local",
    )


# ---------------------------------------------------------------------------- list


def run_list(args: argparse.Namespace) -> int:

    try:
        if args.local:
            query = "?all=1" if args.all else ""
            view = EscalationsView.model_validate(
                _http(args.local, "GET", f"/_local/escalations/open{query}")
            )
        else:
            view = _list_on_aws(args.rules, include_closed=args.all)
    except SourceUnavailable as exc:
        print(f"nudge escalations: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    if args.json:
        print(view.model_dump_json(indent=2))
    else:
        print_view(view, include_closed=args.all)
    return 0


def _list_on_aws(rules_dir: Path | None, *, include_closed: bool) -> EscalationsView:

    settings, rules = _settings_and_rules(rules_dir)
    return _on_aws(
        lambda repo: open_escalations(repo, rules, clock.now(), include_closed=include_closed), settings
    )


# ---------------------------------------------------------------------------- handle


def run_handle(args: argparse.Namespace) -> int:

    by = args.by.strip()
    if not by:
        print("nudge escalations handle: --by needs a name", file=sys.stderr)
        return EXIT_UNAVAILABLE
    try:
        if args.local:
            path = f"/_local/escalations/{quote(args.account_id, safe='')}/handled"
            answer = _http(args.local, "POST", path, {"by": by, "note": args.note}, missing_is_answer=True)
            if "handled_at" not in answer:
                raise NoOpenEscalation(str(answer.get("message") or "no open escalation"))
            handled = HandledEscalation.model_validate(answer)
        else:
            handled = _handle_on_aws(args.rules, args.account_id, by, args.note)
    except NoOpenEscalation as exc:
        print(f"nudge escalations handle: {exc}", file=sys.stderr)
        return EXIT_NO_OPEN
    except SourceUnavailable as exc:
        print(f"nudge escalations handle: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    if args.json:
        print(handled.model_dump_json(indent=2))
        return 0
    print(
        f"Marked handled: {handled.account_name} ({handled.account_id}), escalated by {handled.rule} "
        f"on {_time(handled.opened_at)} (case {handled.case_id})"
    )
    print(
        f"  by {handled.handled_by} at {_time(handled.handled_at)}"
        + (f"; note: {handled.note}" if handled.note else "")
    )
    if handled.marketing_resumed:
        print("Marketing to the account's users is no longer held back for this escalation.")
    return 0


def _handle_on_aws(rules_dir: Path | None, account_id: str, by: str, note: str) -> HandledEscalation:

    settings, rules = _settings_and_rules(rules_dir)
    return _on_aws(lambda repo: handle_escalation(repo, rules, account_id, by, note, clock.now()), settings)


# ---------------------------------------------------------------------------- sources


def _settings_and_rules(rules_dir: Path | None) -> tuple[Settings, RuleSet]:

    settings = Settings()
    directory = rules_dir or settings.rules_dir
    try:
        return settings, load_rules(directory)
    except RuleFileError as exc:
        raise SourceUnavailable(f"the rules in {directory} do not load:\n{exc}") from exc


def _on_aws(use: Callable[[CaseRepository], T], settings: Settings) -> T:
    """Run `use(repository)` on the AWS tables, with their failures as SourceUnavailable."""

    try:
        return use(aws_repository(settings))
    except (StoreUnavailable, BotoCoreError) as exc:
        raise SourceUnavailable(
            f"cannot read tables {settings.ledger_table} and {settings.usage_table}: {exc}"
        ) from exc


def _http(
    base_url: str,
    method: str,
    path: str,
    body: dict[str, Any] | None = None,
    *,
    missing_is_answer: bool = False,
) -> dict[str, Any]:
    """One JSON request to the local stack. A 404 is an answer when `missing_is_answer` (the
    route says there is nothing to handle); other failures are SourceUnavailable."""

    base = base_url.rstrip("/")
    if urlsplit(base).scheme not in ("http", "https"):
        raise SourceUnavailable(
            f"--local wants the local API's URL, like http://127.0.0.1:8080, not {base_url!r}"
        )
    data = json.dumps(body).encode("utf-8") if body is not None else None
    request = urllib.request.Request(base + path, data=data, method=method)  # noqa: S310 - checked above
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_SECONDS) as response:  # noqa: S310
            answer: dict[str, Any] = json.loads(response.read() or b"{}")
            return answer
    except urllib.error.HTTPError as exc:
        detail = _message(exc.read())
        if exc.code == 404 and missing_is_answer and detail and not detail.startswith("no local route"):
            return {"message": detail}
        raise SourceUnavailable(
            f"the local stack at {base} answered {exc.code}: {detail or exc.reason}"
        ) from exc
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise SourceUnavailable(
            f"cannot reach the local stack at {base} ({reason}); is `nudge serve` running?"
        ) from exc


def _message(raw: bytes) -> str:
    try:
        return str(json.loads(raw).get("message") or "")
    except (ValueError, AttributeError):
        return ""


# ---------------------------------------------------------------------------- the table


def print_view(view: EscalationsView, *, include_closed: bool) -> None:

    # Piped to a file or a pager, the table need not fit 80 columns.
    console = Console(highlight=False, soft_wrap=False, width=None if sys.stdout.isatty() else 240)
    what = "Escalations" if include_closed else "Open escalations"
    if not view.escalations:
        console.print(f"No {what.lower()} at {_time(view.now)}.")
        return
    table = Table(title=f"{what}: {view.count}, newest first (at {_time(view.now)})", show_lines=True)
    table.add_column("Account")
    table.add_column("Plan")
    table.add_column("MRR", justify="right")
    table.add_column("Seats", justify="right")
    table.add_column("CS owner")
    table.add_column("Health")
    table.add_column("Rule and why")
    table.add_column("Next step")
    table.add_column("Opened")
    table.add_column("Active users / sessions\nper week, oldest first")
    if include_closed:
        table.add_column("Status")
    for row in view.escalations:
        # Text, not markup: an account name like "[ACME]" is shown as it is.
        cells = [
            Text.assemble(
                (row.account_name, "bold"),
                *(("\n", row.account_id) if row.account_name != row.account_id else ()),
            ),
            Text(row.plan or "-"),
            Text(f"{row.mrr:,.0f}" if row.mrr is not None else "-"),
            Text(str(row.seats) if row.seats is not None else "-"),
            Text(row.cs_owner or "unassigned"),
            Text(f"{row.band} ({row.score:g})"),
            _why(row),
            Text(row.next_step),
            Text(f"{_time(row.opened_at)}\n{format_age(row.age_seconds)} ago"),
            Text(_usage(row)),
        ]
        if include_closed:
            cells.append(Text(_status(row)))
        table.add_row(*cells)
    console.print(table)


def _why(row: EscalationRow) -> Text:

    text = Text.assemble((row.rule, "bold"), "\n", row.reason)
    for name, value in row.facts.items():
        text.append(f"\n{name}: {value:g}" if isinstance(value, float) else f"\n{name}: {value}")
    return text


def _usage(row: EscalationRow) -> str:
    lines = [f"{week.week_start:%m-%d}  {week.active_users} / {week.sessions}" for week in row.usage]
    if lines:
        lines[-1] += "  (this week)"
    return "\n".join(lines)


def _status(row: EscalationRow) -> str:
    if row.status == "handled" and row.handled_at is not None:
        handled = f"handled by {row.handled_by or '?'}\n{_time(row.handled_at)}"
        return handled + (f"\n{row.note}" if row.note else "")
    if row.status == "expired":
        return f"closed by itself\n{_time(row.open_until)}"
    return f"open until\n{_time(row.open_until)}"


def _time(at: datetime) -> str:
    return f"{at.astimezone(UTC):%Y-%m-%d %H:%M} UTC"
