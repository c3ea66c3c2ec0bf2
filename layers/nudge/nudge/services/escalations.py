"""The two things customer success does here: see the open escalations, and mark one handled.

Shared by `nudge escalations` (on the AWS tables) and the local stack's routes (on its tables).
Marking an escalation handled is what lets marketing to the account's users resume: the
guardrails only hold it back while the escalation is open (Escalation.is_open).
"""

from __future__ import annotations

from datetime import datetime

from pydantic import AwareDatetime, BaseModel

from nudge.domain.cs_view import CaseRecord, EscalationsView, escalations_view, status_of
from nudge.model.durations import format_duration
from nudge.model.ledger import Escalation
from nudge.ports import CsLedger, UsageStore
from nudge.rulebook.ruleset import RuleSet


class NoOpenEscalation(Exception):
    """The account has no open escalation to mark handled; the message says what it has."""


class HandledEscalation(BaseModel):
    """What `handle` did (printed by the CLI, answered by the local route)."""

    account_id: str
    account_name: str
    case_id: str
    rule: str
    opened_at: AwareDatetime
    handled_at: AwareDatetime
    handled_by: str
    note: str
    # Whether the guardrails were holding marketing back for it (escalations.suppress_marketing).
    marketing_resumed: bool


def open_escalations(
    repo: CaseRepository, rules: RuleSet, now: datetime, *, include_closed: bool = False
) -> EscalationsView:
    open_for = rules.guardrails.spec.escalations.open_for
    wanted = [
        (account, escalation, note)
        for account, escalation, note in repo.escalations()
        if include_closed or status_of(escalation, now, open_for) == "open"
    ]
    records = [repo.record(account, escalation, note) for account, escalation, note in wanted]
    return escalations_view(records, rules, now, include_closed=include_closed)


def handle_escalation(
    repo: CaseRepository, rules: RuleSet, account_id: str, by: str, note: str, now: datetime
) -> HandledEscalation:
    """Mark the account's open escalation handled by `by`; NoOpenEscalation when it has none."""
    if not by.strip():
        raise ValueError("say who handled it (--by NAME)")
    settings = rules.guardrails.spec.escalations
    found = repo.escalation(account_id)
    if found is None:
        raise NoOpenEscalation(f"account {account_id} has no escalation on record")
    escalation, _ = found
    status = status_of(escalation, now, settings.open_for)
    if status == "handled" and escalation.handled_at is not None:
        raise NoOpenEscalation(
            f"account {account_id} has no open escalation: the last one ({escalation.rule}, opened "
            f"{_when(escalation.opened_at)}) was handled by {escalation.handled_by or 'someone'} "
            f"at {_when(escalation.handled_at)}"
        )
    if status == "expired":
        raise NoOpenEscalation(
            f"account {account_id} has no open escalation: the last one ({escalation.rule}, opened "
            f"{_when(escalation.opened_at)}) closed by itself after "
            f"{format_duration(settings.open_for)} (guardrails escalations.open_for)"
        )
    handled = repo.handle(account_id, escalation.decision_id, by.strip(), note.strip(), now)
    if handled is None or handled.handled_at is None:
        raise NoOpenEscalation(f"account {account_id}'s escalation was just handled by someone else")
    return HandledEscalation(
        account_id=account_id,
        account_name=repo.account_name(account_id),
        case_id=handled.decision_id,
        rule=handled.rule,
        opened_at=handled.opened_at,
        handled_at=handled.handled_at,
        handled_by=handled.handled_by,
        note=note.strip(),
        marketing_resumed=settings.suppress_marketing,
    )


def _when(at: datetime) -> str:
    return at.strftime("%Y-%m-%d %H:%M %Z").strip()


class CaseRepository:
    def __init__(self, ledger: CsLedger, usage: UsageStore) -> None:
        self.ledger = ledger
        self.usage = usage

    def escalations(self) -> list[tuple[str, Escalation, str]]:
        """Every account's escalation, open or not: (account id, escalation, handling note)."""
        return self.ledger.list_escalations()

    def escalation(self, account_id: str) -> tuple[Escalation, str] | None:
        found = self.ledger.escalation_of(account_id)
        return (found[0].value, found[1]) if found is not None else None

    def record(self, account_id: str, escalation: Escalation, note: str = "") -> CaseRecord:
        """The escalation with what the view shows beside it: its decision, the account's traits
        and usage."""
        account = self.usage.load_account(account_id)
        return CaseRecord(
            account_id=account_id,
            escalation=escalation,
            note=note,
            entry=self.ledger.get(f"ACCOUNT#{account_id}", escalation.decision_id),
            traits=dict(account.value.trait_values()) if account is not None else {},
            rollup=self.usage.load_rollup(account_id),
        )

    def account_name(self, account_id: str) -> str:
        account = self.usage.load_account(account_id)
        name = account.value.trait_values().get("name") if account is not None else None
        return str(name) if name not in (None, "") else account_id

    def handle(
        self, account_id: str, decision_id: str, by: str, note: str, now: datetime
    ) -> Escalation | None:
        return self.ledger.handle_escalation_noted(account_id, decision_id, by, note, now)
