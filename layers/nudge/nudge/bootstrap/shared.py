"""What several function kinds build alike: the ledger, the suppression list and the secrets read
from SSM (dispatch, the action functions, feedback, the API). Apart from nudge.bootstrap itself so
that the functions that use none of them (evaluate, sweep, changes, rollups, the ingest queue) do not
import them, nor Powertools' parameters, at cold start (BENCHMARKS.md section 7).
"""

from __future__ import annotations

from datetime import timedelta

import boto3
from aws_lambda_powertools.utilities import parameters
from aws_lambda_powertools.utilities.parameters.constants import DEFAULT_PROVIDERS
from aws_lambda_powertools.utilities.parameters.ssm import SSMProvider

from nudge.adapters.dynamo.ledger import DynamoLedger
from nudge.adapters.dynamo.suppression import DynamoSuppressionStore
from nudge.bootstrap import state_ttl
from nudge.domain.tokens import parse_secrets
from nudge.services.suppression import SuppressionList
from nudge.settings import Settings

# How long the unsubscribe secrets are cached: a rotation reaches every container within it.
UNSUBSCRIBE_SECRETS_MAX_AGE_SECONDS = 300


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
