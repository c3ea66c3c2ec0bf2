"""The rollup function's services: the usage table's rollup ledger."""

from __future__ import annotations

import boto3

from nudge.adapters.dynamo.rollups import DynamoRollupLedger
from nudge.bootstrap import built_once, configured


@built_once
def wire_rollups() -> DynamoRollupLedger:
    settings = configured()
    return DynamoRollupLedger(boto3.client("dynamodb"), settings.usage_table, settings.rollup_shards)
