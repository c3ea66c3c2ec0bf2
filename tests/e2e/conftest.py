"""End to end: the local stack (moto, tables from template.yaml, the real ingest handler in worker
"containers") behind its HTTP server on a free port, shared by the whole session."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests

from nudge.tools.cli import main
from nudge.tools.local.environment import KEYS_MAX_AGE_SECONDS
from nudge.tools.local.http import LocalApiServer
from nudge.tools.local.stack import LocalStack
from tests.shipped import ONE_SHOT_DIR

WRITE_KEY = "e2e-write-key"
OTHER_KEY = "e2e-rotated-key"
CLIENT_KEY = "e2e-client-key"
ADMIN_KEY = "e2e-admin-key"
# The client key may be used from this page origin only.
CLIENT_ORIGIN = "https://app.e2e.example"
USER_TOKEN_SECRET = "e2e-user-token-secret"
# Several containers, so concurrent requests really race on one user as concurrent Lambdas do.
CONTAINERS = 3
# How long a revoked key may still be seen by a container (the local stack reads keys every second).
REVOCATION_DEADLINE_SECONDS = 30
# How far the simulated clock (monotonic time from its start) may drift from the wall clock in a test.
CLOCK_DRIFT = timedelta(seconds=5)
# The shared stack while it runs (set by the api fixture).
SHARED: list[LocalStack] = []


@dataclass
class Api:
    """The running local API, with the small helpers the tests share."""

    stack: LocalStack
    base_url: str
    session: requests.Session
    write_key: str = WRITE_KEY
    other_key: str = OTHER_KEY
    client_key: str = CLIENT_KEY
    admin_key: str = ADMIN_KEY
    client_origin: str = CLIENT_ORIGIN
    user_token_secret: str = USER_TOKEN_SECRET

    def post(
        self,
        path: str,
        body: Any = None,
        *,
        data: bytes | None = None,
        key: str | None = WRITE_KEY,
        headers: dict[str, str] | None = None,
    ) -> requests.Response:
        auth = (key, "") if key is not None else None
        if data is None and body is not None:
            return self.session.post(self.base_url + path, json=body, auth=auth, headers=headers, timeout=60)
        return self.session.post(self.base_url + path, data=data, auth=auth, headers=headers, timeout=60)

    def user(self, user_id: str) -> dict[str, Any]:
        response = self.session.get(f"{self.base_url}/_local/users/{user_id}", timeout=30)
        assert response.status_code == 200, response.text
        document: dict[str, Any] = response.json()
        return document

    def account(self, account_id: str) -> dict[str, Any]:
        response = self.session.get(f"{self.base_url}/_local/accounts/{account_id}", timeout=30)
        assert response.status_code == 200, response.text
        document: dict[str, Any] = response.json()
        return document


@pytest.fixture(scope="session")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    logs: Path = tmp_path_factory.mktemp("local-stack") / "functions.log"
    stack = LocalStack(
        rules_dir=ONE_SHOT_DIR,  # the machinery's tests name one-shot triggers (tests/shipped.py)
        write_keys=[WRITE_KEY, OTHER_KEY],
        client_keys=[CLIENT_KEY],
        admin_keys=[ADMIN_KEY],
        allowed_origins=[CLIENT_ORIGIN],
        user_token_secret=USER_TOKEN_SECRET,
        containers=CONTAINERS,
        log_level="WARNING",
        function_logs=logs,
    )
    # The server first: it binds, and the stack's links (unsubscribe) point at its port.
    with LocalApiServer(stack) as server, stack, requests.Session() as session:
        SHARED.append(stack)
        yield Api(stack, server.base_url, session)
        SHARED.remove(stack)


@pytest.fixture(autouse=True)
def _clock_moved_only_where_marked(request: pytest.FixtureRequest) -> Iterator[None]:
    """The shared stack's clock can't be put back after a test moves it: it only moves forward, as
    state folded at a later time would not make sense again. So the tests that move it are marked
    moves_clock and run after the others (tests/conftest.py), for which the stack's clock is the
    wall clock whatever ran before; this fails a test that moves it unmarked."""
    before = [_lead(stack) for stack in SHARED]
    yield
    if request.node.get_closest_marker("moves_clock") is not None:
        return
    for stack in SHARED:
        moved = _lead(stack) - (before[0] if before else timedelta(0))
        assert abs(moved) < CLOCK_DRIFT, (
            f"this test moved the local stack's clock by {moved}: mark it @pytest.mark.moves_clock"
        )


def _lead(stack: LocalStack) -> timedelta:
    return stack.clock.now() - datetime.now(UTC)


@pytest.fixture
def uid() -> str:
    """A user id no other test uses."""
    return f"user-{uuid.uuid4().hex[:12]}"


def nudge_keys(api: Api, capsys: pytest.CaptureFixture[str], *args: str) -> str:
    """Run `nudge keys ...` against the stack's SSM, as an operator would; its output."""
    code = main(["keys", *args, "--stage", "local", "--endpoint-url", api.stack.endpoint_url])
    out = capsys.readouterr().out
    assert code == 0, out
    return out


def settings_status(api: Api, key: str) -> int:
    """Whether a key is live, asked where no rate limit counts: the SDK settings route."""
    return api.session.get(f"{api.base_url}/v1/projects/{key}/settings", timeout=30).status_code


def wait_for_status(api: Api, key: str, wanted: int) -> None:
    """Until every container has read the keys again (the local stack reads them every second)."""
    deadline = time.monotonic() + REVOCATION_DEADLINE_SECONDS
    # Requests go to any container: the answer must hold for longer than a container caches keys
    # (KEYS_MAX_AGE_SECONDS), so every cache read before the change has expired by then.
    steady_since: float | None = None
    while steady_since is None or time.monotonic() - steady_since <= 2 * KEYS_MAX_AGE_SECONDS:
        steady = settings_status(api, key) == wanted
        steady_since = (steady_since or time.monotonic()) if steady else None
        assert time.monotonic() < deadline, f"the key's status never became {wanted}"
        time.sleep(0.1)
