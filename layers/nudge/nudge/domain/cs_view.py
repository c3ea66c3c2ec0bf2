"""The escalations view: what an agent needs to work an at-risk account, one row per escalation.

Pure: built from what the ledger holds (the account's escalation, the decision that opened it),
the account's traits and usage rollup, and the rules, at `now`. The CLI (on AWS) and the local
stack's `GET /_local/escalations/open` both show these rows.

Nothing here names a user: the escalation is the account's, and the user whose evaluation raised
it may be known by an email address.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from nudge.conditions.features import AccountFacts, monday
from nudge.conditions.tree import Context, holds
from nudge.model.calendar import week_key
from nudge.model.decisions import Value
from nudge.model.ledger import Escalation, LedgerEntry
from nudge.model.state import AccountRollup, UserState
from nudge.rulebook.ruleset import RuleSet

Status = Literal["open", "handled", "expired"]
# What the escalate function tells CS when the trigger has no next_step of its own.
DEFAULT_NEXT_STEP = "Reach out to the account owner and review their usage."
USAGE_WEEKS = 4


class WeekUsage(BaseModel):
    """One ISO week of the account's usage (from its rollup)."""

    model_config = ConfigDict(frozen=True)

    week_start: date
    active_users: int = Field(ge=0)
    sessions: int = Field(ge=0)


class EscalationRow(BaseModel):
    """One account's escalation as an agent sees it (and as `--json` prints it)."""

    model_config = ConfigDict(frozen=True)

    account_id: str
    account_name: str
    plan: str | None = None
    mrr: float | None = None
    seats: int | None = None
    cs_owner: str | None = None
    # The account's health now (rules/scoring.yaml's account score and band).
    score: float
    band: str
    rule: str
    reason: str
    facts: dict[str, Value]
    next_step: str
    case_id: str  # the decision that opened it, as the CS queue's case has it
    status: Status
    opened_at: AwareDatetime
    age_seconds: int
    # When it closes by itself if nobody handles it (guardrails escalations.open_for).
    open_until: AwareDatetime
    handled_at: AwareDatetime | None = None
    handled_by: str = ""
    note: str = ""
    # The last USAGE_WEEKS ISO weeks, the current one last (so far this week), zero when idle.
    usage: list[WeekUsage]


class EscalationsView(BaseModel):
    """The document `--json` prints and the local route answers."""

    now: AwareDatetime
    count: int
    escalations: list[EscalationRow]


@dataclass(frozen=True)
class CaseRecord:
    """Everything stored about one account's escalation."""

    account_id: str
    escalation: Escalation
    note: str = ""
    entry: LedgerEntry | None = None  # ACCOUNT#<id>/DECISION#<decision id>
    traits: dict[str, object] = field(default_factory=dict)
    rollup: AccountRollup = field(default_factory=AccountRollup)


def status_of(escalation: Escalation, now: datetime, open_for: timedelta) -> Status:
    """Open while the guardrails hold marketing back for it (Escalation.is_open)."""
    if escalation.handled_at is not None:
        return "handled"
    return "open" if escalation.is_open(now, open_for) else "expired"


def escalation_row(record: CaseRecord, rules: RuleSet, now: datetime) -> EscalationRow:
    escalation = record.escalation
    open_for = rules.guardrails.spec.escalations.open_for
    traits = record.traits
    spec = rules.spec_by_rule.get(escalation.rule)  # a trigger's, or a journey's as a rule
    decision = record.entry.decision if record.entry is not None else None
    score = account_score(rules, record.account_id, traits, record.rollup, now)
    reason = spec.description if spec is not None else ""
    if decision is not None:
        reason = decision.reason
    return EscalationRow(
        account_id=record.account_id,
        account_name=_text(traits.get("name")) or record.account_id,
        plan=_text(traits.get("plan")),
        mrr=float(mrr) if (mrr := _number(traits.get("mrr"))) is not None else None,
        seats=int(seats) if (seats := _number(traits.get("seats"))) is not None else None,
        cs_owner=_text(traits.get("cs_owner")),
        score=score,
        band=rules.account_score.band(score),
        rule=escalation.rule,
        reason=reason or escalation.rule,
        facts=dict(decision.facts) if decision is not None else {},
        next_step=(spec.next_step if spec is not None else "") or DEFAULT_NEXT_STEP,
        case_id=escalation.decision_id,
        status=status_of(escalation, now, open_for),
        opened_at=escalation.opened_at,
        age_seconds=max(0, int((now - escalation.opened_at).total_seconds())),
        open_until=escalation.opened_at + open_for,
        handled_at=escalation.handled_at,
        handled_by=escalation.handled_by,
        note=record.note,
        usage=recent_usage(record.rollup, now),
    )


def escalations_view(
    records: Iterable[CaseRecord], rules: RuleSet, now: datetime, *, include_closed: bool = False
) -> EscalationsView:
    """The open escalations (with `include_closed`, the handled and expired ones too), newest first."""
    rows = [escalation_row(record, rules, now) for record in records]
    if not include_closed:
        rows = [row for row in rows if row.status == "open"]
    rows.sort(key=lambda row: (-row.opened_at.timestamp(), row.account_id))
    return EscalationsView(now=now, count=len(rows), escalations=rows)


def account_score(
    rules: RuleSet, account_id: str, traits: dict[str, object], rollup: AccountRollup, now: datetime
) -> float:
    """The account's score: the points of the account signals that hold (they read the account's
    traits and usage only, so no user is needed)."""
    ctx = Context(
        user=UserState(user_id=f"account:{account_id}"), now=now, account=AccountFacts(traits, rollup)
    )
    return float(sum(signal.points for signal in rules.account_score.signals if holds(signal.condition, ctx)))


def recent_usage(rollup: AccountRollup, now: datetime, weeks: int = USAGE_WEEKS) -> list[WeekUsage]:
    """Active users and sessions of the last `weeks` ISO weeks, oldest first, this week last."""
    this_monday = monday(now.astimezone(UTC).date())
    usage: list[WeekUsage] = []
    for back in range(weeks - 1, -1, -1):
        start = this_monday - timedelta(weeks=back)
        stats = rollup.weeks.get(week_key(start))
        usage.append(
            WeekUsage(
                week_start=start,
                active_users=stats.active_users if stats else 0,
                sessions=stats.sessions if stats else 0,
            )
        )
    return usage


def format_age(seconds: int) -> str:
    """ "3d 4h", "5h 12m", "7m": how long ago, to the two largest units."""
    days, rest = divmod(max(0, seconds), 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    return f"{minutes}m"


def _text(value: object) -> str | None:
    return str(value) if value not in (None, "") else None


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)
