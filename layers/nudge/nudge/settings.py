"""Settings read once from the environment; domain code receives values, never os.environ."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

PREFIX = "NUDGE_"


class Settings(BaseModel):
    """Each field from the environment variable NUDGE_<FIELD> (in any case; a keyword argument wins
    over it), validated as the field says. What pydantic-settings' BaseSettings did with these plain
    fields, without its 25 modules in every function's cold start (BENCHMARKS.md section 7)."""

    model_config = ConfigDict(extra="ignore")

    @model_validator(mode="before")
    @classmethod
    def _from_environment(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        found = {k[len(PREFIX) :].lower(): v for k, v in os.environ.items() if k.upper().startswith(PREFIX)}
        return {**found, **data}

    usage_table: str = "nudge-usage"
    # The SSM path holding one SecureString per API key (nudge.domain.keys: kind, SHA-256, origins,
    # rate limit), read at most this many seconds apart: a revoked key stops working within it.
    keys_path: str = "/nudge/dev/keys"
    keys_max_age_seconds: int = Field(default=60, ge=0, le=60)
    # SSM SecureString with the secrets client user tokens are signed with, comma-separated (several:
    # rotation; any one verifies).
    user_token_secret_param: str = "/nudge/dev/user-token-secret"  # noqa: S105 - a parameter name
    # Client keys' rate-limit counters (nudge.services.rate_limit).
    rate_limit_table: str = "nudge-rate-limits"
    rules_dir: Path = Path("rules")
    # The buffered front door (the function URL, nudge.services.buffer): when set, the API checks
    # and answers each request, then puts its messages on this queue instead of writing them; the
    # ingest queue's consumer folds them, many requests per write.
    ingest_queue_url: str = ""

    max_message_bytes: int = Field(default=32 * 1024, gt=0)
    max_batch_bytes: int = Field(default=500 * 1024, gt=0)
    max_batch_messages: int = Field(default=2500, gt=0)
    # Clock skew tolerated for timestamps in the future, and how old an event may be.
    max_future_skew_seconds: int = Field(default=3600, ge=0)
    retention_days: int = Field(default=180, gt=0)

    dedupe_days: int = Field(default=7, ge=7)
    # The layout state blobs are written in (nudge.adapters.dynamo.codec; all are always read):
    # 2, user states with compact times and raw dedupe digests (smallest); 1, deflate against a
    # preset dictionary; 0, plain zlib, which a Nudge from before format 1 can read. The template's
    # StateFormat: deploy an upgrade with the format the running Nudge reads first, then the new
    # one once no older function runs (a rollback across the switch cannot read the newer blobs).
    state_format: int = Field(default=2, ge=0, le=2)
    # A user's items expire (DynamoDB TTL) this many days after their last write; the template's
    # StateTtlDays parameter. The default is nudge.model.limits.STATE_TTL_DAYS (two years), which
    # settings, at the bottom of the layers, cannot import (a unit test keeps the two equal).
    state_ttl_days: int = Field(default=730, ge=30)
    weeks_kept: int = Field(default=12, ge=2)
    rollup_shards: int = Field(default=16, ge=1, le=64)
    write_attempts: int = Field(default=12, ge=1)

    # Evaluate and sweep (nudge.services.evaluate).
    decision_queue_url: str = ""
    # The sparse GSI of users with a re-check scheduled, and how many shards each day's bucket
    # has. Writers and the sweep must agree on due_shards: lowering it strands the users in the
    # higher shards, so change it only with a migration.
    due_index: str = "due"
    due_shards: int = Field(default=16, ge=1, le=256)
    evaluate_attempts: int = Field(default=5, ge=1)
    # The sparse GSI of users by account (account_id -> USER#<id>), and how many users one change
    # to an account's traits re-evaluates at most; the rest get their usual re-checks.
    account_index: str = "by_account"
    account_fanout_limit: int = Field(default=5000, ge=1)
    sweep_page_size: int = Field(default=100, ge=1, le=100)
    # Where the first sweep (no watermark yet) starts looking for checks due.
    sweep_lookback_days: int = Field(default=7, ge=1)
    sweep_retry_seconds: int = Field(default=3600, ge=60)
    sweep_margin_seconds: float = Field(default=30.0, ge=0)

    # Guardrails and actions (nudge.dispatch).
    ledger_table: str = "nudge-ledger"
    ledger_retention_days: int = Field(default=400, ge=30)
    email_queue_url: str = ""
    notify_queue_url: str = ""
    escalation_queue_url: str = ""
    # Where customer success works escalations (FIFO), and the topic that tells them one arrived.
    cs_queue_url: str = ""
    cs_topic_arn: str = ""
    # SNS platform application that device tokens (the push_token trait) are registered with.
    push_application_arn: str = ""
    # Whether this stack sends SMS (template: SmsEnabled, which also grants the IAM permission).
    sms_enabled: bool = True
    ses_configuration_set: str = ""
    # SSM SecureString with the unsubscribe-link signing secrets, comma-separated (first signs).
    unsubscribe_secret_param: str = "/nudge/dev/unsubscribe-secret"  # noqa: S105 - a parameter name
    # The public URL of GET/POST /v1/unsubscribe, as links in messages show it: the deployed HTTP
    # API's (template.yaml) or the local stack's own address.
    unsubscribe_url: str = ""
    # The suppression list (addresses as keyed hashes: nudge.domain.suppression) and the SSM
    # SecureString holding its keying secrets, comma-separated (the first keys new records).
    suppression_table: str = "nudge-suppression"
    suppression_secret_param: str = "/nudge/dev/suppression-secret"  # noqa: S105 - a parameter name
    dispatch_attempts: int = Field(default=8, ge=1)
    # Webhooks and Slack (rules/destinations.yaml): their queue, the SSM path holding each
    # destination's secret (`<path>/<id>`: a whsec_ secret, or a Slack URL), and whether plain
    # http to localhost is allowed (the local stack's receivers; deployed, https only).
    webhook_queue_url: str = ""
    destinations_path: str = "/nudge/dev/destinations"
    webhook_allow_local_http: bool = False
    # The EventBridge bus segment entries/exits, band changes and conversions go to.
    event_bus_name: str = ""


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
