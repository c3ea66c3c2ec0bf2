"""The customer-success CLI's case repository over the ledger table."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

import boto3

from nudge.adapters.dynamo.ledger import DynamoLedger
from nudge.adapters.dynamo.usage import DynamoUsageStore
from nudge.services.escalations import CaseRepository
from nudge.settings import Settings

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient

    from nudge.settings import Settings


def aws_repository(settings: Settings, client: DynamoDBClient | None = None) -> CaseRepository:
    """The repository on the tables `settings` names (NUDGE_LEDGER_TABLE, NUDGE_USAGE_TABLE), in
    the region and with the credentials boto3 finds in the environment."""

    dynamodb: DynamoDBClient = client if client is not None else boto3.client("dynamodb")
    return CaseRepository(
        DynamoLedger(dynamodb, settings.ledger_table, timedelta(days=settings.ledger_retention_days)),
        DynamoUsageStore(dynamodb, settings.usage_table, settings.rollup_shards),
    )
