"""The server SDKs, installed from the registries and driven unchanged, land in the local stack:
rudder-sdk-python here (Segment's analytics-python is in test_local_stack.py), and the Node SDKs
(analytics-node, rudder-sdk-node 3) through node, from tests/sdk."""

from __future__ import annotations

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
