"""The ingest API's 503 answers, through the real ingest handler on moto (tables from template.yaml):
write contention that outlasts every retry, DynamoDB down or throttled during ingest, erasure,
export and unsubscribe with the store down, and the write keys unreadable. Each is asserted on its
status, its Retry-After header and its body, and a client that retries later loses nothing.

Failures are put in where they happen in AWS, at the boto3 clients the function made at its cold
start (botocore's event hooks): another writer's update before each conditional write, a call that
cannot connect, a throttling answer. Nothing in the function is replaced.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import boto3
import pytest
from aws_lambda_powertools.utilities.parameters.base import DEFAULT_PROVIDERS
from aws_lambda_powertools.utilities.parameters.ssm import SSMProvider
from botocore.exceptions import EndpointConnectionError

from nudge import clock
from nudge.domain.tokens import make_token
from nudge.entrypoints.http.privacy_api import UNAVAILABLE
from tests.integration.ingest_api import ADMIN_KEY, UNSUBSCRIBE_SECRET, WRITE_KEY, Api, deployed_api

NOW = datetime(2026, 11, 26, 17, 0, tzinfo=UTC)
# Retries of a contended write, kept low here so the test is quick (deployed: the default, 12).
WRITE_ATTEMPTS = 4

CONTENDED = "too many concurrent writes for one user; retry shortly"
STORE_DOWN = "storage is unavailable; retry with backoff"
KEYS_DOWN = "keys could not be read; retry shortly"


@pytest.fixture
def api(
    aws: None,
    template_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    use_clock: Callable[[clock.Source], None],
) -> Iterator[Api]:
    use_clock(lambda: NOW)
    with deployed_api(template_path, monkeypatch, NUDGE_WRITE_ATTEMPTS=str(WRITE_ATTEMPTS)) as api:
        yield api


def track(user: str, mid: str) -> dict[str, Any]:
    return {
        "type": "track",
        "userId": user,
        "event": "project_created",
        "messageId": mid,
        "timestamp": (NOW - timedelta(minutes=5)).isoformat(),
    }


def error_body(message: str, field: str = "") -> dict[str, Any]:
    """The body of an API refusal: no message kept, one error naming what to do."""
    return {
        "success": False,
        "accepted": 0,
        "errors": [{"index": None, "field": field, "message": message}],
        "warnings": [],
    }


def unreachable(**_: Any) -> None:
    """A botocore hook: the call never reaches AWS (what the SDK raises once its own retries are spent)."""
    raise EndpointConnectionError(endpoint_url="https://dynamodb.us-east-1.amazonaws.com")


def answer(code: str, status: int) -> Callable[..., Any]:
    """A botocore `before-call` hook: AWS answers the call with this error."""

    def hook(**_: Any) -> tuple[Any, dict[str, Any]]:
        return SimpleNamespace(status_code=status), {
            "Error": {"Code": code, "Message": f"{code} (injected)"},
            "ResponseMetadata": {"HTTPStatusCode": status},
        }

    return hook


# ------------------------------------------------------------------------ contention outlasting every retry


def test_contention_that_outlasts_every_retry_is_a_503_to_retry_shortly_and_the_retry_counts_once(
    api: Api,
) -> None:
    # Given a user already stored, and another writer that updates them just before each of this
    # request's writes (the conditional write then fails for real, on the version it read)
    user = f"u-{uuid.uuid4().hex[:8]}"
    assert api.call("POST", "/v1/track", track(user, "first"))[0] == 200
    other_writer = boto3.client("dynamodb")
    table = api.settings.usage_table
    raced: list[str] = []

    def another_writer_first(params: dict[str, Any], **_: Any) -> None:
        item = params.get("Item") or {}
        if params.get("TableName") == table and item.get("pk") == {"S": f"USER#{user}"}:
            other_writer.update_item(
                TableName=table,
                Key={"pk": item["pk"], "sk": item["sk"]},
                UpdateExpression="SET v = v + :one",
                ExpressionAttributeValues={":one": {"N": "1"}},
            )
            raced.append(params["ConditionExpression"])

    api.dynamodb.meta.events.register("provide-client-params.dynamodb.PutItem", another_writer_first)

    # When the product sends the next event
    status, headers, body = api.call("POST", "/v1/track", track(user, "second"))

    # Then every attempt lost to the other writer, and the answer is 503: retry shortly
    assert len(raced) == WRITE_ATTEMPTS
    assert status == 503
    assert headers["Retry-After"] == "1"
    assert json.loads(body) == error_body(CONTENDED)
    # ...and the SDK's retry, once the other writer is done, counts the event once
    api.dynamodb.meta.events.unregister("provide-client-params.dynamodb.PutItem", another_writer_first)
    assert api.call("POST", "/v1/track", track(user, "second"))[0] == 200
    assert api.call("POST", "/v1/track", track(user, "second"))[0] == 200
    assert api.counts(user) == {"project_created": 2}


# ------------------------------------------------------------------------------ the store down


@pytest.mark.parametrize(
    ("event", "hook"),
    [
        ("before-call.dynamodb.*", unreachable),
        ("before-call.dynamodb.BatchGetItem", answer("ProvisionedThroughputExceededException", 400)),
        ("before-call.dynamodb.PutItem", answer("InternalServerError", 500)),
    ],
    ids=["unreachable", "reads-throttled", "writes-failing"],
)
def test_the_store_down_during_ingest_is_a_503_to_retry_with_backoff(
    api: Api, event: str, hook: Callable[..., Any]
) -> None:
    # Given DynamoDB unreachable, throttling the reads, or failing the writes
    user = f"u-{uuid.uuid4().hex[:8]}"
    api.dynamodb.meta.events.register(event, hook)

    # When the product sends a batch
    status, headers, body = api.call("POST", "/v1/batch", {"batch": [track(user, "a"), track(user, "b")]})

    # Then the answer is 503 with a Retry-After, and nothing was kept
    assert status == 503
    assert headers["Retry-After"] == "2"
    assert json.loads(body) == error_body(STORE_DOWN)
    # ...and the same batch sent again once the store is back is kept whole
    api.dynamodb.meta.events.unregister(event, hook)
    assert api.counts(user) == {}
    assert api.call("POST", "/v1/batch", {"batch": [track(user, "a"), track(user, "b")]})[0] == 200
    assert api.counts(user) == {"project_created": 2}


@pytest.mark.parametrize(
    ("method", "path"),
    [("DELETE", "/v1/users/{user}"), ("GET", "/v1/users/{user}/export")],
    ids=["erase", "export"],
)
def test_erasure_and_export_with_the_store_down_are_a_503_to_retry(api: Api, method: str, path: str) -> None:
    # Given a stored user, and then DynamoDB unreachable
    user = f"u-{uuid.uuid4().hex[:8]}"
    assert api.call("POST", "/v1/track", track(user, "a"))[0] == 200
    api.dynamodb.meta.events.register("before-call.dynamodb.*", unreachable)

    # When an admin asks for the user's erasure (or export)
    status, headers, body = api.call(method, path.format(user=user), key=ADMIN_KEY)

    # Then the answer is 503 with a Retry-After, in the API's error shape
    assert status == 503
    assert headers["Retry-After"] == "2"
    assert json.loads(body) == error_body(STORE_DOWN)
    # ...and, the store back, the retried erasure erases
    api.dynamodb.meta.events.unregister("before-call.dynamodb.*", unreachable)
    assert api.call(method, path.format(user=user), key=ADMIN_KEY)[0] == 200


@pytest.mark.parametrize(
    ("accept", "html"), [("application/json", False), ("text/html", True)], ids=["one-click", "browser"]
)
def test_an_unsubscribe_with_the_store_down_is_a_503_to_try_again(api: Api, accept: str, html: bool) -> None:
    # Given a genuine unsubscribe link, and DynamoDB unreachable
    user = f"u-{uuid.uuid4().hex[:8]}"
    token = make_token(UNSUBSCRIBE_SECRET.encode(), user, "email:onboarding", NOW)
    api.dynamodb.meta.events.register("before-call.dynamodb.*", unreachable)

    # When a mail client posts the one-click unsubscribe (or a person submits the page's form)
    status, headers, body = api.call(
        "POST", "/v1/unsubscribe", key=None, query={"token": token}, headers={"accept": accept}
    )

    # Then the answer is 503 with a Retry-After, saying to try again: a page for a person, JSON otherwise
    assert status == 503
    assert headers["Retry-After"] == "30"
    if html:
        assert headers["Content-Type"].startswith("text/html")
        assert UNAVAILABLE in body
    else:
        assert json.loads(body) == {
            "success": False,
            "scope": None,
            "errors": [{"index": None, "field": "", "message": UNAVAILABLE}],
        }
    # ...and the link works once the store is back
    api.dynamodb.meta.events.unregister("before-call.dynamodb.*", unreachable)
    status, _, body = api.call(
        "POST", "/v1/unsubscribe", key=None, query={"token": token}, headers={"accept": "application/json"}
    )
    assert (status, json.loads(body)["scope"]) == (200, "email:onboarding")


# --------------------------------------------------------------------------- the write keys unreadable


@pytest.fixture
def keys_unreadable(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    """SSM unreachable for the function: the keys' parameters cannot be read."""
    ssm = boto3.client("ssm")
    ssm.meta.events.register("before-call.ssm.*", unreachable)
    monkeypatch.setitem(DEFAULT_PROVIDERS, "ssm", SSMProvider(boto3_client=ssm))


@pytest.mark.usefixtures("keys_unreadable")
@pytest.mark.parametrize("key", [WRITE_KEY, "not-a-key-at-all"], ids=["live-key", "unknown-key"])
def test_unreadable_write_keys_are_a_503_not_a_401(api: Api, key: str) -> None:
    # Given the keys' store unreachable
    user = f"u-{uuid.uuid4().hex[:8]}"

    # When a request comes with a key, live or not (nobody can tell which)
    status, headers, body = api.call("POST", "/v1/track", track(user, "a"), key=key)

    # Then it is not told its key is wrong: 503, retry shortly; nothing kept
    assert status == 503
    assert headers["Retry-After"] == "2"
    assert json.loads(body) == error_body(KEYS_DOWN, "authorization")
    assert api.counts(user) == {}


@pytest.mark.usefixtures("keys_unreadable")
def test_a_preflight_with_the_keys_unreadable_is_a_503(api: Api) -> None:
    # Given the keys' store unreachable
    # When a page on another origin asks whether it may post
    status, headers, body = api.call(
        "OPTIONS",
        "/v1/t",
        key=None,
        headers={"origin": "https://app.example", "access-control-request-method": "POST"},
    )

    # Then the answer is 503, retry shortly, not a refusal of the origin
    assert status == 503
    assert headers["Retry-After"] == "2"
    assert json.loads(body) == error_body(KEYS_DOWN, "authorization")
