"""Identity over HTTP on the local stack: a visitor's anonymous onboarding counts toward the
`activated` milestone once they are identified, whatever the order; alias; refused aliases."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from tests.e2e.conftest import Api

pytestmark = pytest.mark.e2e

ONBOARDING = ("setup_completed", "project_created", "teammate_invited")


def ago(api: Api, **delta: float) -> str:
    return (api.stack.clock.now() - timedelta(**delta)).isoformat()


def step(api: Api, device: str, event: str, minutes: float = 30) -> dict[str, Any]:
    return {
        "type": "track",
        "anonymousId": device,
        "event": event,
        "messageId": str(uuid.uuid4()),
        "timestamp": ago(api, minutes=minutes),
    }


def identify(api: Api, user: str, device: str) -> dict[str, Any]:
    return {
        "type": "identify",
        "userId": user,
        "anonymousId": device,
        "traits": {"email": "visitor@example.com"},
        "messageId": str(uuid.uuid4()),
        "timestamp": ago(api, minutes=10),
    }


def test_anonymous_onboarding_sent_before_signup_makes_the_user_activated(api: Api, uid: str) -> None:
    # Given a visitor's onboarding steps, sent before signup with their device's id only
    device = f"device-{uid}"
    steps = [step(api, device, e) for e in ONBOARDING]
    assert api.post("/v1/batch", {"batch": steps}).status_code == 200
    # (kept and counted on the anonymous profile, which is never evaluated for messages)
    anonymous = api.user(f"anon:{device}")
    assert anonymous["event_counts"] == dict.fromkeys(ONBOARDING, 1)
    assert anonymous["segments"] == []
    # When they sign up and the app identifies them
    assert api.post("/v1/identify", identify(api, uid, device)).status_code == 200
    # Then the steps are the user's, and so is the milestone
    user = api.user(uid)
    assert user["event_counts"] == dict.fromkeys(ONBOARDING, 1)
    assert "activated" in user["milestones"]
    assert user["merged"] == [f"anon:{device}"]
    # and the device's id now answers with the person it points at
    assert api.user(f"anon:{device}")["merged_into"] == uid


def test_anonymous_steps_sent_after_the_identify_make_the_user_activated(api: Api, uid: str) -> None:
    device = f"device-{uid}"
    assert api.post("/v1/i", identify(api, uid, device)).status_code == 200
    assert api.post("/v1/t", step(api, device, "setup_completed")).status_code == 200
    rest = [step(api, device, e) for e in ONBOARDING[1:]]
    assert api.post("/v1/b", {"batch": rest}).status_code == 200
    # sent twice (an SDK retry): counted once
    assert api.post("/v1/b", {"batch": rest}).status_code == 200
    user = api.user(uid)
    assert "activated" in user["milestones"]
    assert user["event_counts"] == dict.fromkeys(ONBOARDING, 1)


def test_alias_merges_a_previous_user_id_and_refuses_itself_and_a_cycle(api: Api, uid: str) -> None:
    old = f"old-{uid}"
    track = {**step(api, "unused", "setup_completed"), "userId": old}
    track.pop("anonymousId")
    assert api.post("/v1/track", track).status_code == 200
    assert api.post("/v1/alias", {"previousId": old, "userId": uid}).status_code == 200
    assert api.user(uid)["event_counts"] == {"setup_completed": 1}
    assert api.user(old)["merged_into"] == uid

    itself = api.post("/v1/a", {"type": "alias", "previousId": uid, "userId": uid})
    assert itself.status_code == 400
    assert itself.json()["errors"][0]["message"] == "alias: previousId and userId are the same"

    cycle = api.post("/v1/alias", {"previousId": uid, "userId": old})
    assert cycle.status_code == 400
    error = cycle.json()["errors"][0]
    assert error["field"] == "previousId"
    assert "cycle" in error["message"]
    assert uid not in error["message"]
