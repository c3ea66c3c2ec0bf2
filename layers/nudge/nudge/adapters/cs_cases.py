"""Where the escalations view reads: the ledger (escalations, the decisions that opened them) and
the usage table (account traits, weekly rollup). DynamoDB on AWS and in the local stack; the
in-memory fakes in unit tests."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Protocol

from nudge.domain.cs_view import CaseRecord
from nudge.model.ledger import Escalation, LedgerEntry
from nudge.ports import UsageStore, Versioned

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient

    from nudge.settings import Settings


class CsLedger(Protocol):
    """What customer success needs of the ledger (DynamoLedger and MemoryLedger have it)."""

    def get(self, subject: str, decision_id: str) -> LedgerEntry | None: ...

    def escalation_of(self, account_id: str) -> tuple[Versioned[Escalation], str] | None: ...

    def list_escalations(self) -> list[tuple[str, Escalation, str]]: ...

    def handle_escalation_noted(
        self, account_id: str, decision_id: str, by: str, note: str, now: datetime
    ) -> Escalation | None: ...


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


def aws_repository(settings: Settings, client: DynamoDBClient | None = None) -> CaseRepository:
    """The repository on the tables `settings` names (NUDGE_LEDGER_TABLE, NUDGE_USAGE_TABLE), in
    the region and with the credentials boto3 finds in the environment."""
    import boto3

    from nudge.adapters.dynamo.ledger import DynamoLedger
    from nudge.adapters.dynamo.usage import DynamoUsageStore

    dynamodb: DynamoDBClient = client if client is not None else boto3.client("dynamodb")
    return CaseRepository(
        DynamoLedger(dynamodb, settings.ledger_table, timedelta(days=settings.ledger_retention_days)),
        DynamoUsageStore(dynamodb, settings.usage_table, settings.rollup_shards),
    )
