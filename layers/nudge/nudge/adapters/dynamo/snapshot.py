"""Every user, segment record, account and ledger entry read from the tables at once (a Scan):
what `nudge report` and the local stack's report draw from. Reports only, never a Lambda's path."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from nudge.adapters.dynamo import codec
from nudge.adapters.dynamo.inbox import scan_inbox
from nudge.adapters.dynamo.ledger import DynamoLedger
from nudge.adapters.dynamo.segments import record_of
from nudge.domain.report import Snapshot
from nudge.model.journeys import JourneyInstance
from nudge.model.segments import SegmentRecord
from nudge.model.state import AccountState, UserState

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient


def scan_usage(
    client: DynamoDBClient, table: str
) -> tuple[dict[str, UserState], dict[str, SegmentRecord], dict[str, AccountState]]:
    """Every user state, segment record and account of the usage table (a Scan: reports only)."""

    users: dict[str, UserState] = {}
    records: dict[str, SegmentRecord] = {}
    accounts: dict[str, AccountState] = {}
    kwargs: dict[str, Any] = {"TableName": table}
    while True:
        page = client.scan(**kwargs)
        for item in page.get("Items", []):
            pk, sk = item["pk"]["S"], item["sk"]["S"]
            if pk.startswith("USER#") and sk == "STATE":
                if "merged_into" in item:
                    continue  # an id merged into a person: its history is theirs
                users[pk[5:]] = codec.decode(item["state"]["B"], UserState)
            elif pk.startswith("USER#") and sk == "SEGMENTS":
                records[pk[5:]] = record_of(item)
            elif pk.startswith("ACCOUNT#") and sk == "TRAITS":
                accounts[pk[8:]] = codec.decode(item["state"]["B"], AccountState)
        if "LastEvaluatedKey" not in page:
            return users, records, accounts
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def scan_journeys(client: DynamoDBClient, table: str) -> Iterator[tuple[str, dict[str, JourneyInstance]]]:
    """Each user's journey instances, from the segment records of the usage table (a Scan of the
    SEGMENTS items only: `nudge journeys snapshot`, never a Lambda's path)."""
    kwargs: dict[str, Any] = {
        "TableName": table,
        "FilterExpression": "sk = :segments",
        "ExpressionAttributeValues": {":segments": {"S": "SEGMENTS"}},
    }
    while True:
        page = client.scan(**kwargs)
        for item in page.get("Items", []):
            if item["pk"]["S"].startswith("USER#"):
                record = record_of(item)
                if record.journeys:
                    yield item["pk"]["S"][5:], record.journeys
        if "LastEvaluatedKey" not in page:
            return
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def snapshot_from_tables(client: DynamoDBClient, usage_table: str, ledger_table: str) -> Snapshot:

    users, records, accounts = scan_usage(client, usage_table)
    entries = DynamoLedger(client, ledger_table).scan_entries()
    # In-app messages live in the ledger table beside their decisions: what users did with them.
    inbox = {m.message_id: m for m in scan_inbox(client, ledger_table)}
    return Snapshot(users, records, accounts, entries, inbox)
