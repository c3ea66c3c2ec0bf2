"""A running local stack (`nudge serve`) as a source of live state: `GET /_local/aws` names its moto
endpoint, tables and simulated clock; the CLI's live readers (explain, journeys snapshot) use it."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import TYPE_CHECKING

import boto3

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient


class SourceError(Exception):
    """The live state could not be reached; the message says why, in one line."""


def local_dynamo(url: str) -> tuple[DynamoDBClient, dict[str, str]]:
    """A DynamoDB client on the local stack's moto, and what `GET /_local/aws` says (tables, clock)."""
    where = _local_aws(url)
    client = boto3.client(
        "dynamodb",
        endpoint_url=where["endpoint_url"],
        region_name=where["region"],
        # moto takes any credentials; these never leave the machine.
        aws_access_key_id="local",
        aws_secret_access_key="local",  # noqa: S106 - moto's, not a secret
    )
    return client, where


def _local_aws(url: str) -> dict[str, str]:
    base = url.rstrip("/")
    if not base.startswith(("http://", "https://")):
        raise SourceError(f"--local wants the local API's URL, like http://127.0.0.1:8080, not {url!r}")
    try:
        with urllib.request.urlopen(f"{base}/_local/aws", timeout=120) as response:  # noqa: S310 - a URL the user gave
            answer: dict[str, str] = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        raise SourceError(f"the local stack at {base} answered {exc.code}: {exc.reason}") from exc
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise SourceError(
            f"cannot reach the local stack at {base} ({reason}); is `nudge serve` running?"
        ) from exc
    return answer
