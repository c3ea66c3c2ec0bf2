"""`nudge rules explain` on live state: the DynamoDB adapters over the deployed tables (or the
local stack's, through its moto endpoint), and a stack's table names from its CloudFormation
outputs."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

import boto3

from nudge.adapters.dynamo.ledger import DynamoLedger
from nudge.adapters.dynamo.segments import DynamoSegmentStore
from nudge.adapters.dynamo.usage import DynamoUsageStore
from nudge.bootstrap import state_ttl
from nudge.bootstrap.stacks import stack_outputs
from nudge.services.explain import ExplainPorts
from nudge.settings import Settings

if TYPE_CHECKING:
    from mypy_boto3_cloudformation.client import CloudFormationClient
    from mypy_boto3_dynamodb.client import DynamoDBClient

# The outputs of template.yaml that name the tables explain reads.
USAGE_OUTPUT, LEDGER_OUTPUT = "UsageTableName", "LedgerTableName"


def explain_ports(
    settings: Settings, *, with_ledger: bool = True, client: DynamoDBClient | None = None, source: str = ""
) -> ExplainPorts:
    """The stores on the tables `settings` names, read-only in practice (explain writes nothing)."""
    dynamodb: DynamoDBClient = client if client is not None else boto3.client("dynamodb")
    ttl = state_ttl(settings)
    return ExplainPorts(
        usage=DynamoUsageStore(
            dynamodb,
            settings.usage_table,
            settings.rollup_shards,
            account_index=settings.account_index,
            state_ttl=ttl,
        ),
        segments=DynamoSegmentStore(
            dynamodb,
            settings.usage_table,
            index=settings.due_index,
            due_shards=settings.due_shards,
            state_ttl=ttl,
        ),
        ledger=(
            DynamoLedger(
                dynamodb,
                settings.ledger_table,
                timedelta(days=settings.ledger_retention_days),
                state_ttl=ttl,
            )
            if with_ledger
            else None
        ),
        source=source
        or f"table {settings.usage_table}" + (f" and {settings.ledger_table}" if with_ledger else ""),
    )


def stack_tables(stack: str, client: CloudFormationClient | None = None) -> tuple[str, str]:
    """(usage table, ledger table) from the stack's outputs."""
    outputs = stack_outputs(stack, (USAGE_OUTPUT, LEDGER_OUTPUT), client)
    return outputs[USAGE_OUTPUT], outputs[LEDGER_OUTPUT]
