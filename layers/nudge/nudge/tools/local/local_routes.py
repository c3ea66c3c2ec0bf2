"""The local stack's own routes under /_local/: they read the stack's state and move its clock.

  GET  /_local/users/{id}      a user's usage state (traits, account, counts, milestones, ...),
                               lifecycle segment and segment history
  GET  /_local/accounts/{id}   an account's traits and usage rollup
  GET  /_local/decisions       every decision dispatched so far and its outcome (?user=ID: one user's)
  GET  /_local/outbox          messages sent (email, push, SMS): recipient, rule, subject, body, html
  GET  /_local/escalations     cases put on the customer-success queue
  GET  /_local/report          the `nudge report` HTML, from the stack's tables
  GET  /_local/escalations/open
                               the open escalations as `nudge escalations --json` shows them
                               (?all=1: the handled and expired ones too)
  POST /_local/escalations/{account_id}/handled
                               {"by": NAME, "note": TEXT} marks the account's open escalation
                               handled (404 when it has none), as `nudge escalations handle`
  GET  /_local/aws             the stack's moto endpoint, region and table names, and its time
                               (`nudge rules explain --local` reads the tables through it)
  POST /_local/email/{message_id}/open|click
                               a reader opens the email (or clicks `{"link": URL}` in it): SES's
                               Open or Click event goes to the feedback function, as in AWS
  GET  /_local/clock           the simulated time
  POST /_local/clock           {"now": ISO8601} moves the simulated clock forward and runs
                               everything due on the way (sweeps, the stream) before answering

The local routes that read state first let the stream settle (LocalStack.settle): what a client
posted has been evaluated by the time it looks, where in AWS it would take a second or so.
``nudge.tools.local.http`` sends each /_local/ request here (``local_route``) and the answer
back as JSON, or as a page for a ``RawHtml``.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from datetime import datetime
from http import HTTPStatus
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, unquote

from nudge.domain.trigger import last_values
from nudge.model.ledger import LedgerEntry
from nudge.model.segments import SegmentRecord
from nudge.model.state import UserState
from nudge.model.versioned import Versioned
from nudge.rulebook.loader import load_rules
from nudge.services.escalations import CaseRepository, NoOpenEscalation, handle_escalation, open_escalations
from nudge.services.identity import MAX_HOPS
from nudge.tools.local.aws import REGION
from nudge.tools.local.simulated_clock import ClockError
from nudge.tools.local.stack import LocalStack

if TYPE_CHECKING:
    from nudge.rulebook.ruleset import RuleSet


@dataclass(frozen=True)
class RawHtml:
    """A local route's answer that is a page, not JSON."""

    text: str


def local_route(stack: LocalStack, method: str, path: str, query: str, body: bytes) -> tuple[int, Any]:
    """(status, JSON payload or RawHtml) for a request under /_local/; 404 for an unknown one."""
    parts = [unquote(p) for p in path.split("/")[2:]]
    reading = method in ("GET", "HEAD")
    if reading and len(parts) == 2 and parts[0] == "users" and parts[1]:
        return _user(stack, parts[1])
    if reading and len(parts) == 2 and parts[0] == "accounts" and parts[1]:
        return _account(stack, parts[1])
    if reading and parts == ["decisions"]:
        return _decisions(stack, dict(parse_qsl(query)))
    if reading and parts == ["report"]:
        return HTTPStatus.OK, RawHtml(stack.report_html())
    if reading and parts == ["outbox"]:
        stack.settle()
        user = dict(parse_qsl(query)).get("user")
        sent = [m for m in stack.outbox() if user is None or m["user_id"] == user]
        return HTTPStatus.OK, {"count": len(sent), "messages": sent}
    if reading and parts == ["escalations"]:
        stack.settle()
        cases = [
            {**m.body, "queued_at": m.queued_at.isoformat()}
            for m in stack.escalations()
            if isinstance(m.body, dict)
        ]
        return HTTPStatus.OK, {"count": len(cases), "escalations": cases}
    if reading and parts == ["escalations", "open"]:
        return _open_escalations(stack, dict(parse_qsl(query)))
    if (
        method == "POST"
        and len(parts) == 3
        and parts[0] == "escalations"
        and parts[1]
        and parts[2] == "handled"
    ):
        return _handle_escalation(stack, parts[1], body)
    if method == "POST" and len(parts) == 3 and parts[0] == "email" and parts[2] in ("open", "click"):
        link = str((json.loads(body or b"{}") or {}).get("link") or "") if parts[2] == "click" else ""
        published = stack.engage_all([(parts[1], parts[2], link)])
        if not published:
            return HTTPStatus.NOT_FOUND, {"message": f"no email {parts[1]!r} sent with the configuration set"}
        return HTTPStatus.OK, {"published": published}
    if parts == ["clock"] and reading:
        return HTTPStatus.OK, {"now": stack.clock.now().isoformat()}
    if reading and parts == ["aws"]:
        return _aws(stack)
    if parts == ["clock"] and method == "POST":
        return _move_clock(stack, body)
    return HTTPStatus.NOT_FOUND, {"message": f"no local route {method} {path}"}


def user_document(
    state: UserState, version: int, record: Versioned[SegmentRecord] | None = None
) -> dict[str, Any]:
    """What GET /_local/users/{id} answers: the usage state in plain JSON terms, and the
    evaluator's record of the user (lifecycle segment, transitions, next re-check)."""
    dumped = state.model_dump(mode="json")
    segments = record.value.segments if record is not None else None
    check = record.value.next_check_at if record is not None else None
    return {
        "user_id": state.user_id,
        "version": version,
        "account_id": state.account_id,
        "traits": state.trait_values(),
        "context": state.context_values(),
        "event_counts": state.event_counts,
        # The latest kept value of each `last: true` property, by event (a survey's answer).
        "last_values": last_values(state),
        "milestones": dumped["milestones"],
        # The lifecycle segment is the one segment a user is in (the first that matches).
        "segments": [segments.segment] if segments is not None and segments.segment else [],
        "segment_since": segments.since.isoformat() if segments is not None and segments.since else None,
        # Oldest first, bounded by the evaluator (the latest transitions are kept).
        "segment_history": [
            {"from": t.from_, "to": t.to, "at": t.at.isoformat()}
            for t in (segments.history if segments is not None else [])
        ],
        "next_check_at": check.isoformat() if check is not None else None,
        # Journey instances (journey#key -> step, entered/converted/exited at, variant, reason).
        "journeys": {
            key: instance.model_dump(mode="json")
            for key, instance in (record.value.journeys if record is not None else {}).items()
        },
        "first_seen": dumped["first_seen"],
        "last_seen": dumped["last_seen"],
        "last_meaningful": dumped["last_meaningful"],
        "features": {
            name: {
                "first": f["first"],
                "last": f["last"],
                "count": f["count"],
                "distinct_days": len(f["days"]),
            }
            for name, f in dumped["features"].items()
        },
        "weeks": dumped["weeks"],
        # Identity resolution: the ids merged into this person.
        "merged": state.merged,
    }


def _user(stack: LocalStack, user_id: str) -> tuple[int, Any]:
    stack.settle()
    found = stack.store.load_users([user_id]).get(user_id)
    # An id merged into a user (an anonymousId after identify, an aliased userId) answers with the
    # person it points at, saying so.
    hops = 0
    while found is not None and found.value.merged_into is not None and hops < MAX_HOPS:
        found, hops = stack.store.load_users([found.value.merged_into]).get(found.value.merged_into), hops + 1
    if found is None:
        return HTTPStatus.NOT_FOUND, {"message": "no such user", "user_id": user_id}
    person = found.value.user_id
    record = stack.segments.load([person])[person]
    # Version 0: never evaluated (no segment record yet).
    document = user_document(found.value, found.version, record if record.version else None)
    document["ledger"] = [ledger_document(e) for e in stack.ledger.entries_of(person)]
    if person != user_id:
        document["merged_into"] = person
        document["requested_id"] = user_id
    return HTTPStatus.OK, document


def _account(stack: LocalStack, account_id: str) -> tuple[int, Any]:
    # The rollup is applied off the users' writes, by the rollup function from the stream.
    stack.settle()
    stored = stack.store.load_account(account_id)
    rollup = stack.store.load_rollup(account_id)
    if stored is None and not rollup.weeks and not rollup.feature_adopters:
        return HTTPStatus.NOT_FOUND, {"message": "no such account", "account_id": account_id}
    return HTTPStatus.OK, {
        "account_id": account_id,
        "version": stored.version if stored else 0,
        "traits": stored.value.trait_values() if stored else {},
        "rollup": rollup.model_dump(mode="json"),
    }


def ledger_document(entry: LedgerEntry) -> dict[str, Any]:
    """A ledger entry as the local API shows it: the decision, then what became of it."""
    return {
        **entry.decision.model_dump(mode="json"),
        "outcome": entry.outcome,
        "outcome_reason": entry.reason,
        "channel_why": entry.channel_why,
        "status": entry.status,
        "deliver_at": entry.deliver_at.isoformat() if entry.deliver_at else None,
        "recorded_at": entry.recorded_at.isoformat(),
        "updated_at": entry.updated_at.isoformat(),
        "feedback": {kind: at.isoformat() for kind, at in sorted(entry.feedback.items())},
    }


def _aws(stack: LocalStack) -> tuple[int, Any]:
    """Where the stack's tables are (its moto endpoint), so tools read them through the same
    DynamoDB adapters as deployed tables (`nudge rules explain --local`); the stream settled first."""
    stack.settle()
    settings = stack.settings
    return HTTPStatus.OK, {
        "endpoint_url": stack.endpoint_url,
        "region": REGION,
        "usage_table": settings.usage_table,
        "ledger_table": settings.ledger_table,
        "now": stack.clock.now().isoformat(),
    }


def _decisions(stack: LocalStack, query: dict[str, str]) -> tuple[int, Any]:
    stack.settle()
    user = query.get("user")
    decisions = [ledger_document(e) for e in stack.decisions() if user is None or e.decision.user == user]
    return HTTPStatus.OK, {"count": len(decisions), "decisions": decisions}


def _move_clock(stack: LocalStack, body: bytes) -> tuple[int, Any]:
    try:
        requested = json.loads(body or b"{}").get("now")
        when = datetime.fromisoformat(str(requested))
    except (ValueError, AttributeError, TypeError):
        return HTTPStatus.BAD_REQUEST, {"message": 'send {"now": "<ISO 8601 time with timezone>"}'}
    runs = sum(len(s.runs) for s in stack.schedules)
    try:
        now = stack.advance_clock(when)
    except ClockError as exc:
        return HTTPStatus.CONFLICT, {"message": str(exc)}
    # The answer comes once everything due on the way has run and the stream is quiet.
    return HTTPStatus.OK, {"now": now.isoformat(), "sweeps": sum(len(s.runs) for s in stack.schedules) - runs}


@functools.lru_cache(maxsize=4)
def _rules(rules_dir: Path) -> RuleSet:
    # Loaded once per directory, as the functions' wiring loads them once per container (each
    # load compiles new durable_rules rulesets, which are never freed).

    return load_rules(rules_dir)


def _open_escalations(stack: LocalStack, query: dict[str, str]) -> tuple[int, Any]:
    """The CS view (nudge.services.escalations) on the stack's tables, at the simulated now."""

    stack.settle()
    rules = _rules(stack.rules_dir)
    include_closed = query.get("all", "").lower() in ("1", "true", "yes")
    view = open_escalations(
        CaseRepository(stack.ledger, stack.store), rules, stack.clock.now(), include_closed=include_closed
    )
    return HTTPStatus.OK, view.model_dump(mode="json")


def _handle_escalation(stack: LocalStack, account_id: str, body: bytes) -> tuple[int, Any]:

    try:
        request = json.loads(body or b"{}")
        by, note = request.get("by"), request.get("note") or ""
        if not isinstance(by, str) or not by.strip() or not isinstance(note, str):
            raise ValueError(by)
    except (ValueError, AttributeError):
        return HTTPStatus.BAD_REQUEST, {"message": 'send {"by": "<who handled it>", "note": "<optional>"}'}
    stack.settle()
    rules = _rules(stack.rules_dir)
    try:
        handled = handle_escalation(
            CaseRepository(stack.ledger, stack.store), rules, account_id, by, note, stack.clock.now()
        )
    except NoOpenEscalation as exc:
        return HTTPStatus.NOT_FOUND, {"message": str(exc), "account_id": account_id}
    return HTTPStatus.OK, handled.model_dump(mode="json")
