"""`nudge rules explain USER --local URL | --table NAME | --stack NAME`: why one user of live state is
or is not in each segment and rule, what the ledger decided for them and why, and what is next.

"Why didn't Ann get the rescue yesterday?" The stored usage state is judged now (every segment and
trigger test by test, as for a history file), then the user's segment record (segment since when,
transitions, next re-check), every decision in the ledger with its verdict (sent, held out,
deferred for quiet hours, suppressed by a cap, a cooldown, consent, priority...), and what comes
next and when. The stores are the ones production writes, read through the DynamoDB adapters
(nudge.bootstrap.explain): the deployed tables (--table, with --ledger-table; or --stack, whose
outputs name both), or the local stack's, whose moto endpoint `GET /_local/aws` gives.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from nudge.bootstrap.explain import explain_ports, stack_tables
from nudge.bootstrap.stacks import StackNotReadable
from nudge.model.errors import StoreUnavailable
from nudge.model.ledger import LedgerEntry
from nudge.rulebook.ruleset import RuleSet
from nudge.services.explain import ExplainPorts, LiveExplanation, explain_live
from nudge.settings import Settings, get_settings
from nudge.tools.args import aware
from nudge.tools.local_source import SourceError, local_dynamo
from nudge.tools.rules.explain import explain_data, explain_lines
from nudge.tools.rules.explain_journeys import journey_data, journey_lines
from nudge.tools.rules.history import iso

SHOWN_DECISIONS = 20  # the newest; --json has them all


def explain_live_user(args: argparse.Namespace, rules: RuleSet) -> int:
    try:
        ports, now = _ports(args)
        explained = explain_live(rules, ports, args.user, args.at or now)
    except (SourceError, StackNotReadable) as exc:
        print(f"nudge rules explain: {exc}", file=sys.stderr)
        return 1
    except (StoreUnavailable, ClientError, BotoCoreError) as exc:
        print(f"nudge rules explain: cannot read the tables: {_boto_message(exc)}", file=sys.stderr)
        return 1
    if explained is None:
        print(f"{args.user}: no usage state in {ports.source}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(live_data(rules, explained, ports), indent=2, default=str))
    else:
        print("\n".join(live_lines(rules, explained, ports)))
    return 0


def _boto_message(exc: Exception) -> str:
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        return f"{error.get('Code', 'error')}: {error.get('Message', '')}".strip()
    return str(exc)


def _ports(args: argparse.Namespace) -> tuple[ExplainPorts, datetime]:
    """The stores to read and the time to judge at (the local stack's simulated clock, else now)."""
    if args.local:
        client, where = local_dynamo(args.local)
        settings = Settings(usage_table=where["usage_table"], ledger_table=where["ledger_table"])
        source = f"the local stack at {args.local.rstrip('/')}"
        now = aware(datetime.fromisoformat(where["now"]))
        return explain_ports(settings, client=client, source=source), now
    settings = get_settings()
    if args.stack:
        usage, ledger = stack_tables(args.stack)
        settings = settings.model_copy(update={"usage_table": usage, "ledger_table": ledger})
        return explain_ports(settings, source=f"stack {args.stack} (tables {usage}, {ledger})"), datetime.now(
            UTC
        )
    ledger = args.ledger_table
    settings = settings.model_copy(update={"usage_table": args.table, "ledger_table": ledger or ""})
    return explain_ports(settings, with_ledger=bool(ledger)), datetime.now(UTC)


def verdict(entry: LedgerEntry) -> str:
    """What became of a decision, in words: sent / held out / deferred / suppressed and why."""
    if entry.outcome == "send":
        state = {"sent": "sent", "queued": "queued to send", "sending": "sending", "failed": "failed to send"}
        words = state.get(entry.status, entry.status or "sent")
        return words + (f" ({entry.reason})" if entry.reason else "")
    if entry.outcome == "held_out":
        return f"held out ({entry.reason})" if entry.reason else "held out"
    if entry.outcome == "deferred":
        until = f" until {iso(entry.deliver_at)}" if entry.deliver_at else ""
        return f"deferred for {entry.reason or 'quiet hours'}{until}"
    if entry.outcome == "cancelled":
        return f"cancelled ({entry.reason})" if entry.reason else "cancelled"
    return f"not sent: {entry.reason or entry.outcome}"


def live_lines(rules: RuleSet, explained: LiveExplanation, ports: ExplainPorts) -> list[str]:
    lines = explain_lines(rules, explained.judged, ports.source)
    if explained.requested != explained.person:
        lines.insert(1, f"  ({explained.requested} was merged into {explained.person})")
    record = explained.record
    lines.append("")
    if record is None:
        lines.append("Segment record: none (never evaluated yet)")
    else:
        seg = record.segments
        since = f" since {iso(seg.since)}" if seg.since else ""
        lines.append(f"Segment record: {seg.segment or 'no segment'}{since}")
        for move in seg.history[-5:]:
            lines.append(f"  {iso(move.at)}: {move.from_ or '(new)'} -> {move.to}")
        check = iso(record.next_check_at) if record.next_check_at else "none"
        lines.append(f"  next time-based re-check: {check}")
    lines.append("")
    journeys = journey_lines(rules, record.journeys if record else {}, explained.judged.context)
    lines += [*journeys, ""] if journeys else []
    if ports.ledger is None:
        lines.append("Decisions: the ledger was not read (give --ledger-table, or --stack)")
    else:
        entries = sorted(explained.entries, key=lambda e: (e.recorded_at, e.decision_id), reverse=True)
        lines.append(f"Decisions in the ledger, newest first ({len(entries)} in all):")
        for entry in entries[:SHOWN_DECISIONS]:
            d = entry.decision
            lines.append(f"  {iso(entry.recorded_at)} {d.rule} ({d.channel}): {verdict(entry)}")
        if not entries:
            lines.append("  none")
    lines.append("")
    lines.append("What is next:")
    for item in explained.next:
        when = iso(item.at) if item.at else "next evaluation"
        lines.append(f"  {when}: {item.what}")
    if not explained.next:
        lines.append("  nothing scheduled; the user's next event is evaluated as it arrives")
    return lines


def live_data(rules: RuleSet, explained: LiveExplanation, ports: ExplainPorts) -> dict[str, Any]:
    data = explain_data(rules, explained.judged)
    record = explained.record
    data["source"] = ports.source
    data["requested"] = explained.requested
    data["record"] = (
        None
        if record is None
        else {
            "segment": record.segments.segment,
            "since": iso(record.segments.since) if record.segments.since else None,
            "history": [{"from": t.from_, "to": t.to, "at": iso(t.at)} for t in record.segments.history],
            "next_check_at": iso(record.next_check_at) if record.next_check_at else None,
        }
    )
    data["journeys"] = journey_data(rules, record.journeys if record else {}, explained.judged.context)
    data["decisions"] = (
        None
        if ports.ledger is None
        else [
            {
                "at": iso(e.recorded_at),
                "decision_id": e.decision_id,
                "rule": e.decision.rule,
                "channel": e.decision.channel,
                "outcome": e.outcome,
                "reason": e.reason,
                "status": e.status,
                "deliver_at": iso(e.deliver_at) if e.deliver_at else None,
                "verdict": verdict(e),
            }
            for e in sorted(explained.entries, key=lambda e: (e.recorded_at, e.decision_id), reverse=True)
        ]
    )
    data["next"] = [{"at": iso(u.at) if u.at else None, "what": u.what} for u in explained.next]
    return data
