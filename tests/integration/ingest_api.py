"""The real ingest function on moto, called as API Gateway calls it: what the API tests share.

`deployed_api` builds the tables and keys from template.yaml under fresh names, points the
function's settings at them and cold-starts functions/ingest/app.py; `Api.call` sends one request
(HTTP API, payload 2.0) and returns status, headers and body.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlencode

import boto3
import pytest
from aws_lambda_powertools.utilities.parameters.base import DEFAULT_PROVIDERS
from aws_lambda_powertools.utilities.parameters.ssm import SSMProvider

from nudge import bootstrap
from nudge.bootstrap import api as wiring
from nudge.settings import Settings
from nudge.tools.local.aws import create_usage_resources
from tests.integration.conftest import IngestContext, load_ingest_app

WRITE_KEY = "wk-api-tests"
ADMIN_KEY = "ak-api-tests"
CLIENT_KEY = "ck-api-tests"
CLIENT_ORIGIN = "https://app.example"
UNSUBSCRIBE_SECRET = "u" * 32


@dataclass
class Api:
    handler: ModuleType
    settings: Settings

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        key: str | None = WRITE_KEY,
        bearer: bool = False,
        query: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        raw: str | None = None,
    ) -> tuple[int, dict[str, str], str]:
        """One request as API Gateway (HTTP API, payload 2.0) hands it to the function; the key as
        HTTP Basic username (or a Bearer token)."""
        all_headers = {"content-type": "application/json", **(headers or {})}
        if key is not None:
            basic = base64.b64encode(f"{key}:".encode()).decode()
            all_headers["authorization"] = f"Bearer {key}" if bearer else f"Basic {basic}"
        event: dict[str, Any] = {
            "version": "2.0",
            "routeKey": f"{method} {path}",
            "rawPath": path,
            "rawQueryString": urlencode(query or {}),
            "headers": all_headers,
            "requestContext": {
                "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "10.0.0.1"},
                "requestId": f"req-{uuid.uuid4().hex[:8]}",
                "stage": "$default",
            },
            "isBase64Encoded": False,
        }
        if query:
            event["queryStringParameters"] = query
        if raw is not None:
            event["body"] = raw
        elif body is not None:
            event["body"] = json.dumps(body)
        response = self.handler.handler(event, IngestContext())
        return response["statusCode"], response.get("headers") or {}, response.get("body") or ""

    @property
    def dynamodb(self) -> Any:
        """The DynamoDB client the function made at its cold start (store, ledger, rate limits)."""
        return wiring.services().store.client  # type: ignore[attr-defined]

    def counts(self, user: str) -> dict[str, int]:
        users = wiring.services().store.load_users([user])
        return dict(users[user].value.event_counts) if user in users else {}


@contextmanager
def deployed_api(template_path: Path, monkeypatch: pytest.MonkeyPatch, **env: str) -> Iterator[Api]:
    """The ingest function cold-started on fresh tables and keys (moto must be running); `env`
    adds variables the function reads at its cold start."""
    suffix = uuid.uuid4().hex[:8]
    settings = Settings(
        usage_table=f"usage-{suffix}",
        ledger_table=f"ledger-{suffix}",
        rate_limit_table=f"rates-{suffix}",
        keys_path=f"/nudge/api-{suffix}/keys",
        unsubscribe_secret_param=f"/nudge/api-{suffix}/unsubscribe-secret",
        user_token_secret_param=f"/nudge/api-{suffix}/user-token-secret",
        suppression_table=f"suppression-{suffix}",
        suppression_secret_param=f"/nudge/api-{suffix}/suppression-secret",
    )
    create_usage_resources(
        boto3.client("dynamodb"),
        boto3.client("ssm"),
        template_path,
        settings,
        [WRITE_KEY],
        client_keys=[CLIENT_KEY],
        admin_keys=[ADMIN_KEY],
        client_origins=[CLIENT_ORIGIN],
    )
    for name in (settings.unsubscribe_secret_param, settings.suppression_secret_param):
        boto3.client("ssm").put_parameter(
            Name=name, Value=UNSUBSCRIBE_SECRET, Type="SecureString", Overwrite=True
        )
    variables = {
        "NUDGE_USAGE_TABLE": settings.usage_table,
        "NUDGE_LEDGER_TABLE": settings.ledger_table,
        "NUDGE_RATE_LIMIT_TABLE": settings.rate_limit_table,
        "NUDGE_KEYS_PATH": settings.keys_path,
        "NUDGE_UNSUBSCRIBE_SECRET_PARAM": settings.unsubscribe_secret_param,
        "NUDGE_USER_TOKEN_SECRET_PARAM": settings.user_token_secret_param,
        "NUDGE_SUPPRESSION_TABLE": settings.suppression_table,
        "NUDGE_SUPPRESSION_SECRET_PARAM": settings.suppression_secret_param,
        **env,
    }
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    # A fresh SSM provider (Powertools keeps one per process, with its cache), as a cold start has;
    # whatever was there before comes back after the test.
    monkeypatch.setitem(DEFAULT_PROVIDERS, "ssm", SSMProvider())
    bootstrap.reset()
    try:
        yield Api(load_ingest_app(f"ingest_{suffix}"), settings)
    finally:
        bootstrap.reset()
