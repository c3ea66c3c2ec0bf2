"""What is next for one user, and when, from what the stores hold: pure, for `nudge rules explain`.

    upcoming(rules, fired, record, entries, delivery, now) -> [Upcoming], soonest first

- a decision deferred by quiet hours is judged again when they end (sent if the rule still holds);
- the time-based re-check (the sweep) judges segments and absence rules again at `next_check_at`;
- a rule that holds now: not again before its cooldown ends, never again if `once` and sent,
  else a decision at the next evaluation, judged by the guardrails.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from nudge.model.delivery import DeliveryRecord
from nudge.model.ledger import LedgerEntry
from nudge.model.segments import SegmentRecord
from nudge.rulebook.ruleset import RuleSet


@dataclass(frozen=True)
class Upcoming:
    at: datetime | None  # None: at the user's next evaluation (their next event or re-check)
    what: str


def _span(delta: timedelta) -> str:
    days = delta.total_seconds() / 86400
    return f"{days:g}d" if days >= 1 else f"{delta.total_seconds() / 3600:g}h"


def upcoming(
    rules: RuleSet,
    fired: Sequence[str],
    record: SegmentRecord | None,
    entries: Iterable[LedgerEntry],
    delivery: DeliveryRecord,
    now: datetime,
) -> list[Upcoming]:
    found: list[Upcoming] = []
    for entry in entries:
        if entry.outcome == "deferred" and entry.deliver_at is not None:
            d = entry.decision
            found.append(
                Upcoming(
                    entry.deliver_at,
                    f"{d.rule} ({d.channel}), deferred for {entry.reason or 'quiet hours'}: judged again, "
                    "sent if the rule still holds",
                )
            )
    if record is not None and record.next_check_at is not None:
        found.append(
            Upcoming(record.next_check_at, "time-based re-check: segments and absence rules judged again")
        )
    for rule in dict.fromkeys(fired):
        trigger = rules.trigger_by_id.get(rule)
        if trigger is None or trigger.spec.action == "escalate":
            continue
        spec, last = trigger.spec, delivery.last_by_rule.get(rule)
        if last is not None and spec.once:
            found.append(Upcoming(None, f"{rule} holds, but it is sent once and went on {last:%Y-%m-%d}"))
        elif last is not None and now - last < spec.cooldown:
            found.append(
                Upcoming(last + spec.cooldown, f"{rule} holds; its cooldown ({_span(spec.cooldown)}) ends")
            )
        else:
            found.append(
                Upcoming(None, f"{rule} holds: a decision at the next evaluation, judged by the guardrails")
            )
    return sorted(found, key=lambda u: (u.at is None, u.at or now, u.what))
