"""The ingest queue consumer's services: the tracking plan, the usage store and ingest's limits
(what `store_admitted` needs, nothing of the API's keys or secrets)."""

from __future__ import annotations

from dataclasses import dataclass

import boto3

from nudge.adapters.dynamo.usage import DynamoUsageStore
from nudge.bootstrap import built_once, configured, state_ttl
from nudge.bootstrap.api import limits_from
from nudge.bootstrap.plan import plan_or_explain
from nudge.ports import UsageStore
from nudge.rulebook.plan import TrackingPlan
from nudge.services.ingest import IngestLimits


@dataclass(frozen=True)
class IngestQueueServices:
    plan: TrackingPlan
    store: UsageStore
    limits: IngestLimits


@built_once
def ingest_queue_services() -> IngestQueueServices:
    settings = configured()
    # A bad rule file fails here, at cold start, with file:line in the log.
    plan = plan_or_explain(settings.rules_dir)
    store = DynamoUsageStore(
        boto3.client("dynamodb"), settings.usage_table, settings.rollup_shards, state_ttl=state_ttl(settings)
    )
    return IngestQueueServices(plan=plan, store=store, limits=limits_from(settings))
