"""The ingest and privacy APIs' services: usage store, ledger, write keys, unsubscribe secrets."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

import boto3
from aws_lambda_powertools.utilities import parameters

from nudge.adapters.dynamo.accounts import DynamoAccountLedger
from nudge.adapters.dynamo.ledger import DynamoLedger
from nudge.adapters.dynamo.segments import DynamoSegmentStore
from nudge.adapters.dynamo.usage import DynamoUsageStore
from nudge.bootstrap import UNSUBSCRIBE_SECRETS_MAX_AGE_SECONDS, built_once
from nudge.domain.fold import FoldWindow
from nudge.ports import Ledger, SegmentStore, UsageStore
from nudge.rulebook.plan import TrackingPlan, load_plan
from nudge.services.auth import WriteKeys
from nudge.services.erasure import AccountLedger
from nudge.services.ingest import IngestLimits
from nudge.services.unsubscribe import parse_secrets
from nudge.settings import Settings, get_settings


@dataclass(frozen=True)
class Services:
    settings: Settings
    plan: TrackingPlan
    store: UsageStore
    keys: WriteKeys
    limits: IngestLimits
    # Unsubscribe links and erasure (entrypoints.http.privacy_api).
    segments: SegmentStore
    ledger: Ledger
    accounts: AccountLedger
    unsubscribe_secrets: Callable[[], tuple[bytes, ...]]


def limits_from(settings: Settings) -> IngestLimits:
    return IngestLimits(
        max_future_skew=timedelta(seconds=settings.max_future_skew_seconds),
        retention=timedelta(days=settings.retention_days),
        window=FoldWindow(dedupe_days=settings.dedupe_days, weeks_kept=settings.weeks_kept),
        write_attempts=settings.write_attempts,
    )


@built_once
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

    def fetch_unsubscribe_secrets() -> tuple[bytes, ...]:
        value = parameters.get_parameter(
            settings.unsubscribe_secret_param, decrypt=True, max_age=UNSUBSCRIBE_SECRETS_MAX_AGE_SECONDS
        )
        return parse_secrets(str(value))

    return Services(
        settings=settings,
        plan=plan,
        store=DynamoUsageStore(client, settings.usage_table, settings.rollup_shards),
        keys=WriteKeys(fetch_keys),
        limits=limits_from(settings),
        segments=DynamoSegmentStore(
            client, settings.usage_table, index=settings.due_index, due_shards=settings.due_shards
        ),
        ledger=DynamoLedger(client, settings.ledger_table, timedelta(days=settings.ledger_retention_days)),
        accounts=DynamoAccountLedger(client, settings.ledger_table),
        unsubscribe_secrets=fetch_unsubscribe_secrets,
    )
