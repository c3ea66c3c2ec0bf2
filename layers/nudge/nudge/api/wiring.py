"""Build the ingest API's collaborators once per container, from settings."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import boto3
from aws_lambda_powertools.utilities import parameters

from nudge.api.auth import WriteKeys
from nudge.ingest.fold import FoldWindow
from nudge.ingest.service import IngestLimits
from nudge.rules.plan import TrackingPlan, load_plan
from nudge.settings import Settings, get_settings
from nudge.store.dynamo import DynamoUsageStore
from nudge.store.ports import UsageStore


@dataclass(frozen=True)
class Services:
    settings: Settings
    plan: TrackingPlan
    store: UsageStore
    keys: WriteKeys
    limits: IngestLimits


def limits_from(settings: Settings) -> IngestLimits:
    from datetime import timedelta

    return IngestLimits(
        max_future_skew=timedelta(seconds=settings.max_future_skew_seconds),
        retention=timedelta(days=settings.retention_days),
        window=FoldWindow(dedupe_days=settings.dedupe_days, weeks_kept=settings.weeks_kept),
        write_attempts=settings.write_attempts,
    )


@lru_cache(maxsize=1)
def services() -> Services:
    settings = get_settings()
    # A bad rule file fails here, at cold start, with file:line in the log: never half-evaluated.
    plan = load_plan(settings.rules_dir)
    client = boto3.client("dynamodb")
    name = settings.write_keys_param
    max_age = settings.write_keys_max_age_seconds

    def fetch_keys() -> str:
        value = parameters.get_parameter(name, decrypt=True, max_age=max_age)
        return str(value)

    return Services(
        settings=settings,
        plan=plan,
        store=DynamoUsageStore(client, settings.usage_table, settings.rollup_shards),
        keys=WriteKeys(fetch_keys),
        limits=limits_from(settings),
    )
