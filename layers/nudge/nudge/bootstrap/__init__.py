"""The one setup root: what each function kind needs, built once per container from settings.

One module per kind, so a function imports only the adapters it runs:
- `bootstrap.api.services()`: the ingest and privacy HTTP APIs (usage store, write keys, ledger, secrets);
- `bootstrap.rules.wire()`: the evaluate and sweep functions (rules, stores, decision queue, metrics);
- `bootstrap.dispatch.wire_dispatch()`: the dispatch function (rules, ledger, the channel queues);
- `bootstrap.deliver.wire_deliver(channel)`: one action function (email, notify or escalate);
- `bootstrap.cs.aws_repository()`: the CS view on the deployed tables (`nudge escalations`).

A bad rule file or a missing setting fails here, at cold start, with every problem logged. Only
this package (and tools/) reads settings and makes boto3 clients; `reset()` forgets what was
built, for tests and for the local stack, which changes the environment between runs.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from functools import lru_cache
from typing import TypeVar

import boto3
from aws_lambda_powertools.utilities import parameters
from aws_lambda_powertools.utilities.parameters.constants import DEFAULT_PROVIDERS
from aws_lambda_powertools.utilities.parameters.ssm import SSMProvider

from nudge.adapters.dynamo import codec
from nudge.adapters.dynamo.ledger import DynamoLedger
from nudge.adapters.dynamo.suppression import DynamoSuppressionStore
from nudge.domain.tokens import parse_secrets
from nudge.services.suppression import SuppressionList
from nudge.settings import Settings, get_settings

T = TypeVar("T")

# How long the unsubscribe secrets are cached: a rotation reaches every container within it.
UNSUBSCRIBE_SECRETS_MAX_AGE_SECONDS = 300

# How to forget what built_once made, so reset() needs no import of every kind's module.
_forget: list[Callable[[], None]] = []


def built_once(build: Callable[[], T]) -> Callable[[], T]:
    """`build`, run on the first call only (once per container); reset() forgets the result."""
    cached = lru_cache(maxsize=1)(build)
    _forget.append(cached.cache_clear)
    return cached


def reset() -> None:
    """Forget the settings and everything built from them: the next call builds afresh."""
    get_settings.cache_clear()
    for forget in _forget:
        forget()


def configured() -> Settings:
    """The settings, with what they set process-wide applied: the layout state blobs are written in."""
    settings = get_settings()
    codec.write_format(settings.state_format)
    return settings


def state_ttl(settings: Settings) -> timedelta:
    """How long a user's items outlive their last write (DynamoDB TTL): every store writing one."""
    return timedelta(days=settings.state_ttl_days)


def ledger_from(settings: Settings) -> DynamoLedger:
    return DynamoLedger(
        boto3.client("dynamodb"),
        settings.ledger_table,
        retention=timedelta(days=settings.ledger_retention_days),
        state_ttl=state_ttl(settings),
    )


def ssm_on_default_session() -> None:
    """Call before `parameters.get_parameter(s)`. Powertools' own default provider makes a boto3
    session of its own, which loads botocore's endpoint data a second time in the cold start; this
    one shares the session every other client here is made on. A provider already in place (a
    test's, one a caller set) is kept."""
    if "ssm" not in DEFAULT_PROVIDERS:
        DEFAULT_PROVIDERS["ssm"] = SSMProvider(boto3_client=boto3.client("ssm"))


def read_secrets(parameter: str, what: str) -> tuple[bytes, ...]:
    """Comma-separated secrets from an SSM SecureString, read at cold start: a function that cannot
    read them fails there, loudly, rather than sending without them."""
    ssm_on_default_session()
    value = parameters.get_parameter(parameter, decrypt=True, max_age=UNSUBSCRIBE_SECRETS_MAX_AGE_SECONDS)
    secrets = parse_secrets(str(value))
    if not secrets:
        raise ValueError(f"{parameter} holds no {what} secret")
    return secrets


def suppression_list_from(settings: Settings) -> SuppressionList:
    """The suppression list, its keying secrets read now (see read_secrets)."""
    secrets = read_secrets(settings.suppression_secret_param, "suppression")
    store = DynamoSuppressionStore(boto3.client("dynamodb"), settings.suppression_table)
    return SuppressionList(store, lambda: secrets)
