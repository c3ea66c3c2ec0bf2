"""No log line holds an email address, a phone number or a key: the ingest function's warnings and
errors too, not only its happy path.

The real ingest function on moto answers bad events, refused and unknown keys (HTTP Basic, Bearer
and the body's writeKey), storage and key-store failures, write contention, a rate limiter down,
unreadable key records, unsubscribes (good, tampered, years old, store down) and erasure and export,
each request carrying an address, a phone number and a key. Everything the function writes is
captured as CloudWatch would keep it: its Powertools log lines at DEBUG (what an operator turns on
to investigate), any other library's lines at INFO, and its standard output (metrics, prints).
Then it is searched for every secret sent.
"""

from __future__ import annotations

import base64
import io
import logging
import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
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
from nudge.observability import logger
from tests.integration.ingest_api import (
    ADMIN_KEY,
    CLIENT_KEY,
    CLIENT_ORIGIN,
    UNSUBSCRIBE_SECRET,
    WRITE_KEY,
    Api,
    deployed_api,
)

NOW = datetime(2026, 11, 26, 17, 0, tzinfo=UTC)
EMAIL = "ada.lovelace@example.com"
PHONE = "+15555550123"
WRONG_KEY = "wk-wrong-9f8e7d6c5b4a"


@dataclass
class Logs:
    powertools: io.StringIO = field(default_factory=io.StringIO)
    others: io.StringIO = field(default_factory=io.StringIO)
    stdout: list[str] = field(default_factory=list)

    def text(self) -> str:
        return self.powertools.getvalue() + self.others.getvalue() + "".join(self.stdout)

    def messages(self) -> list[str]:
        return [line for line in self.powertools.getvalue().splitlines() if line.strip()]


@pytest.fixture
def logs(capsys: pytest.CaptureFixture[str]) -> Iterator[Logs]:
    """Every line the function writes while the test runs."""
    captured = Logs()
    handler = logger.registered_handler
    assert isinstance(handler, logging.StreamHandler)
    real_stream = handler.setStream(captured.powertools)
    level = logger.log_level
    logger.setLevel("DEBUG")
    others = logging.StreamHandler(captured.others)
    others.setLevel(logging.INFO)
    root = logging.getLogger()
    root_level = root.level
    root.addHandler(others)
    root.setLevel(logging.INFO)
    try:
        yield captured
    finally:
        printed = capsys.readouterr()
        captured.stdout += [printed.out, printed.err]
        root.removeHandler(others)
        root.setLevel(root_level)
        logger.setLevel(level)
        handler.setStream(real_stream)
        logger.set_correlation_id(None)


def assert_no_secret(logs: Logs, *extra: str) -> None:
    printed_now = logs.text()
    for secret in (EMAIL, PHONE, PHONE.lstrip("+"), WRITE_KEY, ADMIN_KEY, CLIENT_KEY, WRONG_KEY, *extra):
        assert secret not in printed_now, f"{secret!r} was logged"
    for key in (WRITE_KEY, ADMIN_KEY, CLIENT_KEY, WRONG_KEY):
        assert base64.b64encode(f"{key}:".encode()).decode() not in printed_now, f"{key!r} (Basic) was logged"


@pytest.fixture
def api(
    aws: None,
    template_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    use_clock: Callable[[clock.Source], None],
) -> Iterator[Api]:
    use_clock(lambda: NOW)
    with deployed_api(template_path, monkeypatch, NUDGE_WRITE_ATTEMPTS="2") as api:
        yield api


def uid() -> str:
    return f"u-{uuid.uuid4().hex[:8]}"


def identify(user: str, **traits: Any) -> dict[str, Any]:
    return {
        "type": "identify",
        "userId": user,
        "messageId": str(uuid.uuid4()),
        "timestamp": (NOW - timedelta(minutes=1)).isoformat(),
        "traits": {"email": EMAIL, "phone": PHONE, **traits},
    }


def unreachable(**_: Any) -> None:
    raise EndpointConnectionError(endpoint_url="https://dynamodb.us-east-1.amazonaws.com")


def answer(code: str, status: int, message: str) -> Callable[..., Any]:
    """A botocore `before-call` hook: AWS answers the call with this error and message."""

    def hook(**_: Any) -> tuple[Any, dict[str, Any]]:
        return SimpleNamespace(status_code=status), {
            "Error": {"Code": code, "Message": message},
            "ResponseMetadata": {"HTTPStatusCode": status},
        }

    return hook


def lines_at(logs: Logs, level: str) -> list[str]:
    return [line for line in logs.messages() if f'"level":"{level}"' in line]


def test_bad_events_leave_no_address_number_or_key_in_the_logs(api: Api, logs: Logs) -> None:
    user = uid()
    bad = [
        # An address where a timezone goes, a number as an event name, an address as an enum value
        {**identify(user), "traits": {"email": EMAIL, "timezone": EMAIL}},
        {"type": "track", "userId": user, "event": PHONE, "timestamp": "not a time " + EMAIL},
        {
            "type": "track",
            "userId": user,
            "event": "premium_feature_attempted",
            "properties": {"feature": EMAIL},
            "timestamp": NOW.isoformat(),
        },
        {"type": "identify", "userId": user, "traits": {"email": "not an address " + PHONE}},
        {
            "type": "track",
            "userId": user,
            "event": "login",
            "timestamp": (NOW + timedelta(days=3)).isoformat(),
        },
    ]
    # When a batch of bad messages, a malformed body and a bad single message arrive, by Basic and Bearer
    assert api.call("POST", "/v1/batch", {"batch": bad})[0] == 400
    assert api.call("POST", "/v1/track", raw='{"userId": "' + EMAIL + '", "event": ')[0] == 400
    assert api.call("POST", "/v1/identify", bad[0], bearer=True)[0] == 400
    assert api.call("POST", "/v1/batch", {"batch": [identify(user)]}, bearer=True)[0] == 200
    # Then the requests were logged, and none of their addresses, numbers or keys
    assert any('"message":"ingested"' in line for line in logs.messages())
    assert_no_secret(logs)


def test_refused_keys_leave_no_key_in_the_logs(api: Api, logs: Logs) -> None:
    user = uid()
    # When unknown keys come by Basic, Bearer and the body, and live keys where their kind or origin
    # is refused
    assert api.call("POST", "/v1/track", identify(user), key=WRONG_KEY)[0] == 401
    assert api.call("POST", "/v1/identify", identify(user), key=WRONG_KEY, bearer=True)[0] == 401
    assert api.call("POST", "/v1/identify", {**identify(user), "writeKey": WRONG_KEY}, key=None)[0] == 401
    assert api.call("DELETE", f"/v1/users/{user}", key=WRITE_KEY)[0] == 403
    assert api.call("POST", "/v1/identify", identify(user), key=ADMIN_KEY, bearer=True)[0] == 403
    other_origin = {"origin": "https://evil.example"}
    assert api.call("POST", "/v1/identify", identify(user), key=CLIENT_KEY, headers=other_origin)[0] == 403
    # Then each refusal is logged by key id and kind, never by the key
    refused = [line for line in logs.messages() if '"message":"key refused"' in line]
    assert len(refused) == 3
    assert_no_secret(logs)


def test_failures_log_warnings_and_errors_without_an_address_number_or_key(
    api: Api, logs: Logs, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = uid()
    # Given a stored user
    assert api.call("POST", "/v1/identify", identify(user))[0] == 200
    # When every write for them loses to another writer (contention outlasting the retries)
    other = boto3.client("dynamodb")

    def another_writer_first(params: dict[str, Any], **_: Any) -> None:
        item = params.get("Item") or {}
        if item.get("pk") == {"S": f"USER#{user}"}:
            other.update_item(
                TableName=api.settings.usage_table,
                Key={"pk": item["pk"], "sk": item["sk"]},
                UpdateExpression="SET v = v + :one",
                ExpressionAttributeValues={":one": {"N": "1"}},
            )

    api.dynamodb.meta.events.register("provide-client-params.dynamodb.PutItem", another_writer_first)
    assert api.call("POST", "/v1/identify", identify(user, plan="team"))[0] == 503
    api.dynamodb.meta.events.unregister("provide-client-params.dynamodb.PutItem", another_writer_first)

    # ...when the client key's rate limiter fails (the request is let through)
    throttled = answer("ProvisionedThroughputExceededException", 400, f"slow down for {EMAIL}")
    api.dynamodb.meta.events.register("before-call.dynamodb.UpdateItem", throttled)
    client = {"origin": CLIENT_ORIGIN}
    assert api.call("POST", "/v1/identify", identify(user), key=CLIENT_KEY, headers=client)[0] == 200
    api.dynamodb.meta.events.unregister("before-call.dynamodb.UpdateItem", throttled)
    # ...when DynamoDB is unreachable, and when it fails a write with a message quoting what was sent
    api.dynamodb.meta.events.register("before-call.dynamodb.*", unreachable)
    assert api.call("POST", "/v1/identify", identify(user), bearer=True)[0] == 503
    api.dynamodb.meta.events.unregister("before-call.dynamodb.*", unreachable)
    quoting = answer("InternalServerError", 500, f"could not store {EMAIL} or {PHONE}")
    api.dynamodb.meta.events.register("before-call.dynamodb.PutItem", quoting)
    assert api.call("POST", "/v1/identify", identify(user, plan="business"))[0] == 503
    api.dynamodb.meta.events.unregister("before-call.dynamodb.PutItem", quoting)
    # ...when a key record is unreadable (the others still work)
    boto3.client("ssm").put_parameter(
        Name=f"{api.settings.keys_path}/broken", Value=f'{{"hash": "{WRONG_KEY}"', Type="SecureString"
    )
    monkeypatch.setitem(DEFAULT_PROVIDERS, "ssm", SSMProvider())
    assert api.call("POST", "/v1/identify", identify(user))[0] == 200
    # ...and when the key store is unreachable
    ssm = boto3.client("ssm")
    ssm.meta.events.register("before-call.ssm.*", unreachable)
    monkeypatch.setitem(DEFAULT_PROVIDERS, "ssm", SSMProvider(boto3_client=ssm))
    assert api.call("POST", "/v1/identify", identify(user), key=WRITE_KEY, bearer=True)[0] == 503
    # Then each failure was logged as a warning or an error...
    warned = " ".join(lines_at(logs, "WARNING"))
    errored = " ".join(lines_at(logs, "ERROR"))
    for message in (
        "write contention",
        "rate limiter unavailable; request let through",
        "key records skipped",
    ):
        assert message in warned
    for message in ("store unavailable", "keys unavailable"):
        assert message in errored
    # ...and none of them holds an address, a number or a key
    assert_no_secret(logs)


def test_unsubscribes_erasure_and_export_leave_no_address_number_or_token_in_the_logs(
    api: Api, logs: Logs
) -> None:
    user = uid()
    assert api.call("POST", "/v1/identify", identify(user))[0] == 200
    good = make_token(UNSUBSCRIBE_SECRET.encode(), user, "email:onboarding", NOW)
    old = make_token(UNSUBSCRIBE_SECRET.encode(), user, "email:onboarding", NOW - timedelta(days=800))
    tampered = good[:-4] + ("AAAA" if not good.endswith("AAAA") else "BBBB")
    json_please = {"accept": "application/json"}
    # When the links are used: genuine, years old (honoured too: the address goes on the
    # suppression list), tampered, and genuine with the store down
    for token, status in ((good, 200), (old, 200), (tampered, 400)):
        assert (
            api.call("POST", "/v1/unsubscribe", key=None, query={"token": token}, headers=json_please)[0]
            == status
        )
    api.dynamodb.meta.events.register("before-call.dynamodb.*", unreachable)
    assert api.call("POST", "/v1/unsubscribe", key=None, query={"token": good}, headers=json_please)[0] == 503
    # ...and an admin exports and erases the user, with the store down and then up
    assert api.call("DELETE", f"/v1/users/{user}", key=ADMIN_KEY)[0] == 503
    api.dynamodb.meta.events.unregister("before-call.dynamodb.*", unreachable)
    status, _, exported = api.call("GET", f"/v1/users/{user}/export", key=ADMIN_KEY, bearer=True)
    assert (status, EMAIL in exported) == (200, True)
    assert api.call("DELETE", f"/v1/users/{user}", key=ADMIN_KEY, bearer=True)[0] == 200
    # Then each was logged, and no line holds the address, the number, a key or a token
    logged = " ".join(logs.messages())
    for message in ("unsubscribed", "unsubscribe token refused"):
        assert f'"message":"{message}"' in logged
    for message in ("unsubscribe unavailable", "store unavailable"):
        assert message in " ".join(lines_at(logs, "ERROR"))
    assert '"message":"user exported"' in logged
    assert '"message":"user erased"' in logged
    assert_no_secret(logs, good, old, tampered)


def test_the_powertools_switch_that_logs_each_event_cannot_log_the_authorization_header(
    aws: None,
    template_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    use_clock: Callable[[clock.Source], None],
    logs: Logs,
) -> None:
    # Given the function cold-started with Powertools' "log every incoming event" switch on, as an
    # operator investigating something might set it
    use_clock(lambda: NOW)
    with deployed_api(template_path, monkeypatch, POWERTOOLS_LOGGER_LOG_EVENT="true") as api:
        # When requests come with keys by Basic and Bearer, carrying an address and a number
        assert api.call("POST", "/v1/identify", identify(uid()))[0] == 200
        assert api.call("POST", "/v1/identify", identify(uid()), bearer=True)[0] == 200
        assert api.call("POST", "/v1/identify", identify(uid()), key=WRONG_KEY, bearer=True)[0] == 401
    # Then neither the keys nor the bodies reach the logs
    assert any('"message":"ingested"' in line for line in logs.messages())
    assert_no_secret(logs)


def test_powertools_dev_mode_cannot_make_the_api_print_each_event() -> None:
    # Given a cold start with POWERTOOLS_DEV on (Powertools' switch for local development): in debug
    # mode its resolver prints every event, Authorization header and body included, to stdout
    code = "from nudge.entrypoints.http.ingest_api import app; print(app._debug)"
    env = {**os.environ, "POWERTOOLS_DEV": "1"}
    # When the API module loads (in a process of its own: a cold start)
    loaded = subprocess.run(  # noqa: S603 - this interpreter on our own one-line script
        [sys.executable, "-W", "ignore", "-c", code], env=env, capture_output=True, text=True, check=True
    )
    # Then its resolver stays out of debug mode
    assert loaded.stdout.strip() == "False"
