"""The server SDKs, installed from the registries and driven unchanged, land in the local stack:
rudder-sdk-python here (Segment's analytics-python is in test_local_stack.py), and the Node SDKs
(analytics-node, rudder-sdk-node 3) through node, from tests/sdk."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from rudderstack.analytics import Client as RudderClient

if TYPE_CHECKING:
    from tests.e2e.conftest import Api

pytestmark = pytest.mark.e2e


def test_rudder_sdk_python_delivers_identify_group_track_page_and_screen(api: Api, uid: str) -> None:
    # Given RudderStack's Python client pointed at the local stack (gzip on, as it defaults)
    failures: list[Any] = []
    client = RudderClient(
        write_key=api.write_key,
        host=api.base_url,
        sync_mode=True,
        on_error=lambda error, batch: failures.append(error),
        max_retries=1,
    )
    account = f"acct-{uid}"
    # When it sends every kind of call
    client.identify(uid, {"email": f"{uid}@example.com", "plan": "team"})
    client.group(uid, account, {"name": "Acme", "mrr": 900})
    client.track(uid, "project_created", {"template": "kanban"})
    client.page(uid, category="docs", name="Getting started")
    client.screen(uid, name="Home")
    client.flush()
    # Then the user's state holds all of it, each once
    assert failures == []
    user = api.user(uid)
    assert user["traits"]["email"] == f"{uid}@example.com"
    assert user["account_id"] == account
    assert user["event_counts"] == {"project_created": 1, "page_viewed": 1, "screen_viewed": 1}


SDK_DIR = Path(__file__).resolve().parents[1] / "sdk"


@pytest.mark.parametrize("sdk", ["analytics-node", "rudder-sdk-node"])
def test_the_node_sdks_deliver_identify_group_track_page_and_screen(api: Api, uid: str, sdk: str) -> None:
    # Given Segment's or RudderStack's Node SDK (tests/sdk, from npm), pointed at the local stack
    if not (SDK_DIR / "node_modules" / ".installed").exists():
        pytest.fail("the Node SDKs are not installed: run `make sdks` (make test does)")
    # When it sends every kind of call and flushes
    done = subprocess.run(  # noqa: S603 - node on our own script, arguments from this test
        ["node", str(SDK_DIR / "send.mjs"), sdk, api.base_url, api.write_key, uid],  # noqa: S607
        cwd=SDK_DIR,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    # Then the SDK saw no error, and the user's state holds all of it, each once
    assert done.returncode == 0, done.stdout + done.stderr
    user = api.user(uid)
    assert user["traits"]["email"] == f"{uid}@example.com"
    assert user["account_id"] == f"acct-{uid}"
    assert user["event_counts"] == {"project_created": 1, "page_viewed": 1, "screen_viewed": 1}
