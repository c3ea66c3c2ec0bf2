"""How the sample product's users deal with the in-app messages Nudge puts in their inbox, for the demo.

An in-app message waits in the product for the user's next visit. Of the users sent one, some come
back while it is live and their page shows it (it is marked seen); of those, some answer a survey
(or click a plain message's button), the rest leave it. A survey's answer is one of the choices the
page shows, drawn with the weights below: the declining rescue's branch then sends the walkthrough to
those who found the product too complex and a reminder a week on to those with no time.

Deterministic, like nudge.tools.samples.responses: drawn from a hash of the message id (the decision
id), so a replay with the same seed visits and answers the same way. What the visit does over HTTP
is nudge.tools.local.demo_inbox's.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

# Of the users sent an in-app message, this share visit while it is live and see it; of those, this
# share answer its survey (or click a plain message). In-app surveys shown to a returning user get
# answered far more often than emailed ones.
SEEN_SHARE = 0.6
ANSWER_SHARE = 0.6
# When the visit comes after the message is put in the inbox: within the rescue's four-day wait for
# the answer (the demo posts it at the end of the half day it falls in, up to 12 hours later).
VISIT_AFTER = (timedelta(hours=2), timedelta(days=3))
# Why people say they drift away from a B2B tool, roughly: a choice not listed here weighs 1.
CHOICE_WEIGHTS: Mapping[str, float] = {
    "too_complex": 3.0,
    "no_time": 3.0,
    "missing_feature": 2.0,
    "switched_tool": 1.0,
    "other": 1.0,
}


@dataclass(frozen=True)
class Visit:
    """The user's visit that shows one in-app message: when, and what they do with it."""

    message_id: str
    user_id: str
    at: datetime
    act: bool  # answer the survey (or click a plain message), not only see it


def _draw(message_id: str, what: str) -> float:
    digest = hashlib.sha256(f"inbox|{what}|{message_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def visit(message_id: str, user_id: str, sent_at: datetime) -> Visit | None:
    """The visit that shows the message `sent_at` to `user_id`, or None when they never see it."""
    if _draw(message_id, "seen") >= SEEN_SHARE:
        return None
    low, high = VISIT_AFTER
    at = sent_at + low + (high - low) * _draw(message_id, "when")
    return Visit(message_id, user_id, at, _draw(message_id, "act") < ANSWER_SHARE)


def choose(message_id: str, choices: Sequence[str]) -> str:
    """The choice the user picks of those the survey shows (by CHOICE_WEIGHTS)."""
    if not choices:
        raise ValueError("a survey shows at least one choice")
    weights = [CHOICE_WEIGHTS.get(choice, 1.0) for choice in choices]
    point = _draw(message_id, "choice") * sum(weights)
    for choice, weight in zip(choices, weights, strict=True):
        point -= weight
        if point < 0:
            return choice
    return choices[-1]
