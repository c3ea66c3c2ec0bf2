"""The feedback function's services: the ledger, the suppression list and the soft-bounce counts."""

from __future__ import annotations

import boto3

from nudge.adapters.dynamo.soft_bounces import DynamoSoftBounces
from nudge.bootstrap import built_once, configured
from nudge.bootstrap.shared import ledger_from, suppression_list_from
from nudge.services.feedback import FeedbackPorts


@built_once
def wire_feedback() -> FeedbackPorts:
    settings = configured()
    return FeedbackPorts(
        ledger=ledger_from(settings),
        suppressions=suppression_list_from(settings),
        soft_bounces=DynamoSoftBounces(boto3.client("dynamodb"), settings.ledger_table),
    )
