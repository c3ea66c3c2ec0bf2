"""The ingest and privacy APIs' services: usage store, ledger, API keys, rate-limit counters, the
unsubscribe and user-token secrets."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

import boto3
from aws_lambda_powertools.utilities import parameters

from nudge.adapters.dynamo.accounts import DynamoAccountLedger
from nudge.adapters.dynamo.inbox import DynamoInbox
from nudge.adapters.dynamo.ledger import DynamoLedger
from nudge.adapters.dynamo.rate_limits import DynamoRateCounter
from nudge.adapters.dynamo.segments import DynamoSegmentStore
from nudge.adapters.dynamo.suppression import DynamoSuppressionStore
from nudge.adapters.dynamo.usage import DynamoUsageStore
from nudge.adapters.sqs import SqsIngestBuffer
from nudge.bootstrap import built_once, configured, state_ttl
from nudge.bootstrap.plan import plan_or_explain
from nudge.bootstrap.shared import UNSUBSCRIBE_SECRETS_MAX_AGE_SECONDS, ssm_on_default_session
from nudge.domain.fold import FoldWindow
from nudge.domain.tokens import parse_secrets
from nudge.observability import logger
from nudge.ports import Inbox, IngestBuffer, Ledger, RateCounter, SegmentStore, UsageStore
from nudge.rulebook.plan import TrackingPlan
from nudge.services.auth import ApiKeys
from nudge.services.erasure import AccountLedger
from nudge.services.ingest import IngestLimits
from nudge.services.rate_limit import LeasedRateCounter
from nudge.services.suppression import SuppressionList
from nudge.settings import Settings


@dataclass(frozen=True)
class Services:
    settings: Settings
    plan: TrackingPlan
    store: UsageStore
    keys: ApiKeys
    limits: IngestLimits
    # Client keys: their rate-limit counters and the secrets their user tokens are checked with.
    rate_counter: RateCounter
    user_token_secrets: Callable[[], tuple[bytes, ...]]
    # Unsubscribe links and erasure (entrypoints.http.privacy_api).
    segments: SegmentStore
    ledger: Ledger
    accounts: AccountLedger
    unsubscribe_secrets: Callable[[], tuple[bytes, ...]]
    # Where an unsubscribe records the address, so it outlives erasure (None: nowhere, in tests of
    # other routes).
    suppressions: SuppressionList | None = None
    # The in-app inbox (entrypoints.http.inbox_api; None: none, in tests of other routes).
    inbox: Inbox | None = None
    # The buffered front door's queue (settings.ingest_queue_url): tracking messages go there
    # instead of the store (None: written at once, the HTTP API's way).
    buffer: IngestBuffer | None = None


def limits_from(settings: Settings) -> IngestLimits:
    return IngestLimits(
        max_future_skew=timedelta(seconds=settings.max_future_skew_seconds),
        retention=timedelta(days=settings.retention_days),
        window=FoldWindow(dedupe_days=settings.dedupe_days, weeks_kept=settings.weeks_kept),
        write_attempts=settings.write_attempts,
    )


@built_once
def services() -> Services:
    settings = configured()
    # A bad rule file fails here, at cold start, with file:line in the log: never half-evaluated.
    plan = plan_or_explain(settings.rules_dir)
    client = boto3.client("dynamodb")

    def fetch_keys() -> dict[str, str]:
        # One GetParametersByPath (paged) per max_age at most; a revoked key's parameter is gone
        # from the next read, so it stops working within keys_max_age_seconds.
        ssm_on_default_session()
        values = parameters.get_parameters(
            settings.keys_path, decrypt=True, recursive=False, max_age=settings.keys_max_age_seconds
        )
        return {str(name).rpartition("/")[2]: str(value) for name, value in values.items()}

    def fetch_user_token_secrets() -> tuple[bytes, ...]:
        try:
            ssm_on_default_session()
            value = parameters.get_parameter(
                settings.user_token_secret_param, decrypt=True, max_age=settings.keys_max_age_seconds
            )
        except Exception as exc:  # no secret: no token verifies, sensitive fields are dropped
            logger.error("user-token secret unavailable", extra={"cause": type(exc).__name__})
            return ()
        return parse_secrets(str(value))

    def fetch_unsubscribe_secrets() -> tuple[bytes, ...]:
        ssm_on_default_session()
        value = parameters.get_parameter(
            settings.unsubscribe_secret_param, decrypt=True, max_age=UNSUBSCRIBE_SECRETS_MAX_AGE_SECONDS
        )
        return parse_secrets(str(value))

    def fetch_suppression_secrets() -> tuple[bytes, ...]:
        ssm_on_default_session()
        value = parameters.get_parameter(
            settings.suppression_secret_param, decrypt=True, max_age=UNSUBSCRIBE_SECRETS_MAX_AGE_SECONDS
        )
        return parse_secrets(str(value))

    return Services(
        settings=settings,
        plan=plan,
        store=DynamoUsageStore(
            client, settings.usage_table, settings.rollup_shards, state_ttl=state_ttl(settings)
        ),
        keys=ApiKeys(fetch_keys),
        limits=limits_from(settings),
        # One shared write per lease of the window's budget, not per request (services.rate_limit).
        rate_counter=LeasedRateCounter(DynamoRateCounter(client, settings.rate_limit_table)),
        user_token_secrets=fetch_user_token_secrets,
        segments=DynamoSegmentStore(
            client, settings.usage_table, index=settings.due_index, due_shards=settings.due_shards
        ),
        ledger=DynamoLedger(
            client,
            settings.ledger_table,
            timedelta(days=settings.ledger_retention_days),
            state_ttl=state_ttl(settings),
        ),
        accounts=DynamoAccountLedger(client, settings.ledger_table),
        unsubscribe_secrets=fetch_unsubscribe_secrets,
        suppressions=SuppressionList(
            DynamoSuppressionStore(client, settings.suppression_table), fetch_suppression_secrets
        ),
        inbox=DynamoInbox(client, settings.ledger_table),
        buffer=SqsIngestBuffer(boto3.client("sqs"), settings.ingest_queue_url)
        if settings.ingest_queue_url
        else None,
    )
