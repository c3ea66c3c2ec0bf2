"""The evaluate and sweep functions' services: rules, usage and segment stores, decision publisher."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import boto3

from nudge.adapters.dynamo.segments import DynamoSegmentStore
from nudge.adapters.dynamo.usage import DynamoUsageStore
from nudge.adapters.metrics import PowertoolsEvaluationMetrics
from nudge.adapters.sqs import SqsDecisionPublisher
from nudge.bootstrap import built_once, configured, state_ttl
from nudge.bootstrap.ruleset import load_rules_or_explain
from nudge.observability import metrics
from nudge.rulebook.ruleset import RuleSet
from nudge.services.evaluate import RulesPorts
from nudge.services.sweep import SweepOptions
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


def sweep_options(settings: Settings) -> SweepOptions:
    return SweepOptions(
        page_size=settings.sweep_page_size,
        lookback=timedelta(days=settings.sweep_lookback_days),
        retry_after=timedelta(seconds=settings.sweep_retry_seconds),
        margin_seconds=settings.sweep_margin_seconds,
        attempts=settings.evaluate_attempts,
    )


@built_once
def wire() -> RulesService:
    """Rules, DynamoDB stores and the SQS publisher from settings; a bad rule file fails here."""

    settings = configured()
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
            dynamodb,
            settings.usage_table,
            index=settings.due_index,
            due_shards=settings.due_shards,
            state_ttl=state_ttl(settings),
        ),
        publisher=SqsDecisionPublisher(boto3.client("sqs"), settings.decision_queue_url),
        metrics=observed,
    )
    return RulesService(settings, rules, ports, sweep_options(settings), settings.evaluate_attempts, observed)
