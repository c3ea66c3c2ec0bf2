"""What `nudge demo` prints about channels: every message sent, per rule or journey step and channel
(email, push, SMS, in-app, CS), and what the users did with their in-app messages and surveys.

Read back from the stack, not from what the demo meant to do: the ledger says what was sent on which
channel (the channel chosen of a step's list), the inbox items (in the ledger table, beside their
decisions) say what each user did with their in-app message and which answer a survey got.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

from rich.console import Console
from rich.table import Table

from nudge.adapters.dynamo.inbox import scan_inbox
from nudge.domain.report import in_app_reached
from nudge.model.inapp import InAppMessage
from nudge.model.ledger import LedgerEntry
from nudge.tools.local.demo_inbox import InboxTally
from nudge.tools.local.stack import LocalStack

CHANNELS = ("email", "push", "sms", "in_app", "cs")


def step_label(entry: LedgerEntry) -> str:
    """A one-shot rule's id, or journey:step for a journey's message."""
    d = entry.decision
    return f"{d.rule}:{d.step}" if d.step else d.rule


def channel_counts(entries: Sequence[LedgerEntry]) -> dict[str, Counter[str]]:
    """Rule or journey step -> channel -> messages sent (the ledger's sent entries)."""
    counts: dict[str, Counter[str]] = {}
    for entry in entries:
        if entry.outcome == "send" and entry.status == "sent":
            counts.setdefault(step_label(entry), Counter())[entry.decision.channel] += 1
    return counts


def in_app_counts(
    entries: Sequence[LedgerEntry], messages: Mapping[str, InAppMessage]
) -> tuple[dict[str, Counter[str]], Counter[str]]:
    """Per rule or journey step, the in-app messages put in inboxes and how far users took them
    (seen, clicked, answered, dismissed); and the survey answers given (property=answer)."""
    per_step: dict[str, Counter[str]] = {}
    answers: Counter[str] = Counter()
    for entry in entries:
        if entry.decision.channel != "in_app" or entry.status != "sent":
            continue
        counts = per_step.setdefault(step_label(entry), Counter())
        counts["sent"] += 1
        message = messages.get(entry.decision_id)
        if message is None:
            continue  # expired and gone from the table (TTL), or erased
        counts.update(in_app_reached(message))
        if message.answer is not None and message.survey is not None:
            answers[f"{message.survey.property}={message.answer}"] += 1
    return per_step, answers


def inbox_messages(stack: LocalStack) -> dict[str, InAppMessage]:
    """Every in-app message still stored, by message id (= decision id)."""
    return {m.message_id: m for m in scan_inbox(stack.store.client, stack.settings.ledger_table)}


def print_channels(console: Console, stack: LocalStack, tally: InboxTally) -> None:
    entries = stack.decisions()
    counts = channel_counts(entries)
    table = Table(title="Messages sent, by rule or journey step and channel (the ledger)")
    table.add_column("rule / journey:step", no_wrap=True)
    for channel in CHANNELS:
        table.add_column(channel.replace("_", "-"), justify="right")
    totals: Counter[str] = Counter()
    for label, c in sorted(counts.items(), key=lambda item: (-sum(item[1].values()), item[0])):
        totals.update(c)
        table.add_row(label, *(f"{c[ch]:,}" if c[ch] else "-" for ch in CHANNELS))
    table.add_row("all", *(f"{totals[ch]:,}" for ch in CHANNELS), style="bold")
    console.print(table)

    per_step, answers = in_app_counts(entries, inbox_messages(stack))
    inapp = Table(title="In-app messages and surveys: what the users did (the inbox, read back)")
    inapp.add_column("rule / journey:step", no_wrap=True)
    for column in ("in inboxes", "seen", "clicked", "answered", "dismissed"):
        inapp.add_column(column, justify="right")
    for label, c in sorted(per_step.items()):
        inapp.add_row(label, *(f"{c[k]:,}" for k in ("sent", "seen", "clicked", "answered", "dismissed")))
    console.print(inapp)
    given = ", ".join(f"{answer} {n:,}" for answer, n in answers.most_common()) or "none"
    visits = ", ".join(f"{n:,} {outcome}" for outcome, n in sorted(tally.outcomes.items())) or "none"
    console.print(
        f"Survey answers: {given}. The sample's users visited {sum(tally.outcomes.values()):,} times "
        f"to see an in-app message through GET /v1/inbox with an inbox token ({visits})."
    )
