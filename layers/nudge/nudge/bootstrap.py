"""The one setup root: what each function kind needs, built once per container from settings.

- `services()`: the ingest and privacy HTTP APIs (usage store, write keys, ledger, secrets);
- `wire()`: the evaluate and sweep functions (rules, stores, the decision queue, metrics);
- `wire_dispatch()`: the dispatch function (rules, ledger, the channel queues);
- `wire_deliver(channel)`: one action function (email, notify or escalate).

A bad rule file or a missing setting fails here, at cold start, with every problem logged. Only
this module (and tools/) reads settings and makes boto3 clients; `reset()` forgets what was built,
for tests and for the local stack, which changes the environment between runs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import boto3
from aws_lambda_powertools.utilities import parameters

from nudge.adapters.cs_desk import SqsEscalationDesk
from nudge.adapters.dynamo.accounts import DynamoAccountLedger
from nudge.adapters.dynamo.ledger import DynamoLedger
from nudge.adapters.dynamo.segments import DynamoSegmentStore
from nudge.adapters.dynamo.usage import DynamoUsageStore
from nudge.adapters.metrics import PowertoolsEvaluationMetrics
from nudge.adapters.ses import SesEmailSender
from nudge.adapters.sns import SnsNotifier, SnsPushEndpoints
from nudge.adapters.sqs import SqsDecisionPublisher, SqsDeliveryRouter
from nudge.domain.fold import FoldWindow
from nudge.observability import logger, metrics
from nudge.ports import Ledger, SegmentStore, UsageStore
from nudge.rulebook.plan import TrackingPlan, load_plan
from nudge.rulebook.ruleset import RuleSet, load_rules
from nudge.rulebook.yamlfile import RuleFileError
from nudge.services.auth import WriteKeys
from nudge.services.deliver import Channels, DeliverPorts
from nudge.services.dispatch import DispatchPorts
from nudge.services.erasure import AccountLedger
from nudge.services.escalations import CaseRepository
from nudge.services.evaluate import RulesPorts, SegmentRechecks, SweepOptions
from nudge.services.ingest import IngestLimits
from nudge.services.unsubscribe import parse_secrets
from nudge.settings import Settings, get_settings

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient

    from nudge.settings import Settings


@dataclass(frozen=True)
class RulesService:
    """Everything the evaluate and sweep Lambdas need, built once per container."""

    settings: Settings
    rules: RuleSet
    ports: RulesPorts
    options: SweepOptions
    attempts: int
    metrics: PowertoolsEvaluationMetrics


def load_rules_or_explain(rules_dir: Path) -> RuleSet:
    """load_rules, logging every problem as file:line: message before failing the cold start."""
    try:
        return load_rules(rules_dir)
    except RuleFileError as exc:
        logger.error(
            "rule files are invalid; fix them (nudge rules lint) and deploy again",
            extra={"rules_dir": str(rules_dir), "problems": [str(p) for p in exc.problems]},
        )
        raise


def sweep_options(settings: Settings) -> SweepOptions:
    return SweepOptions(
        page_size=settings.sweep_page_size,
        lookback=timedelta(days=settings.sweep_lookback_days),
        retry_after=timedelta(seconds=settings.sweep_retry_seconds),
        margin_seconds=settings.sweep_margin_seconds,
        attempts=settings.evaluate_attempts,
    )


@lru_cache(maxsize=1)
def wire() -> RulesService:
    """Rules, DynamoDB stores and the SQS publisher from settings; a bad rule file fails here."""

    settings = get_settings()
    rules = load_rules_or_explain(settings.rules_dir)
    if not settings.decision_queue_url:
        raise ValueError("NUDGE_DECISION_QUEUE_URL is not set: decisions would have nowhere to go")
    dynamodb = boto3.client("dynamodb")
    observed = PowertoolsEvaluationMetrics(metrics)
    ports = RulesPorts(
        usage=DynamoUsageStore(
            dynamodb, settings.usage_table, settings.rollup_shards, account_index=settings.account_index
        ),
        segments=DynamoSegmentStore(
            dynamodb, settings.usage_table, index=settings.due_index, due_shards=settings.due_shards
        ),
        publisher=SqsDecisionPublisher(boto3.client("sqs"), settings.decision_queue_url),
        metrics=observed,
    )
    return RulesService(settings, rules, ports, sweep_options(settings), settings.evaluate_attempts, observed)


# How long the unsubscribe secrets are cached: a rotation reaches every container within it.
UNSUBSCRIBE_SECRETS_MAX_AGE_SECONDS = 300


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


@dataclass(frozen=True)
class DispatchService:
    settings: Settings
    rules: RuleSet
    ports: DispatchPorts


@dataclass(frozen=True)
class DeliverService:
    settings: Settings
    rules: RuleSet
    ports: DeliverPorts


def _ledger(settings: Settings) -> DynamoLedger:

    return DynamoLedger(
        boto3.client("dynamodb"),
        settings.ledger_table,
        retention=timedelta(days=settings.ledger_retention_days),
    )


def wire_dispatch() -> DispatchService:
    """Rules, ledger, usage store, channel queues; a bad rule file or a missing queue fails here."""

    settings = get_settings()
    rules = load_rules_or_explain(settings.rules_dir)
    queues = {
        "email": settings.email_queue_url,
        "push": settings.notify_queue_url,
        "sms": settings.notify_queue_url,
        "cs": settings.escalation_queue_url,
    }
    missing = sorted(channel for channel, url in queues.items() if not url)
    if missing:
        raise ValueError(
            f"no queue URL for {', '.join(missing)}: set NUDGE_EMAIL/NOTIFY/ESCALATION_QUEUE_URL"
        )
    dynamodb = boto3.client("dynamodb")
    segments = DynamoSegmentStore(
        dynamodb, settings.usage_table, index=settings.due_index, due_shards=settings.due_shards
    )
    ports = DispatchPorts(
        ledger=_ledger(settings),
        usage=DynamoUsageStore(dynamodb, settings.usage_table, settings.rollup_shards),
        router=SqsDeliveryRouter(boto3.client("sqs"), queues),
        rechecks=SegmentRechecks(segments),
    )
    return DispatchService(settings, rules, ports)


def wire_deliver(channel: str) -> DeliverService:
    """One action function's collaborators: `email`, `notify` (push and SMS) or `escalate`."""
    settings = get_settings()
    rules = load_rules_or_explain(settings.rules_dir)
    channels = Channels()
    if channel == "email":
        channels = Channels(
            email=SesEmailSender(
                boto3.client("sesv2"), configuration_set=settings.ses_configuration_set or None
            )
        )
    elif channel == "notify":
        sns = boto3.client("sns")
        endpoints = (
            SnsPushEndpoints(sns, settings.push_application_arn) if settings.push_application_arn else None
        )
        channels = Channels(notifier=SnsNotifier(sns), push_endpoints=endpoints)
    elif channel == "escalate":
        if not settings.cs_queue_url:
            raise ValueError("NUDGE_CS_QUEUE_URL is not set: escalations would have nowhere to go")
        channels = Channels(
            desk=SqsEscalationDesk(
                boto3.client("sqs"), settings.cs_queue_url, boto3.client("sns"), settings.cs_topic_arn or None
            )
        )
    else:
        raise ValueError(f"unknown action channel {channel!r}")
    secrets: tuple[bytes, ...] = ()
    if channel != "escalate":
        value = parameters.get_parameter(
            settings.unsubscribe_secret_param, decrypt=True, max_age=UNSUBSCRIBE_SECRETS_MAX_AGE_SECONDS
        )
        secrets = parse_secrets(str(value))
        if not secrets:
            raise ValueError(f"{settings.unsubscribe_secret_param} holds no unsubscribe secret")
    ports = DeliverPorts(
        ledger=_ledger(settings),
        usage=DynamoUsageStore(boto3.client("dynamodb"), settings.usage_table, settings.rollup_shards),
        channels=channels,
        unsubscribe_secrets=secrets,
        unsubscribe_url=settings.unsubscribe_url,
    )
    return DeliverService(settings, rules, ports)


def reset() -> None:
    """Forget the settings and everything built from them: the next call builds afresh."""
    get_settings.cache_clear()
    services.cache_clear()
    wire.cache_clear()


def aws_repository(settings: Settings, client: DynamoDBClient | None = None) -> CaseRepository:
    """The repository on the tables `settings` names (NUDGE_LEDGER_TABLE, NUDGE_USAGE_TABLE), in
    the region and with the credentials boto3 finds in the environment."""

    dynamodb: DynamoDBClient = client if client is not None else boto3.client("dynamodb")
    return CaseRepository(
        DynamoLedger(dynamodb, settings.ledger_table, timedelta(days=settings.ledger_retention_days)),
        DynamoUsageStore(dynamodb, settings.usage_table, settings.rollup_shards),
    )
