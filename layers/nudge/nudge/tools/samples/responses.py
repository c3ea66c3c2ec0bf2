"""How the sample product's users answer the messages Nudge sends them, for the demo.

The sample history is planned before the replay and knows nothing of messages, so on its own no
rule could show any lift. The demo feeds every message sent back through this model: some users
act on it a little later (the events go to the ingest API like the rest of the history), users
held out get nothing, so the report's lift compares like with like. The model is deliberately
mixed: the onboarding nudges to finish setup and create a first project work, inviting a
teammate barely does, rescuing a declining user works, rescuing a dormant one does not, and an
upgrade offer sometimes converts. Deterministic: a message's answer is drawn from a hash of its
decision id, so a replay with the same seed answers the same way.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any


@dataclass(frozen=True)
class Response:
    """Of the users sent `rule`, `share` do `events` (in order), `after` the message (a span)."""

    share: float
    events: tuple[str, ...]
    after: tuple[timedelta, timedelta]
    # A group call setting these account traits, after the events (an upgrade).
    account_traits: tuple[tuple[str, Any], ...] = ()


SOON = (timedelta(hours=2), timedelta(days=3))
MODEL: dict[str, Response] = {
    "finish_setup": Response(0.45, ("login", "setup_completed"), SOON),
    "create_first_project": Response(0.40, ("login", "project_created"), SOON),
    "invite_a_teammate": Response(
        0.05, ("login", "teammate_invited"), (timedelta(hours=6), timedelta(days=5))
    ),
    "rescue_declining": Response(
        0.35, ("login", "project_created", "report_exported"), (timedelta(hours=4), timedelta(days=6))
    ),
    "rescue_dormant": Response(0.0, (), (timedelta(0), timedelta(0))),
    "upgrade_power_user": Response(
        0.30, ("login",), (timedelta(days=1), timedelta(days=12)), account_traits=(("plan", "business"),)
    ),
}
# The shipped journeys' sends, keyed journey:step (a journey decision's rule is the journey's id).
MODEL |= {
    "onboarding:finish_setup": MODEL["finish_setup"],
    "onboarding:first_project": MODEL["create_first_project"],
    "onboarding:invite_teammate": MODEL["invite_a_teammate"],
    "declining_rescue:quick_win": MODEL["rescue_declining"],
    "declining_rescue:walkthrough": MODEL["rescue_declining"],
    "declining_rescue:reminder": MODEL["rescue_declining"],
    "upgrade:offer": MODEL["upgrade_power_user"],
    "upgrade:reminder": MODEL["upgrade_power_user"],
}


def response_key(rule: str, step: str | None) -> str:
    """The model's key for a message: the rule's id, or journey:step for a journey's."""
    return f"{rule}:{step}" if step else rule


def _draws(decision_id: str) -> tuple[float, float]:
    digest = hashlib.sha256(f"response|{decision_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64, int.from_bytes(digest[8:16], "big") / 2**64


def respond(
    decision_id: str, rule: str, user_id: str, account_id: str | None, sent_at: datetime
) -> list[dict[str, Any]]:
    """The Segment messages with which the user answers one message (none, most often)."""
    model = MODEL.get(rule)
    if model is None or not model.events:
        return []
    chance, when = _draws(decision_id)
    if chance >= model.share:
        return []
    low, high = model.after
    at = sent_at + low + (high - low) * when
    out: list[dict[str, Any]] = []
    for step, event in enumerate(model.events):
        stamp = at + timedelta(minutes=3 * step)
        out.append(_message(decision_id, step, stamp, {"type": "track", "userId": user_id, "event": event}))
    if model.account_traits and account_id:
        stamp = at + timedelta(minutes=3 * len(model.events))
        traits = dict(model.account_traits)
        body = {"type": "group", "userId": user_id, "groupId": account_id, "traits": traits}
        out.append(_message(decision_id, len(model.events), stamp, body))
    return out


def _message(decision_id: str, step: int, at: datetime, body: dict[str, Any]) -> dict[str, Any]:
    mid = uuid.uuid5(uuid.NAMESPACE_URL, f"nudge-response:{decision_id}:{step}")
    return {
        **body,
        "messageId": str(mid),
        "timestamp": at.isoformat().replace("+00:00", "Z"),
        "context": {"library": {"name": "nudge-sample", "version": "1"}},
    }


# Readers: of the emails delivered, this share are opened; those whose user acts on the message
# (respond) are opened and clicked, as the click is how they got back to the product.
OPEN_SHARE = 0.4


def engagement(decision_id: str, rule: str) -> tuple[bool, bool]:
    """(opened, clicked) for one email, drawn from its decision id like the response."""
    model = MODEL.get(rule)
    chance, _ = _draws(decision_id)
    clicked = model is not None and bool(model.events) and chance < model.share
    opened = clicked or _draws(f"open|{decision_id}")[0] < OPEN_SHARE
    return opened, clicked
