"""Channel choice on the local stack: a declining user with an email address and no push device
is rescued by email (the shipped rescue names push, then email), and the ledger says why."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

import pytest

from tests.e2e.test_actions_local import message, move_clock, outbox, unheld

if TYPE_CHECKING:
    from tests.e2e.conftest import Api

pytestmark = [pytest.mark.e2e, pytest.mark.moves_clock]
DAY = timedelta(days=1)


def declining(api: Api, user: str, **traits: Any) -> list[dict[str, Any]]:
    """Activated 60 days ago, a project a day for 40 days, then a report a week: declining."""
    now = api.stack.clock.now()
    start = now - 60 * DAY

    def did(event: str, at: Any) -> dict[str, Any]:
        return {**message(api, user, "track", event=event), "timestamp": at.isoformat()}

    identify = {
        **message(
            api,
            user,
            "identify",
            traits={"email": f"{user}@example.com", "first_name": "Ada", "timezone": "UTC", **traits},
        ),
        "timestamp": start.isoformat(),
    }
    batch = [identify, did("signed_up", start), did("setup_completed", start)]
    batch += [did("teammate_invited", start + DAY)]
    batch += [did("project_created", start + (1 + i) * DAY) for i in range(40)]
    batch += [did("report_exported", now - 12 * DAY), did("report_exported", now - 5 * DAY)]
    return batch


def test_a_declining_user_without_a_device_is_rescued_by_email(api: Api, uid: str) -> None:
    # Given a declining user with an email address and no push device (no push_token)
    user = unheld(uid, "rescue_declining")
    response = api.post("/v1/batch", {"batch": declining(api, user, consent={"email": True})})
    assert response.status_code == 200, response.text
    # When the pipeline runs (evaluate, dispatch, the email function)
    move_clock(api, timedelta(minutes=20))
    # Then the rescue went by email, and the ledger records the channel and why
    rescues = [m for m in outbox(api, user) if m["rule"] == "rescue_declining"]
    assert [(m["channel"], m["to"]) for m in rescues] == [("email", f"{user}@example.com")]
    ledger = [e for e in api.user(user)["ledger"] if e["rule"] == "rescue_declining"]
    assert [(e["channel"], e["outcome"], e["channel_why"]) for e in ledger] == [
        ("email", "send", "push: no_address; email: chosen")
    ]
